/**
 * Fuzzing POST /v1/jobs with bodies derived from the zod schema (test/fuzz/mutations.ts):
 * 10,000 in process through app.request, a few hundred over real HTTP, plus raw malformed
 * HTTP on a socket. Whatever comes in: never a 5xx, every refusal is problem+json naming
 * the field at fault, the schema's verdict and the API's agree, and the server stays up.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryQueue } from '../../adapters/memory/memory-queue.ts';
import { MemoryStore } from '../../adapters/memory/memory-store.ts';
import { createApp } from '../../edge/app.ts';
import { startLocalEdge, type LocalEdge } from '../../edge/local.ts';
import { TokenBucketLimiter } from '../../edge/middleware/rate-limit/index.ts';
import { createApiKey } from '../../shared/api-keys.ts';
import { JobRequest, type ModelInfo } from '../../shared/contract/index.ts';
import { dataLayout, loadSecrets } from '../../single-node/data-dir.ts';
import { type Mutant, mutants, validRequests } from './mutations.ts';

const model = (id: string, conditions: Partial<ModelInfo['conditions']> = {}): ModelInfo => ({
  id,
  description: '',
  ecosystem: 'shapes-v1',
  latent: { channels: 4, vae_scale_factor: 4 },
  sizes: { default: [64, 64], min: 32, max: 128, multiple: 16 },
  conditions: { prompt: { max_tokens: 32 }, grounding: null, reference_image: null, ...conditions },
  schedulers: ['ddim', 'euler'],
});
const CATALOG = [model('shapes-base'), model('shapes-layout', { grounding: { max_objects: 4 } }), model('shapes-style', { reference_image: { width: 32, height: 32 } })];
const PEPPER = 'fuzz-pepper-'.repeat(3);
const BODY_LIMIT = 256 * 1024;
const limits = { maxActiveJobs: 1_000_000, maxJobBodyBytes: BODY_LIMIT, idempotencySettleMs: 0 };
const quiet = { error() {}, warn() {}, info() {} };
const rateLimiter = new TokenBucketLimiter({ ratePerSecond: 1e9, burst: 1e9 });

/** superRefine rules that name another field than the one a mutation touched. */
const CROSS_FIELD = new Set(['models', 'models[0].weight', 'aggregation.omega', 'aggregation.omega2', 'aggregation.window', 'sampler.scheduler', 'body']);

const related = (a: string, b: string) => a === b || a.startsWith(`${b}.`) || a.startsWith(`${b}[`) || b.startsWith(`${a}.`) || b.startsWith(`${a}[`);

/** Checks one response against the schema's own verdict on the body. */
async function check(m: Mutant, res: Response): Promise<void> {
  const where = `${m.what} -> ${res.status}`;
  expect(res.status, where).toBeLessThan(500);
  let parsed: unknown;
  let json = true;
  try {
    parsed = JSON.parse(m.text);
  } catch {
    json = false;
  }
  const schemaOk = json && JobRequest.safeParse(parsed).success;
  if (res.status === 202) {
    expect(schemaOk, `accepted an invalid body: ${where}`).toBe(true);
    await res.body?.cancel();
    return;
  }
  expect(res.headers.get('content-type'), where).toBe('application/problem+json');
  const text = await res.text();
  expect(text, where).not.toMatch(/\n\s+at |node_modules|\.ts:\d+/);
  const p = JSON.parse(text) as { type: string; title: string; status: number; errors?: { field: string; message: string }[] };
  expect(p.status, where).toBe(res.status);
  expect(typeof p.title, where).toBe('string');
  if (new TextEncoder().encode(m.text).byteLength > BODY_LIMIT) {
    expect(res.status, where).toBe(413);
    return;
  }
  if (!json) {
    expect(res.status, where).toBe(400);
    expect(p.errors?.[0]?.field, where).toBe('body');
    return;
  }
  expect(res.status, where).toBe(422);
  expect(p.errors?.length, where).toBeGreaterThan(0);
  for (const e of p.errors!) {
    expect(e.field.length, where).toBeGreaterThan(0);
    expect(e.message.length, where).toBeGreaterThan(0);
  }
  if (!schemaOk && m.field !== null) {
    const named = p.errors!.some((e) => related(e.field, m.field!) || CROSS_FIELD.has(e.field));
    expect(named, `${where}: errors ${JSON.stringify(p.errors)} do not name ${m.field}`).toBe(true);
  }
}

