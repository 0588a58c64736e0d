/**
 * The per-tenant cap of active jobs on the single node is one atomic step with the create:
 * a burst of parallel creates from a fresh tenant gets exactly `cap` acceptances, whatever
 * the interleaving, and the slots come back when jobs finish or are canceled, also after a
 * restart. Over real HTTP against the edge as `npm start` builds it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CATALOG } from '../bench/job-bodies.ts';
import { startLocalEdge } from '../edge/local.ts';
import { createApiKey } from '../shared/api-keys.ts';
import { JobRepository } from '../shared/job-repository.ts';
import { dataLayout, loadSecrets, openEmbedded } from '../single-node/data-dir.ts';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
});

const quiet = { error() {}, warn() {}, info() {} };

async function singleNode(dataDir: string, cap: number) {
  const env = { DATA_DIR: dataDir };
  const layout = dataLayout(dataDir);
  const secrets = loadSecrets(layout, env);
  const adapters = openEmbedded(layout, { blobSecret: secrets.blobSecret, publicBaseUrl: 'http://127.0.0.1' });
  const edge = await startLocalEdge({ dataDir, port: 0, catalog: async () => CATALOG, adapters, env, limits: { maxActiveJobs: cap }, logger: quiet });
  const close = async () => {
    await edge.close();
    await adapters.close();
  };
  cleanups.push(close);
  const create = (key: string, n: number, idempotencyKey?: string) =>
    fetch(`${edge.url}/v1/jobs`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...(idempotencyKey ? { 'idempotency-key': idempotencyKey } : {}) },
      body: JSON.stringify({ models: [{ id: 'shapes-base', role: 'base', prompt: `job ${n}` }], sampler: { steps: 4, seed: n } }),
    });
  return { adapters, edge, pepper: secrets.pepper, repo: new JobRepository(adapters.store), create, close };
}

const finishedStatus = () => {
  const now = new Date().toISOString();
  return {
    v: 1 as const, status: 'succeeded' as const, message_id: 'm', attempt: 1, started_at: now, finished_at: now, updated_at: now, progress: null,
    usage: null, timings: { queued_ms: null, run_ms: null, onnx_ms: null, outside_onnx_ms: null }, error: null, outputs: [], webhook_enqueued: false, retry: null,
  };
};

function tally(statuses: number[]): Record<number, number> {
  const out: Record<number, number> = {};
  for (const s of statuses) out[s] = (out[s] ?? 0) + 1;
  return out;
}

describe('the active-job cap on the single node', () => {
  it('100 parallel creates from a fresh tenant against a cap of 50: exactly 50 x 202 and 50 x 429', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'amdm-cap-'));
    cleanups.push(async () => rmSync(dataDir, { recursive: true, force: true }));
    const node = await singleNode(dataDir, 50);
    const { key } = await createApiKey(node.adapters.store, { tenant: 'fresh', pepper: node.pepper });
    const responses = await Promise.all(Array.from({ length: 100 }, (_, i) => node.create(key, i)));
    const refused = responses.filter((r) => r.status === 429);
    expect(tally(responses.map((r) => r.status))).toEqual({ 202: 50, 429: 50 });
    const problem = await refused[0]!.json();
    expect(problem).toMatchObject({ type: 'urn:amdm:problem:too-many-active-jobs', status: 429 });
    expect(refused[0]!.headers.get('retry-after')).toMatch(/^\d+$/);
    // every refused create left nothing behind: the tenant lists exactly its 50 jobs
    const listed = await fetch(`${node.edge.url}/v1/jobs?limit=100`, { headers: { authorization: `Bearer ${key}` } });
    expect((await listed.json()).data).toHaveLength(50);
  });

  it('frees a slot when a job finishes or a queued job is canceled, and counts the same after a restart', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'amdm-cap-'));
    cleanups.push(async () => rmSync(dataDir, { recursive: true, force: true }));
    let node = await singleNode(dataDir, 3);
    const { key } = await createApiKey(node.adapters.store, { tenant: 'acme', pepper: node.pepper });
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const res = await node.create(key, i);
      expect(res.status).toBe(202);
      ids.push((await res.json()).id);
    }
    expect((await node.create(key, 3)).status).toBe(429);

    // a restart (a new process would open the same file) keeps the count: still full
    await node.close();
    node = await singleNode(dataDir, 3);
    expect((await node.create(key, 4)).status).toBe(429);

    // the runner writes a terminal status: one slot back
    await node.repo.putStatus('acme', ids[0]!, finishedStatus());
    expect((await node.create(key, 5)).status).toBe(202);
    expect((await node.create(key, 6)).status).toBe(429);

    // a queued job canceled through the API: another slot back
    const cancel = await fetch(`${node.edge.url}/v1/jobs/${ids[1]}/cancel`, { method: 'POST', headers: { authorization: `Bearer ${key}` } });
    expect(cancel.status).toBe(200);
    expect((await node.create(key, 7)).status).toBe(202);
    expect((await node.create(key, 8)).status).toBe(429);
  });

  it('a create refused at the cap does not hold its Idempotency-Key: the retry is accepted once there is room', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'amdm-cap-'));
    cleanups.push(async () => rmSync(dataDir, { recursive: true, force: true }));
    const node = await singleNode(dataDir, 5);
    const { key } = await createApiKey(node.adapters.store, { tenant: 'acme', pepper: node.pepper });
    // in parallel, most pass the early look and are refused by the admission after claiming their key
    const responses = await Promise.all(Array.from({ length: 20 }, (_, i) => node.create(key, i, `order-${i}`)));
    expect(tally(responses.map((r) => r.status))).toEqual({ 202: 5, 429: 15 });
    const accepted = await Promise.all(responses.filter((r) => r.status === 202).map(async (r) => (await r.json()).id as string));
    for (const id of accepted) await node.repo.putStatus('acme', id, finishedStatus());
    const refused = responses.map((r, i) => (r.status === 429 ? i : -1)).filter((i) => i >= 0);
    const retry = await node.create(key, refused[0]!, `order-${refused[0]}`);
    expect(retry.status).toBe(202);
    expect(retry.headers.get('idempotent-replayed')).toBeNull();
  });
});
