/**
 * GET /v1/jobs/{id}/events: states arrive in lifecycle order, quiet gaps get keep-alive
 * comments, the stream ends right after the terminal record, failures are reported in the
 * stream without internals; and over real HTTP with the runner, a job's progress is
 * followed to the end (the client the playground and the CLI share).
 *
 * The in-process part drives the job's state by hand (the runner's status.json) and a
 * clock it advances, so every step is asserted rather than raced.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { MemoryQueue } from '../adapters/memory/memory-queue.ts';
import { MemoryStore } from '../adapters/memory/memory-store.ts';
import { createApp } from '../edge/app.ts';
import { createApiKey } from '../shared/api-keys.ts';
import type { JobRecord, ModelInfo } from '../shared/contract/index.ts';
import { JobRepository, type StoredStatus } from '../shared/job-repository.ts';
import { ApiClient } from '../shared/client/client.ts';
import { type EventStreamComment, type ServerSentEvent, isComment, readEventStream } from '../shared/client/event-stream.ts';
import { startStack, type Stack } from './e2e/harness.ts';
import { SLOW_ENGINE } from './faults/runner-process.ts';

const BASE = 'http://127.0.0.1:8787';
const SECRET = 'blob-secret-'.repeat(4);
const PEPPER = 'pepper-'.repeat(4);
const T0 = Date.parse('2025-03-01T10:00:00Z');

const model = (id: string): ModelInfo => ({
  id,
  description: '',
  ecosystem: 'shapes-v1',
  latent: { channels: 4, vae_scale_factor: 4 },
  sizes: { default: [64, 64], min: 32, max: 128, multiple: 16 },
  conditions: { prompt: { max_tokens: 32 }, grounding: null, reference_image: null },
  schedulers: ['ddim', 'euler'],
});

async function inProcess() {
  let now = T0;
  const store = new MemoryStore({ signing: { secret: SECRET, baseUrl: BASE }, now: () => now });
  const logged: string[] = [];
  const app = createApp({
    store,
    queue: new MemoryQueue(),
    catalog: async () => [model('shapes-base')],
    pepper: PEPPER,
    publicBaseUrl: BASE,
    localBlobs: { secret: SECRET },
    clock: { now: () => now },
    logger: { error: (m, f) => logged.push(`${m} ${JSON.stringify(f)}`), warn() {}, info() {} },
    limits: { idempotencySettleMs: 0 },
  });
  const key = (await createApiKey(store, { tenant: 'acme', pepper: PEPPER })).key;
  const auth = { authorization: `Bearer ${key}` };
  const res = await app.request('/v1/jobs', { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ models: [{ id: 'shapes-base', role: 'base', prompt: 'a red circle' }], sampler: { steps: 4, seed: 1 } }) });
  const job = (await res.json()) as JobRecord;
  return { app, store, repo: new JobRepository(store), auth, job, logged, advance: (ms: number) => (now += ms) };
}

function status(over: Partial<StoredStatus>): StoredStatus {
  return {
    v: 1,
    status: 'running',
    message_id: 'm',
    attempt: 1,
    started_at: '2025-03-01T10:00:01.000Z',
    finished_at: null,
    updated_at: '2025-03-01T10:00:01.000Z',
    progress: { step: 0, total: 4, phase: 'starting', image: 1, images: 1 },
    usage: null,
    timings: { queued_ms: 1000, run_ms: null, onnx_ms: null, outside_onnx_ms: null },
    error: null,
    outputs: [],
    webhook_enqueued: false,
    ...over,
  };
}

/** Pull items one at a time, so the test can change the job between them. */
function reader(body: ReadableStream<Uint8Array>) {
  const it = readEventStream(body);
  return {
    async next(): Promise<ServerSentEvent | EventStreamComment | null> {
      const r = await it.next();
      return r.done ? null : r.value;
    },
    async job(): Promise<JobRecord & { _retry?: number }> {
      const item = await this.next();
      if (!item || isComment(item) || item.event !== 'job') throw new Error(`expected a job event, got ${JSON.stringify(item)}`);
      return { ...(JSON.parse(item.data) as JobRecord), ...(item.retry !== undefined ? { _retry: item.retry } : {}) };
    },
  };
}

