/**
 * The worker loop against the memory adapters and an Engine test double (no threads, no
 * onnxruntime): lifecycle, cancellation, retries, poison and dead letters, shutdown.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryQueue } from '../adapters/memory/memory-queue.ts';
import { MemoryStore } from '../adapters/memory/memory-store.ts';
import type { JobSpec, ModelInfo } from '../shared/contract/index.ts';
import { newJobId } from '../shared/ids.ts';
import { JobRepository, type StoredRequest } from '../shared/job-repository.ts';
import type { JobQueue } from '../shared/ports/queue.ts';
import { StorageFullError } from '../shared/ports/store.ts';
import { EngineInputError, type Engine, type EngineResult, type GenerateOptions } from './engine/types.ts';
import { silentLogger } from '../shared/logger.ts';
import { WorkerLoop, type WorkerLoopOptions } from './worker-loop.ts';
import { oneModelSpec } from '../test/fixtures/job-spec.ts';

/**
 * Behaviour by prompt: "ok" (steps of `stepMs`), "input" (EngineInputError), "flaky" (fails
 * the first `flakyFailures` calls), "boom" (always fails, transiently).
 */
class FakeEngine implements Engine {
  calls = 0;
  flakyFailures = 1;
  stepMs = 5;
  async catalog(): Promise<ModelInfo[]> {
    return [];
  }
  async generate(spec: JobSpec, opts: GenerateOptions = {}): Promise<EngineResult> {
    this.calls++;
    const prompt = spec.models[0]!.prompt;
    if (prompt === 'input') throw new EngineInputError('the reference image is not a PNG', 'models[0].reference_image');
    if (prompt === 'boom') throw new Error('CUDA error at /opt/amdm/unet.onnx: device lost');
    if (prompt === 'flaky' && this.calls <= this.flakyFailures) throw new Error('transient glitch');
    const steps = spec.sampler.steps;
    for (let i = 0; i < steps; i++) {
      if (opts.signal?.aborted) throw new DOMException('canceled', 'AbortError');
      await new Promise((r) => setTimeout(r, this.stepMs));
      opts.onProgress?.({ image: 1, images: 1, step: i + 1, total: steps, phase: 'base_only' });
    }
    return {
      outputs: [{ source: 'aggregated', index: 0, kind: 'image', contentType: 'image/png', bytes: new Uint8Array([0x89, 0x50, 0x4e, 0x47]), width: 64, height: 64 }],
      unetEvals: steps,
      timings: { loadMs: 0, totalMs: steps * this.stepMs, onnxMs: steps * this.stepMs * 0.9, outsideOnnxMs: steps * this.stepMs * 0.1 },
    };
  }
  async dispose(): Promise<void> {}
}

const spec = (prompt: string, steps = 4): JobSpec => oneModelSpec({ prompt, steps });

const loops: WorkerLoop[] = [];
afterEach(async () => {
  await Promise.allSettled(loops.splice(0).map((l) => l.close()));
});

