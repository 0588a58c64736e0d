/**
 * The single node on a disk that fills up: a real tmpfs of a few MiB as DATA_DIR, the edge as
 * `npm start` builds it (over HTTP) and the worker loop over the same embedded adapters and
 * the same StorageHealth, with the slow test-double engine. Writes answer 507, reads and the
 * replay of an existing job keep working, /healthz says why, the runner logs the cause once
 * and keeps the job; once space is freed the job completes, exactly once.
 *
 * Needs root (mount); elsewhere it skips, saying so. The port-level tests (edge/app.test.ts,
 * gpu-runner/worker-loop.test.ts, the conformance suites) cover the behaviour everywhere.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { fileURLToPath } from 'node:url';
import { CATALOG } from '../../bench/job-bodies.ts';
import { startLocalEdge } from '../../edge/local.ts';
import { WorkerLoop } from '../../gpu-runner/worker-loop.ts';
import { createApiKey } from '../../shared/api-keys.ts';
import type { JobRecord } from '../../shared/contract/index.ts';
import type { Lease, ReceiveOptions } from '../../shared/ports/queue.ts';
import { StorageFullError } from '../../shared/ports/store.ts';
import { StorageHealth } from '../../shared/storage-health.ts';
import { dataLayout, loadSecrets, openEmbedded } from '../../single-node/data-dir.ts';
import { SMALL_FS, mountSmallFs, type SmallFs } from '../conformance/small-fs.ts';
import { freePort, until } from '../e2e/harness.ts';
import { createEngine } from './slow-engine.ts';

if (!SMALL_FS.available) console.warn(`test/faults/full-disk.test.ts: skipped: ${SMALL_FS.reason}`);

const EXAMPLE = JSON.parse(readFileSync(fileURLToPath(new URL('../../examples/single.json', import.meta.url)), 'utf8')) as Record<string, unknown>;
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function singleNodeOnSmallDisk() {
  const disk: SmallFs = mountSmallFs(8 * 1024 * 1024);
  cleanups.push(() => disk.unmount());
  const dataDir = join(disk.dir, 'data');
  const env = { DATA_DIR: dataDir };
  const layout = dataLayout(dataDir);
  const secrets = loadSecrets(layout, env);
  const logged: string[] = [];
  const record = (level: string) => (msg: string, fields?: Record<string, unknown>) => void logged.push(`${level} ${msg} ${JSON.stringify(fields ?? {})}`);
  const logger = { error: record('error'), warn: record('warn'), info: record('info') };
  const storageHealth = new StorageHealth({ logger });
  const port = await freePort();
  const adapters = openEmbedded(layout, { blobSecret: secrets.blobSecret, publicBaseUrl: `http://127.0.0.1:${port}`, storage: storageHealth });
  cleanups.push(() => adapters.close());
  // counts the receives the full disk refused (leasing a message is a write)
  let refusedReceives = 0;
  const receive = adapters.jobs.receive.bind(adapters.jobs);
  adapters.jobs.receive = async (opts: ReceiveOptions): Promise<Lease[]> => {
    try {
      return await receive(opts);
    } catch (err) {
      if (err instanceof StorageFullError) refusedReceives++;
      throw err;
    }
  };
  const edge = await startLocalEdge({ dataDir, port, catalog: async () => CATALOG, adapters, env, logger, storageHealth });
  cleanups.push(() => edge.close());
  const { key } = await createApiKey(adapters.store, { tenant: 'acme', pepper: secrets.pepper });
  const engine = createEngine({ stepMs: 10 });
  let generated = 0;
  let computed = 0;
  const counting = {
    ...engine,
    generate: async (...args: Parameters<typeof engine.generate>) => {
      generated++;
      const result = await engine.generate(...args);
      computed++;
      return result;
    },
  };
  const startRunner = () => {
    const loop = new WorkerLoop({
      queue: adapters.jobs,
      deadLetterQueue: adapters.jobsDeadLetter,
      webhookQueue: adapters.webhooks,
      store: adapters.store,
      engine: counting,
      maxReceives: 3,
      visibilitySeconds: 2,
      receiveWaitSeconds: 1,
      progressIntervalMs: 0,
      storageRetryMs: 100,
      storageHealth,
      logger,
    });
    loop.start();
    cleanups.push(() => loop.close());
    return loop;
  };
  const api = (path: string, init: { body?: unknown; headers?: Record<string, string>; method?: string } = {}) =>
    fetch(`${edge.url}${path}`, {
      method: init.method ?? (init.body === undefined ? 'GET' : 'POST'),
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...init.headers },
      ...(init.body !== undefined ? { body: JSON.stringify(init.body) } : {}),
    });
  const health = async () => (await fetch(`${edge.url}/healthz`)).json();
  const terminal = (id: string) =>
    until(async () => {
      const job = (await (await api(`/v1/jobs/${id}`)).json()) as JobRecord;
      return ['succeeded', 'failed', 'canceled'].includes(job.status) ? job : null;
    }, `job ${id} to finish`, 30_000);
  return { disk, api, health, terminal, startRunner, logged, generated: () => generated, computed: () => computed, refusedReceives: () => refusedReceives };
}

describe.skipIf(!SMALL_FS.available)('the single node on a full disk', () => {
  it('refuses writes with 507, answers reads and replays; the runner keeps the queued job and runs it once space is freed', async () => {
    const node = await singleNodeOnSmallDisk();
    const created = await node.api('/v1/jobs', { body: EXAMPLE, headers: { 'idempotency-key': 'order-1' } });
    expect(created.status).toBe(202);
    const { id } = (await created.json()) as JobRecord;
    node.disk.fill();

    const refused = await node.api('/v1/jobs', { body: EXAMPLE });
    expect(refused.status).toBe(507);
    expect(refused.headers.get('retry-after')).toBe('60');
    const problem = await refused.json();
    expect(problem).toMatchObject({ type: 'urn:amdm:problem:insufficient-storage', status: 507 });
    expect(problem.detail).toMatch(/storage is full \((the database or its disk is full, SQLITE_FULL|no space left on the device, ENOSPC)\)/);
    expect(JSON.stringify(problem)).not.toContain(node.disk.dir);
    const replay = await node.api('/v1/jobs', { body: EXAMPLE, headers: { 'idempotency-key': 'order-1' } });
    expect(replay.status).toBe(202);
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(((await replay.json()) as JobRecord).id).toBe(id);
    expect(((await (await node.api(`/v1/jobs/${id}`)).json()) as JobRecord).status).toBe('queued');
    expect(await node.health()).toEqual({ status: 'degraded', reason: expect.stringMatching(/^store full: /), since: expect.any(String) });

    // the runner cannot lease the job (a write) and waits, quietly, the job kept in the queue
    node.startRunner();
    await until(async () => node.refusedReceives() >= 5, 'the runner to find the disk full a few times', 30_000);
    expect(node.generated()).toBe(0);

    node.disk.free();
    const done = await node.terminal(id);
    expect(done.status).toBe('succeeded');
    expect(node.generated()).toBe(1);
    const usage = await (await node.api('/v1/usage')).json();
    expect(usage.total.jobs).toBe(1);
    expect(await node.health()).toEqual({ status: 'ok' });
    // each storage logged once when full (the edge's 507 and the runner's retries included), once when free again
    const full = node.logged.filter((l) => /storage full/.test(l));
    expect(full.length).toBeGreaterThanOrEqual(1);
    expect(new Set(full).size).toBe(full.length);
    expect(full.length).toBeLessThanOrEqual(2);
    expect(node.logged.filter((l) => /room again/.test(l))).toHaveLength(full.length);
    expect(node.logged.filter((l) => /^(warn|error)/.test(l) && !/storage full/.test(l))).toEqual([]);
  });

  it('a job running when the disk fills waits with its result, and completes exactly once when space is freed', async () => {
    const node = await singleNodeOnSmallDisk();
    node.startRunner();
    const created = await node.api('/v1/jobs', { body: { ...EXAMPLE, sampler: { steps: 60, seed: 7 }, outputs: { images: 2 } } });
    expect(created.status).toBe(202);
    const { id } = (await created.json()) as JobRecord;
    await until(async () => (((await (await node.api(`/v1/jobs/${id}`)).json()) as JobRecord).progress?.step ?? 0) >= 5, 'the job to be mid-way', 30_000);
    node.disk.fill();
    // the images are computed, and their files find no room
    await until(async () => node.computed() === 1 && /ENOSPC/.test(JSON.stringify(await node.health())), 'the output images to find the disk full', 30_000);
    expect(((await (await node.api(`/v1/jobs/${id}`)).json()) as JobRecord).status).toBe('running');

    node.disk.free();
    const done = await node.terminal(id);
    expect(done.status).toBe('succeeded');
    expect(done.outputs.filter((o) => o.source === 'aggregated')).toHaveLength(2);
    for (const o of done.outputs) expect((await fetch(o.url)).status).toBe(200);
    expect(node.generated()).toBe(1);
    expect((await (await node.api('/v1/usage')).json()).total).toMatchObject({ jobs: 1, unet_evals: 120 });
    expect(await node.health()).toEqual({ status: 'ok' });
    expect(node.logged.filter((l) => /^(warn|error)/.test(l) && !/storage full/.test(l))).toEqual([]);
  });
});