describe('the event stream, in process', () => {
  it('sends each state once, in order, keep-alives in quiet gaps, and ends after the terminal record', async () => {
    const { app, repo, auth, job, advance } = await inProcess();
    const res = await app.request(`/v1/jobs/${job.id}/events`, { headers: auth });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    expect(res.headers.get('cache-control')).toBe('no-store');
    const r = reader(res.body!);

    const queued = await r.job();
    expect(queued).toMatchObject({ id: job.id, status: 'queued', progress: null, queue: { reason: expect.any(String) } });
    // the reconnection delay goes with the first event only
    expect(queued._retry).toBe(2000);

    // nothing changes for longer than the keep-alive interval: a comment, not a repeated event
    advance(16_000);
    expect(await r.next()).toEqual({ comment: 'keep-alive' });

    await repo.putStatus('acme', job.id, status({ progress: { step: 1, total: 4, phase: 'aggregating', image: 1, images: 1 }, updated_at: '2025-03-01T10:00:02.000Z' }));
    const step1 = await r.job();
    expect(step1).toMatchObject({ status: 'running', progress: { step: 1, total: 4, phase: 'aggregating' } });
    expect(step1._retry).toBeUndefined();

    await repo.putStatus('acme', job.id, status({ progress: { step: 3, total: 4, phase: 'base_only', image: 1, images: 1 }, updated_at: '2025-03-01T10:00:03.000Z' }));
    expect(await r.job()).toMatchObject({ status: 'running', progress: { step: 3, phase: 'base_only' } });

    const out = await repo.putOutput('acme', job.id, { source: 'aggregated', index: 0, kind: 'image', content_type: 'image/png', width: 64, height: 64 }, new Uint8Array([0x89, 0x50, 0x4e, 0x47]));
    await repo.putStatus(
      'acme',
      job.id,
      status({
        status: 'succeeded',
        finished_at: '2025-03-01T10:00:04.000Z',
        updated_at: '2025-03-01T10:00:04.000Z',
        progress: { step: 4, total: 4, phase: 'decoding', image: 1, images: 1 },
        usage: { unet_evals: 4, images: 1, runner_ms: 3000 },
        outputs: [out],
      }),
    );
    const done = await r.job();
    expect(done).toMatchObject({ status: 'succeeded', progress: { step: 4, total: 4 }, outputs: [{ source: 'aggregated', url: expect.stringContaining('/v1/blobs/') }] });
    // and nothing after it: the server closed the stream
    expect(await r.next()).toBeNull();
  });

  it('a canceled queued job ends the stream with the canceled record', async () => {
    const { app, auth, job } = await inProcess();
    const res = await app.request(`/v1/jobs/${job.id}/events`, { headers: auth });
    const r = reader(res.body!);
    expect((await r.job()).status).toBe('queued');
    expect((await app.request(`/v1/jobs/${job.id}/cancel`, { method: 'POST', headers: auth })).status).toBe(200);
    expect((await r.job()).status).toBe('canceled');
    expect(await r.next()).toBeNull();
  });

  it('closes a long stream after its lifetime without claiming the job finished', async () => {
    const { app, auth, job, advance } = await inProcess();
    const res = await app.request(`/v1/jobs/${job.id}/events`, { headers: auth });
    const r = reader(res.body!);
    expect((await r.job()).status).toBe('queued');
    advance(4 * 60_000);
    // a keep-alive may come first (the gap is also longer than its interval); then the end
    let item = await r.next();
    if (item && isComment(item)) item = await r.next();
    expect(item).toBeNull();
  });

  it('reports a store failure inside the stream as a problem naming only the request id', async () => {
    const { app, store, auth, job, logged } = await inProcess();
    const res = await app.request(`/v1/jobs/${job.id}/events`, { headers: auth });
    const r = reader(res.body!);
    expect((await r.job()).status).toBe('queued');
    store.get = async () => {
      throw new Error('EIO: /srv/data/store exploded');
    };
    const err = await r.next();
    expect(err).toMatchObject({ event: 'error' });
    const problem = JSON.parse((err as ServerSentEvent).data);
    expect(problem).toMatchObject({ status: 500, instance: expect.stringMatching(/^urn:amdm:request:/) });
    expect((err as ServerSentEvent).data).not.toMatch(/EIO|srv|exploded/);
    expect(logged.join('\n')).toMatch(/exploded/);
    expect(await r.next()).toBeNull();
  });

  it('needs the Bearer key and a job of this tenant; keys in the URL are not accepted', async () => {
    const { app, auth, job } = await inProcess();
    const noKey = await app.request(`/v1/jobs/${job.id}/events`);
    expect(noKey.status).toBe(401);
    expect(noKey.headers.get('content-type')).toBe('application/problem+json');
    expect((await noKey.json()).errors).toEqual([expect.objectContaining({ field: 'header Authorization' })]);
    // what an EventSource user might try: still 401, the query is never read as a credential
    const key = auth.authorization.slice('Bearer '.length);
    expect((await app.request(`/v1/jobs/${job.id}/events?key=${key}&access_token=${key}`)).status).toBe(401);
    const unknown = await app.request('/v1/jobs/job_00000000000000000000000000/events', { headers: auth });
    expect(unknown.status).toBe(404);
    expect(unknown.headers.get('content-type')).toBe('application/problem+json');
  });
});