function world(over: Partial<WorkerLoopOptions> = {}) {
  const store = new MemoryStore();
  const dlq = new MemoryQueue();
  const queue = new MemoryQueue({ deadLetter: { queue: dlq, maxReceives: 3 } });
  const webhooks = new MemoryQueue();
  const engine = new FakeEngine();
  const repo = new JobRepository(store);
  const make = (o: Partial<WorkerLoopOptions> = {}) => {
    const loop = new WorkerLoop({
      queue,
      store,
      engine,
      deadLetterQueue: dlq,
      webhookQueue: webhooks,
      maxReceives: 3,
      visibilitySeconds: 4,
      receiveWaitSeconds: 1,
      cancelPollMs: 20,
      progressIntervalMs: 0,
      retryBackoff: { baseSeconds: 0, maxSeconds: 0 },
      poisonDelaySeconds: 0,
      logger: silentLogger,
      ...over,
      ...o,
    });
    loops.push(loop);
    return loop;
  };
  const submit = async (prompt: string, opts: { webhook?: boolean; steps?: number; delaySeconds?: number } = {}) => {
    const now = Date.now();
    const req: StoredRequest = { v: 1, id: newJobId(now), tenant: 'acme', created_at: new Date(now).toISOString(), spec: spec(prompt, opts.steps), webhook: opts.webhook ? { url: 'https://hooks.example/x' } : null };
    await repo.putRequest(req);
    await queue.send(JSON.stringify({ v: 1, job_id: req.id, tenant: 'acme', enqueued_at: req.created_at }), opts.delaySeconds ? { delaySeconds: opts.delaySeconds } : undefined);
    return req.id;
  };
  const status = (id: string) => repo.getStatus('acme', id);
  const until = async <T>(f: () => Promise<T | null | undefined | false>, what: string, ms = 8000): Promise<T> => {
    const deadline = Date.now() + ms;
    for (;;) {
      const v = await f();
      if (v) return v;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  };
  const terminal = (id: string) => until(async () => { const s = await status(id); return s && ['succeeded', 'failed', 'canceled'].includes(s.status) ? s : null; }, `job ${id} to finish`);
  const usageKeys = async () => (await store.list('tenants/acme/usage/')).keys;
  return { store, queue, dlq, webhooks, engine, repo, make, submit, status, until, terminal, usageKeys };
}

/**
 * The runner's disk, filled and freed by the test: while `full`, every store write (and, with
 * `queue`, every queue call that writes) rejects with StorageFullError, as the embedded
 * adapters do. `refused` counts the writes turned away.
 */
function fillableDisk(w: ReturnType<typeof world>, opts: { queue: boolean }) {
  const disk = { full: false, refused: 0, receivesRefused: 0, outputsRefused: 0 };
  const refuseWhileFull = <A extends unknown[], R>(where: string, write: (...args: A) => Promise<R>, what = '') =>
    async (...args: A): Promise<R> => {
      if (disk.full) {
        disk.refused++;
        if (what === 'receive') disk.receivesRefused++;
        if (String(args[0]).includes('/out/')) disk.outputsRefused++;
        throw new StorageFullError(where, where.endsWith('.sqlite') ? 'SQLITE_FULL' : 'ENOSPC');
      }
      return write(...args);
    };
  w.store.put = refuseWhileFull('/data/store', w.store.put.bind(w.store));
  w.store.delete = refuseWhileFull('/data/store', w.store.delete.bind(w.store));
  if (opts.queue) {
    for (const q of [w.queue, w.webhooks, w.dlq] as JobQueue[]) {
      for (const m of ['send', 'receive', 'extend', 'ack', 'release'] as const) {
        (q as unknown as Record<string, unknown>)[m] = refuseWhileFull('/data/queue/queues.sqlite', (q[m] as (...a: unknown[]) => Promise<unknown>).bind(q), m);
      }
    }
  }
  return disk;
}

function recordingLogger() {
  const lines: string[] = [];
  const at = (level: string) => (msg: string) => void lines.push(`${level} ${msg}`);
  return { lines, logger: { error: at('error'), warn: at('warn'), info: at('info') } };
}

describe('WorkerLoop on a full disk', () => {
  it('a job whose writes find the disk full waits for space with its lease and its result kept, then finishes exactly once', async () => {
    const { lines, logger } = recordingLogger();
    // the blobs' disk is full, the queue still writes (a database log with room): the lease is
    // extended while the job waits, so a second runner never gets it
    const w = world({ logger, visibilitySeconds: 2, storageRetryMs: 50 });
    const disk = fillableDisk(w, { queue: false });
    w.engine.stepMs = 10;
    const id = await w.submit('ok', { steps: 20, webhook: true });
    const loop = w.make();
    loop.start();
    w.make().start();
    await w.until(async () => ((await w.status(id))?.progress?.step ?? 0) >= 3, 'a few steps');
    disk.full = true;
    // waiting well past the 2 s lease, trying again every 50 ms (or giving up on the job)
    const held = async () => (await w.queue.stats()).inFlight === 1;
    await w.until(async () => disk.refused >= 60 || !(await held()), 'the writes to be refused for a while');
    expect(await held(), 'the job is still leased').toBe(true);
    expect(w.engine.calls).toBe(1);
    expect((await w.status(id))!.status).toBe('running');
    expect(loop.health()).toMatchObject({ status: 'degraded', reason: 'store full: no space left on the device (ENOSPC)' });
    disk.full = false;
    const s = await w.terminal(id);
    expect(s).toMatchObject({ status: 'succeeded', attempt: 1, outputs: [{ source: 'aggregated' }] });
    expect(w.engine.calls).toBe(1);
    // the tenant is billed for the run, not for the wait: each refused output write was
    // followed by a pause of storageRetryMs (setTimeout waits at least that long)
    expect(disk.outputsRefused).toBeGreaterThan(2);
    expect(s.timings.run_ms! - s.usage!.runner_ms).toBeGreaterThanOrEqual((disk.outputsRefused - 1) * 45);
    expect(await w.usageKeys()).toHaveLength(1);
    expect((await w.webhooks.stats()).visible).toBe(1);
    expect(loop.health()).toEqual({ status: 'ok' });
    // the cause once, its end once; no retry, no per-write warning
    expect(lines.filter((l) => /storage full/.test(l))).toEqual([expect.stringMatching(/^error storage full/)]);
    expect(lines.filter((l) => /room again/.test(l))).toHaveLength(1);
    expect(lines.filter((l) => /^(warn|error)/.test(l) && !/storage full/.test(l))).toEqual([]);
  });

  it('with the queue on the full disk too, nothing is leased, failed or dead-lettered; all jobs finish once space is freed', async () => {
    const { lines, logger } = recordingLogger();
    const w = world({ logger, visibilitySeconds: 2, storageRetryMs: 50, concurrency: 2 });
    const disk = fillableDisk(w, { queue: true });
    w.engine.stepMs = 10;
    const running = await w.submit('ok', { steps: 20 });
    const loop = w.make();
    loop.start();
    await w.until(async () => ((await w.status(running))?.progress?.step ?? 0) >= 3, 'a few steps');
    // accepted before the disk fills, due after: leasing it is a write the full disk refuses
    const waiting = await w.submit('ok', { steps: 4, delaySeconds: 1 });
    disk.full = true;
    const parked = async () => { const d = await w.dlq.stats(); return d.visible + d.inFlight + d.delayed > 0; };
    const complaints = () => lines.filter((l) => /^(warn|error)/.test(l) && !/storage full/.test(l));
    await w.until(
      async () => (disk.refused >= 100 && disk.receivesRefused >= 5) || w.engine.calls > 1 || complaints().length > 0 || (await parked()),
      'the writes and receives to be refused for a while',
    );
    expect(complaints(), 'logged besides the full disk').toEqual([]);
    expect(await parked(), 'a job in the dead-letter queue').toBe(false);
    expect(w.engine.calls).toBe(1);
    expect(loop.health().status).toBe('degraded');
    disk.full = false;
    const [a, b] = await Promise.all([w.terminal(running), w.terminal(waiting)]);
    expect(a).toMatchObject({ status: 'succeeded', attempt: 1 });
    expect(b).toMatchObject({ status: 'succeeded', attempt: 1 });
    expect(w.engine.calls).toBe(2);
    expect(await w.usageKeys()).toHaveLength(2);
    expect(await w.dlq.stats()).toEqual({ visible: 0, inFlight: 0, delayed: 0 });
    expect(lines.filter((l) => /^error storage full/.test(l))).toHaveLength(2); // the blob store and the queue's database
    expect(lines.filter((l) => /^(warn|error)/.test(l) && !/storage full/.test(l))).toEqual([]);
  });
});

describe('WorkerLoop', () => {
  it('runs a job: running + progress, outputs, succeeded, one usage record, one webhook, acked', async () => {
    const w = world();
    const id = await w.submit('ok', { webhook: true, steps: 6 });
    const seen = new Set<string>();
    w.store.put = new Proxy(w.store.put, {
      apply: (target, self, args: [string, Uint8Array | string]) => {
        const body = typeof args[1] === 'string' ? args[1] : new TextDecoder().decode(args[1]);
        if (String(args[0]).endsWith('status.json')) seen.add(JSON.parse(body).progress?.phase ?? 'none');
        return Reflect.apply(target, self, args);
      },
    });
    w.make().start();
    const s = await w.terminal(id);
    expect(s).toMatchObject({ status: 'succeeded', usage: { unet_evals: 6, images: 1 }, error: null, webhook_enqueued: true });
    expect(s.outputs).toEqual([{ source: 'aggregated', index: 0, kind: 'image', content_type: 'image/png', key: `tenants/acme/jobs/${id}/out/aggregated-0.png`, width: 64, height: 64 }]);
    expect(s.timings.run_ms).toBeGreaterThanOrEqual(0);
    expect(seen).toContain('starting');
    expect(seen).toContain('base_only');
    expect(await w.usageKeys()).toHaveLength(1);
    const [hook] = await w.webhooks.receive({ visibilitySeconds: 5 });
    expect(JSON.parse(hook!.body)).toEqual({ v: 1, job_id: id, tenant: 'acme', type: 'job.succeeded' });
    await w.until(async () => (await w.queue.stats()).inFlight === 0 && (await w.queue.stats()).visible === 0, 'the ack');
  });

  it('a redelivered finished job is acked without running or billing it again', async () => {
    const w = world();
    const id = await w.submit('ok');
    w.make().start();
    await w.terminal(id);
    await w.queue.send(JSON.stringify({ v: 1, job_id: id, tenant: 'acme', enqueued_at: new Date().toISOString() }));
    await w.until(async () => (await w.queue.stats()).visible + (await w.queue.stats()).inFlight === 0, 'the duplicate to be acked');
    expect(w.engine.calls).toBe(1);
    expect(await w.usageKeys()).toHaveLength(1);
  });

  it('a job canceled while queued never runs, and still gets its webhook', async () => {
    const w = world();
    const id = await w.submit('ok', { webhook: true });
    await w.repo.putCancel('acme', id, { requested_at: new Date().toISOString() });
    w.make().start();
    const s = await w.terminal(id);
    expect(s.status).toBe('canceled');
    expect(w.engine.calls).toBe(0);
    expect(await w.usageKeys()).toHaveLength(0);
    const [hook] = await w.webhooks.receive({ visibilitySeconds: 5, waitSeconds: 1 });
    expect(JSON.parse(hook!.body).type).toBe('job.canceled');
  });

  it('a running job stops at the next step after cancel.json appears, billed for the steps it ran', async () => {
    const w = world();
    w.engine.stepMs = 40;
    const id = await w.submit('ok', { steps: 50 });
    w.make().start();
    await w.until(async () => ((await w.status(id))?.progress?.step ?? 0) >= 2, 'a few steps');
    await w.repo.putCancel('acme', id, { requested_at: new Date().toISOString() });
    const s = await w.terminal(id);
    expect(s.status).toBe('canceled');
    expect(s.progress!.step).toBeLessThan(50);
    expect(s.usage!.unet_evals).toBeGreaterThanOrEqual(2);
    expect(s.usage!.images).toBe(0);
    expect(s.outputs).toEqual([]);
  });

  it('a failure after the terminal status (the usage write) never changes the outcome; the redelivery finishes the rest', async () => {
    const w = world({ retryBackoff: { baseSeconds: 1, maxSeconds: 1 } });
    const put = w.store.put.bind(w.store);
    let failed = 0;
    w.store.put = async (key, body, type) => {
      if (key.includes('/usage/') && failed++ === 0) throw new Error('EIO: usage disk hiccup');
      return put(key, body, type);
    };
    const seen: string[] = [];
    const id = await w.submit('ok', { webhook: true });
    w.make().start();
    await w.until(async () => {
      const s = await w.status(id);
      if (s) seen.push(s.status);
      return (await w.usageKeys()).length === 1 && s?.webhook_enqueued;
    }, 'usage and webhook after the redelivery');
    expect(w.engine.calls).toBe(1);
    expect(seen.slice(seen.indexOf('succeeded'))).not.toContain('queued');
    expect((await w.status(id))!.status).toBe('succeeded');
  });

  it('EngineInputError fails the job at once, naming the field; no retry', async () => {
    const w = world();
    const id = await w.submit('input', { webhook: true });
    w.make().start();
    const s = await w.terminal(id);
    expect(s).toMatchObject({ status: 'failed', attempt: 1, error: { status: 422, errors: [{ field: 'models[0].reference_image' }] } });
    expect(w.engine.calls).toBe(1);
    expect(await w.usageKeys()).toHaveLength(0);
    const [hook] = await w.webhooks.receive({ visibilitySeconds: 5, waitSeconds: 1 });
    expect(JSON.parse(hook!.body).type).toBe('job.failed');
  });

  it('a transient failure is retried, shown as queued with the reason meanwhile', async () => {
    const w = world({ retryBackoff: { baseSeconds: 1, maxSeconds: 1 } });
    const id = await w.submit('flaky');
    w.make().start();
    const waiting = await w.until(async () => { const s = await w.status(id); return s?.status === 'queued' ? s : null; }, 'the retry state');
    expect(waiting.retry).toMatchObject({ failed_attempt: 1, max_attempts: 3, error: 'transient glitch' });
    const s = await w.terminal(id);
    expect(s).toMatchObject({ status: 'succeeded', attempt: 2 });
    expect(w.engine.calls).toBe(2);
  });

  it('a job past jobTimeoutSeconds is aborted and counts as a failed attempt', async () => {
    const w = world({ jobTimeoutSeconds: 0.2, maxReceives: 1 });
    w.engine.stepMs = 50;
    const id = await w.submit('ok', { steps: 100 });
    w.make({ maxReceives: 1 }).start();
    const s = await w.terminal(id);
    expect(s.status).toBe('failed');
    expect(s.error!.detail).toMatch(/the job ran longer than 0.2 s/);
    expect(s.progress!.step).toBeLessThan(100);
  });

  it('the last allowed attempt fails the job with the reason (paths scrubbed)', async () => {
    const w = world();
    const id = await w.submit('boom');
    w.make().start();
    const s = await w.terminal(id);
    expect(s.status).toBe('failed');
    expect(s.attempt).toBe(3);
    expect(s.error!.detail).toBe('gave up after 3 attempts; the last one failed with: CUDA error at <path>: device lost');
    expect(w.engine.calls).toBe(3);
  });

  it('poison messages go to the dead-letter queue and stay parked there', async () => {
    const w = world();
    await w.queue.send('{"not": "a job"}');
    w.make().start();
    await w.until(async () => { const s = await w.dlq.stats(); return s.delayed === 1 ? s : null; }, 'the poison message parked in the DLQ');
    expect((await w.queue.stats()).visible + (await w.queue.stats()).inFlight).toBe(0);
  });

  it('a job dead-lettered by the queue (its runner kept dying) is failed with the reason', async () => {
    const w = world();
    const id = await w.submit('ok', { webhook: true });
    // three runners take the message and die without a word
    for (let i = 0; i < 3; i++) {
      const [lease] = await w.queue.receive({ visibilitySeconds: 0 });
      expect(lease).toBeDefined();
    }
    w.make().start();
    const s = await w.terminal(id);
    expect(s.status).toBe('failed');
    expect(s.error!.type).toBe('urn:amdm:problem:dead-lettered');
    expect(s.error!.detail).toMatch(/dead-lettered after 3 deliveries/);
    expect(w.engine.calls).toBe(0);
    const [hook] = await w.webhooks.receive({ visibilitySeconds: 5, waitSeconds: 1 });
    expect(JSON.parse(hook!.body).type).toBe('job.failed');
  });

  it('every way a job ends releases its slot once its terminal status is stored; a failing release fails nothing', async () => {
    const released: { id: string; stored: string | undefined }[] = [];
    const { lines, logger } = recordingLogger();
    let calls = 0;
    const w = world({ logger });
    const loop = w.make({
      releaseSlot: async (tenant, id) => {
        expect(tenant).toBe('acme');
        released.push({ id, stored: (await w.status(id))?.status });
        if (calls++ === 0) throw new Error('ProvisionedThroughputExceededException');
      },
    });
    // a job whose runners kept dying (three receives, first in the queue): the dead-letter path ends it
    const dead = await w.submit('ok');
    for (let i = 0; i < 3; i++) expect((await w.queue.receive({ visibilitySeconds: 0 }))[0]?.body).toContain(dead);
    const ok = await w.submit('ok');
    const bad = await w.submit('input');
    const canceled = await w.submit('ok');
    await w.repo.putCancel('acme', canceled, { requested_at: new Date().toISOString() });
    loop.start();
    for (const id of [ok, bad, canceled, dead]) await w.terminal(id);
    await w.until(async () => released.length >= 4, 'four releases');
    expect(Object.fromEntries(released.map((r) => [r.id, r.stored]))).toEqual({ [ok]: 'succeeded', [bad]: 'failed', [canceled]: 'canceled', [dead]: 'failed' });
    expect((await w.status(ok))!.status).toBe('succeeded');
    expect(lines.filter((l) => l.startsWith("warn releasing the job's slot failed"))).toHaveLength(1);
  });

  it('extends the lease while a job runs longer than the visibility timeout', async () => {
    const w = world({ visibilitySeconds: 2 });
    w.engine.stepMs = 100;
    const id = await w.submit('ok', { steps: 30 }); // ~3 s, beyond the 2 s lease
    w.make().start();
    w.make().start(); // a second runner would steal an expired lease
    const s = await w.terminal(id);
    expect(s.status).toBe('succeeded');
    expect(s.attempt).toBe(1);
    expect(w.engine.calls).toBe(1);
  });

  it('close() lets a short job finish within the grace period', async () => {
    const w = world({ gracePeriodSeconds: 5 });
    w.engine.stepMs = 20;
    const id = await w.submit('ok', { steps: 10 });
    const loop = w.make();
    loop.start();
    await w.until(async () => (await w.status(id))?.status === 'running', 'the job to start');
    await loop.close();
    expect((await w.status(id))!.status).toBe('succeeded');
  });

  it('close() releases a job that outlives the grace period, and another runner finishes it', async () => {
    const w = world({ gracePeriodSeconds: 0.1 });
    w.engine.stepMs = 50;
    const id = await w.submit('ok', { steps: 20 });
    const first = w.make();
    first.start();
    await w.until(async () => ((await w.status(id))?.progress?.step ?? 0) >= 1, 'the job to start');
    await first.close();
    expect((await w.queue.stats()).visible).toBe(1); // released with visibility 0, not left to expire
    w.make().start();
    const s = await w.terminal(id);
    expect(s).toMatchObject({ status: 'succeeded', attempt: 2 });
    expect(await w.usageKeys()).toHaveLength(1);
  });

  it('drops a duplicate message while the job runs under another message', async () => {
    const w = world({ concurrency: 2 });
    w.engine.stepMs = 30;
    const id = await w.submit('ok', { steps: 10 });
    w.make().start();
    await w.until(async () => (await w.status(id))?.status === 'running', 'the job to start');
    await w.queue.send(JSON.stringify({ v: 1, job_id: id, tenant: 'acme', enqueued_at: new Date().toISOString() }));
    const s = await w.terminal(id);
    expect(s.status).toBe('succeeded');
    await w.until(async () => (await w.queue.stats()).visible + (await w.queue.stats()).inFlight === 0, 'both messages gone');
    expect(w.engine.calls).toBe(1);
  });

  it('runs `concurrency` jobs at once', async () => {
    const w = world({ concurrency: 2 });
    w.engine.stepMs = 30;
    const ids = [await w.submit('ok', { steps: 10 }), await w.submit('ok', { steps: 10 })];
    const loop = w.make();
    loop.start();
    await w.until(async () => loop.running === 2, 'two jobs at once');
    await Promise.all(ids.map((id) => w.terminal(id)));
  });

  it('refuses to start twice; close() is idempotent; options are checked', async () => {
    const w = world();
    const loop = w.make();
    loop.start();
    expect(() => loop.start()).toThrow(/already started/);
    await Promise.all([loop.close(), loop.close()]);
    await loop.close();
    expect(() => w.make({ maxReceives: 0 })).toThrow(/option "maxReceives"/);
    expect(() => w.make({ visibilitySeconds: 1 })).toThrow(/option "visibilitySeconds"/);
    expect(() => w.make({ queue: {} as never })).toThrow(/option "queue"/);
  });
});