describe('fuzzing POST /v1/jobs', () => {
  it('in process: 10,000 malformed bodies, only 4xx problems naming the field', async () => {
    const store = new MemoryStore({ signing: { secret: 's'.repeat(32), baseUrl: 'http://127.0.0.1:1' } });
    const app = createApp({ store, queue: new MemoryQueue(), catalog: async () => CATALOG, pepper: PEPPER, publicBaseUrl: 'http://127.0.0.1:1', limits, rateLimiter, logger: quiet });
    const { key } = await createApiKey(store, { tenant: 'fuzz', pepper: PEPPER });
    const statuses = new Map<number, number>();
    await fc.assert(
      fc.asyncProperty(mutants(validRequests), async (m) => {
        const res = await app.request('/v1/jobs', { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: m.text });
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        await check(m, res);
      }),
      { numRuns: 10_000, seed: 20_241_001 },
    );
    // the generator must mostly produce refusals, of both kinds
    expect(statuses.get(422)!).toBeGreaterThan(5000);
    expect(statuses.get(400)!).toBeGreaterThan(300);
    expect((await app.request('/healthz')).status).toBe(200);
  }, 300_000);

  it('refuses bodies over the limit with 413 before parsing them', async () => {
    const store = new MemoryStore();
    const app = createApp({ store, queue: new MemoryQueue(), catalog: async () => CATALOG, pepper: PEPPER, publicBaseUrl: 'http://127.0.0.1:1', limits, rateLimiter, logger: quiet });
    const { key } = await createApiKey(store, { tenant: 'fuzz', pepper: PEPPER });
    const huge = JSON.stringify({ models: [{ id: 'shapes-base', role: 'base', prompt: 'x'.repeat(BODY_LIMIT) }] });
    await check({ text: huge, what: 'huge prompt', field: 'models[0].prompt' }, await app.request('/v1/jobs', { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: huge }));
  });
});

describe('fuzzing over real HTTP', () => {
  let edge: LocalEdge;
  let dataDir: string;
  let key: string;

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'amdm-fuzz-'));
    const env = { DATA_DIR: dataDir };
    const secrets = loadSecrets(dataLayout(dataDir), env);
    const store = new MemoryStore({ signing: { secret: secrets.blobSecret, baseUrl: 'http://127.0.0.1:1' } });
    edge = await startLocalEdge({ dataDir, port: 0, catalog: async () => CATALOG, adapters: { store, jobs: new MemoryQueue() }, limits, rateLimiter, logger: quiet, env });
    key = (await createApiKey(store, { tenant: 'fuzz', pepper: secrets.pepper })).key;
  });
  afterAll(async () => {
    await edge?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('300 malformed bodies through @hono/node-server', async () => {
    await fc.assert(
      fc.asyncProperty(mutants(validRequests), async (m) => {
        const res = await fetch(`${edge.url}/v1/jobs`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: m.text });
        await check(m, res);
      }),
      { numRuns: 300, seed: 7 },
    );
  }, 120_000);

  it('malformed HTTP on a raw socket does not take the server down', async () => {
    const { port } = new URL(edge.url);
    const raw = (text: string) =>
      new Promise<string>((resolve) => {
        const sock = connect(Number(port), '127.0.0.1', () => sock.end(text));
        let out = '';
        sock.on('data', (d) => (out += d));
        sock.on('close', () => resolve(out));
        sock.on('error', () => resolve(out));
        sock.setTimeout(3000, () => sock.destroy());
      });
    const auth = `Authorization: Bearer ${key}\r\n`;
    const replies = await Promise.all([
      raw(`POST /v1/jobs HTTP/1.1\r\nHost: x\r\n${auth}Content-Type: application/json\r\nContent-Length: 50\r\n\r\n{"models":`), // body shorter than declared
      raw(`POST /v1/jobs HTTP/1.1\r\nHost: x\r\n${auth}Content-Type: application/json\r\nContent-Length: -5\r\n\r\n{}`),
      raw(`POST /v1/jobs HTTP/1.1\r\nHost: x\r\n${auth}Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n`),
      raw(`POST /v1/jobs HTTP/1.1\r\nHost: x\r\n${auth}Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{"mo\r\n`), // never finished
      raw('GARBAGE\r\n\r\n'),
      raw(`GET /v1/jobs/${'%'.repeat(3)} HTTP/1.1\r\nHost: x\r\n${auth}\r\n`),
      raw(`POST /v1/jobs HTTP/1.1\r\nHost: x\r\n${auth}Content-Type: application/json; charset=latin1\r\nContent-Length: 4\r\n\r\n\xff\xfe{}`),
    ]);
    for (const r of replies) expect(r).not.toMatch(/^HTTP\/1\.1 5\d\d/);
    const health = await fetch(`${edge.url}/healthz`);
    expect(health.status).toBe(200);
  });
});