describe('the event stream over HTTP, with the runner', () => {
  let stack: Stack | null = null;
  afterAll(async () => {
    await stack?.close();
  });

  it('a job is followed from queued to succeeded with progress reaching n of n, then the stream ends', async () => {
    stack = await startStack({ engine: { module: SLOW_ENGINE, options: { stepMs: 25 } } });
    const client = new ApiClient({ baseUrl: stack.url, apiKey: stack.key });
    const job = await client.submit({ models: [{ id: 'shapes-base', role: 'base', prompt: 'a red circle' }], sampler: { steps: 60, seed: 3 } });

    // the raw stream: every event parsed, and the body ends after the terminal one
    const res = await fetch(`${stack.url}/v1/jobs/${job.id}/events`, { headers: { authorization: `Bearer ${stack.key}` } });
    const seen: JobRecord[] = [];
    for await (const item of readEventStream(res.body!)) {
      if (isComment(item)) continue;
      expect(item.event).toBe('job');
      expect(seen.length === 0 || !['succeeded', 'failed', 'canceled'].includes(seen.at(-1)!.status), 'an event after the terminal one').toBe(true);
      seen.push(JSON.parse(item.data) as JobRecord);
    }
    const rank = { queued: 0, running: 1, succeeded: 2, failed: 2, canceled: 2 };
    const ranks = seen.map((j) => rank[j.status]);
    expect(ranks).toEqual([...ranks].sort((a, b) => a - b));
    const steps = seen.filter((j) => j.status === 'running').map((j) => j.progress!.step);
    expect(steps).toEqual([...steps].sort((a, b) => a - b));
    // 60 steps of 25 ms outlast several polls; how many of them land is the machine's business
    expect(steps.length, 'progress events while running').toBeGreaterThanOrEqual(1);
    const last = seen.at(-1)!;
    expect(last.status).toBe('succeeded');
    expect(last.progress).toMatchObject({ step: 60, total: 60 });
    expect(last.outputs[0]!.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/v1\/blobs\//);

    // the shared client sees the same end, from the stream
    const vias = new Set<string>();
    const followed = await client.follow(job.id, { onUpdate: (_j, via) => vias.add(via) });
    expect(followed.status).toBe('succeeded');
    expect([...vias]).toEqual(['stream']);
  });
});
