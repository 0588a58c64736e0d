/** The dispatcher against a real local HTTP receiver, with short retry schedules. */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryQueue } from '../adapters/memory/memory-queue.ts';
import { MemoryStore } from '../adapters/memory/memory-store.ts';
import { newJobId } from '../shared/ids.ts';
import { JobRepository, type StoredStatus, type WebhookAttempt } from '../shared/job-repository.ts';
import { addressProblem } from '../shared/webhook-url-policy.ts';
import { silentLogger } from '../shared/logger.ts';
import { WebhookDispatcher, type WebhookDispatcherOptions } from './dispatcher.ts';
import { oneModelSpec } from '../test/fixtures/job-spec.ts';

const SECRET = `whsec_${Buffer.from('0123456789abcdef0123456789abcdef').toString('base64')}`;

interface Received {
  headers: IncomingMessage['headers'];
  body: string;
}

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function receiver(answers: number[]): Promise<{ url: string; got: Received[]; server: Server }> {
  const got: Received[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      got.push({ headers: req.headers, body });
      const status = answers[Math.min(got.length - 1, answers.length - 1)]!;
      if (status === 0) return; // never answer
      res.writeHead(status).end('ok');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanups.push(() => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); }));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks/amdm`, got, server };
}

const spec = oneModelSpec();

async function world(url: string, over: Partial<WebhookDispatcherOptions> = {}) {
  const store = new MemoryStore({ signing: { secret: 's'.repeat(32), baseUrl: 'http://127.0.0.1:8787' } });
  const queue = new MemoryQueue();
  const repo = new JobRepository(store);
  const id = newJobId(Date.now());
  await repo.putRequest({ v: 1, id, tenant: 'acme', created_at: new Date().toISOString(), spec, webhook: { url } });
  const out = await repo.putOutput('acme', id, { source: 'aggregated', index: 0, kind: 'image', content_type: 'image/png' }, new Uint8Array([1]));
  const status: StoredStatus = {
    v: 1, status: 'succeeded', message_id: 'm', attempt: 1, started_at: new Date().toISOString(), finished_at: new Date().toISOString(), updated_at: new Date().toISOString(),
    progress: null, usage: { unet_evals: 4, images: 1, runner_ms: 5 }, timings: { queued_ms: 1, run_ms: 5, onnx_ms: 4, outside_onnx_ms: 1 }, error: null, outputs: [out], webhook_enqueued: true,
  };
  await repo.putStatus('acme', id, status);
  const d = new WebhookDispatcher({
    queue,
    store,
    secret: SECRET,
    signUrl: (key, ttl) => store.signedGetUrl(key, ttl),
    publicBaseUrl: 'http://127.0.0.1:8787',
    allowPrivate: true,
    retrySchedule: [1, 1],
    receiveWaitSeconds: 1,
    logger: silentLogger,
    ...over,
  });
  cleanups.push(() => d.close());
  const enqueue = () => queue.send(JSON.stringify({ v: 1, job_id: id, tenant: 'acme', type: 'job.succeeded' }));
  const attempts = () => repo.listWebhookAttempts('acme', id);
  const until = async (f: () => Promise<boolean>, what: string, ms = 10_000) => {
    const end = Date.now() + ms;
    while (!(await f())) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  return { d, store, queue, repo, id, enqueue, attempts, until, idle: async () => { const s = await queue.stats(); return s.visible + s.inFlight + s.delayed === 0; } };
}

describe('WebhookDispatcher', () => {
  it('delivers a Standard Webhooks signed job record and records the attempt on the job', async () => {
    const r = await receiver([204]);
    const w = await world(r.url);
    await w.enqueue();
    w.d.start();
    await w.until(async () => (await w.attempts()).length === 1 && (await w.idle()), 'one delivery');
    const [hit] = r.got;
    const payload = new Webhook(SECRET).verify(hit!.body, hit!.headers as Record<string, string>) as { type: string; data: { id: string; status: string; outputs: { url: string }[] } };
    expect(payload.type).toBe('job.succeeded');
    expect(payload.data).toMatchObject({ id: w.id, status: 'succeeded' });
    expect(payload.data.outputs[0]!.url).toMatch(/sig=/);
    expect(hit!.headers['webhook-id']).toBe(`msg_${w.id}_succeeded`);
    const [a] = await w.attempts();
    expect(a).toMatchObject({ attempt: 1, status: 204, ok: true, next_attempt_at: null });
  });

  it('retries on the schedule with the same webhook-id and fresh signatures', async () => {
    const r = await receiver([500, 500, 200]);
    const w = await world(r.url);
    await w.enqueue();
    w.d.start();
    await w.until(async () => (await w.attempts()).some((a) => a.ok), 'the successful third attempt');
    const attempts = await w.attempts();
    expect(attempts.map((a) => [a.attempt, a.status, a.ok])).toEqual([[1, 500, false], [2, 500, false], [3, 200, true]]);
    expect(Date.parse(attempts[1]!.at) - Date.parse(attempts[0]!.at)).toBeGreaterThanOrEqual(1000);
    expect(new Set(r.got.map((g) => g.headers['webhook-id'])).size).toBe(1);
    for (const g of r.got) expect(() => new Webhook(SECRET).verify(g.body, g.headers as Record<string, string>)).not.toThrow();
    await w.until(w.idle, 'the message acked');
  });

  it('gives up after the schedule, recording why', async () => {
    const r = await receiver([503]);
    const w = await world(r.url, { retrySchedule: [0] });
    await w.enqueue();
    w.d.start();
    await w.until(async () => (await w.attempts()).length === 2 && (await w.idle()), 'two attempts and the ack');
    const last = (await w.attempts()).at(-1) as WebhookAttempt;
    expect(last).toMatchObject({ attempt: 2, status: 503, ok: false, next_attempt_at: null });
    expect(r.got).toHaveLength(2);
  });

  it('chains delays longer than one release can be', async () => {
    const r = await receiver([500, 200]);
    const w = await world(r.url, { retrySchedule: [2], maxReleaseSeconds: 1 });
    await w.enqueue();
    w.d.start();
    await w.until(async () => (await w.attempts()).some((a) => a.ok), 'the delayed retry');
    const [a1, a2] = await w.attempts();
    expect(Date.parse(a2!.at) - Date.parse(a1!.at)).toBeGreaterThanOrEqual(1900);
    expect(r.got).toHaveLength(2);
  });

  it('refuses private destinations after DNS resolution (SSRF), and records the refusal', async () => {
    const r = await receiver([200]);
    const port = new URL(r.url).port;
    const w = await world(`http://hooks.test:${port}/x`, {
      allowPrivate: false,
      retrySchedule: [],
      lookup: async () => [{ address: '127.0.0.1', family: 4 }],
    });
    await w.enqueue();
    w.d.start();
    await w.until(async () => (await w.attempts()).length === 1 && (await w.idle()), 'the refused attempt');
    const [a] = await w.attempts();
    expect(a).toMatchObject({ ok: false, status: null, error: expect.stringMatching(/refused: hooks\.test resolves to 127\.0\.0\.1/) });
    expect(r.got).toHaveLength(0);
  });

  it('judges every resolved address as the edge judges a literal: translated, tunnelled and special-purpose forms are refused before connecting', async () => {
    const r = await receiver([200]);
    const port = new URL(r.url).port;
    // only addresses no packet can reach a real host at: before the fix several were dialled
    const resolved = [
      '::ffff:0:127.0.0.1', // IPv4-translated (RFC 2765): passed as public
      '::ffff:0:a9fe:a9fe', // the same, carrying the metadata address
      '::ffff:127.0.0.1', // IPv4-mapped, judged by its IPv4 address
      '::127.0.0.1', // IPv4-compatible
      '64:ff9b::a9fe:a9fe', // NAT64, carrying the metadata address
      '64:ff9b:1::a00:1', // local-use NAT64
      '2002:7f00:1::1', // 6to4 carrying 127.0.0.1
      '2001:2::1', // benchmarking, inside the IETF protocol block
      '2001:20::1', // ORCHIDv2
      '2001:db8::1',
      '3fff::1', // documentation
      '100::1', // discard-only
      '5f00::1', // SRv6 SIDs
      'fd00::1',
      'fe80::1%lo',
      'fec0::1',
      'ff02::1',
      '169.254.169.254',
      '192.0.0.9',
      '0.0.0.0',
    ];
    let answer: string[] = [];
    const w = await world(`http://hooks.example.test:${port}/x`, {
      allowPrivate: false,
      lookup: async () => answer.map((address) => ({ address, family: address.includes(':') ? 6 : 4 })),
    });
    const parts = await w.repo.getParts('acme', w.id);
    const record = await w.repo.assemble(parts!, { sign: (key, ttl) => w.store.signedGetUrl(key, ttl), urlTtlSeconds: 60, now: Date.now(), baseUrl: 'http://127.0.0.1:8787' });
    for (const address of resolved) {
      answer = [address];
      const result = await w.d.deliver(`http://hooks.example.test:${port}/x`, 'job.succeeded', record, Date.now());
      expect(result, address).toEqual({ status: null, ok: false, error: `refused: hooks.example.test resolves to ${address}: ${addressProblem(address)}` });
      expect(result.error, address).toMatch(/ is in [0-9a-f:.]+\/\d+, /);
    }
    expect(r.got).toHaveLength(0);
  });

  it('refuses an IP literal in the URL with the same verdict, without a lookup', async () => {
    let looked = 0;
    const w = await world('http://127.0.0.1:1/x', { allowPrivate: false, lookup: async () => (looked++, []) });
    const parts = await w.repo.getParts('acme', w.id);
    const record = await w.repo.assemble(parts!, { sign: (key, ttl) => w.store.signedGetUrl(key, ttl), urlTtlSeconds: 60, now: Date.now(), baseUrl: 'http://127.0.0.1:8787' });
    const result = await w.d.deliver('http://[::ffff:0:127.0.0.1]:9/hook', 'job.succeeded', record, Date.now());
    expect(result).toEqual({ status: null, ok: false, error: `refused: ${addressProblem('::ffff:0:127.0.0.1')}; webhooks go to public unicast addresses only` });
    expect(looked).toBe(0);
  });

  it('does not deliver twice when the outbox holds a duplicate', async () => {
    const r = await receiver([200]);
    const w = await world(r.url);
    await w.enqueue();
    await w.enqueue();
    w.d.start();
    await w.until(async () => (await w.attempts()).length >= 1 && (await w.idle()), 'both messages handled');
    expect(r.got).toHaveLength(1);
  });

  it('a receiver that never answers is a timed-out attempt', async () => {
    const r = await receiver([0]);
    const w = await world(r.url, { timeoutMs: 300, retrySchedule: [] });
    await w.enqueue();
    w.d.start();
    await w.until(async () => (await w.attempts()).length === 1, 'the timed-out attempt');
    expect((await w.attempts())[0]!.error).toMatch(/timed out after 300 ms/);
  });

  it('checks its options', async () => {
    const w = await world('http://127.0.0.1:1/x');
    expect(() => new WebhookDispatcher({ ...(w.d as unknown as { o: WebhookDispatcherOptions }).o, secret: 'nope' })).toThrow(/option "secret"/);
    w.d.start();
    expect(() => w.d.start()).toThrow(/already started/);
  });
});
