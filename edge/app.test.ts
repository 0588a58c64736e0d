/**
 * The edge in process (app.request) over the memory adapters: every route, the
 * idempotency scheme, cancellation, tenancy and the OpenAPI document.
 */
import SwaggerParser from '@apidevtools/swagger-parser';
import { encode as encodePng } from 'fast-png';
import { describe, expect, it } from 'vitest';
import { MemoryQueue } from '../adapters/memory/memory-queue.ts';
import { MemoryStore } from '../adapters/memory/memory-store.ts';
import { createApiKey } from '../shared/api-keys.ts';
import type { ModelInfo } from '../shared/contract/index.ts';
import { JobRepository, type StoredStatus } from '../shared/job-repository.ts';
import { StorageFullError } from '../shared/ports/store.ts';
import { StorageHealth } from '../shared/storage-health.ts';
import { createApp, type AppDeps } from './app.ts';
import { encodeCursor } from './jobs-service.ts';
import { TokenBucketLimiter } from './middleware/rate-limit/index.ts';
import { jpegDeclaring, pngBomb } from '../test/fixtures/images.ts';

const BASE = 'http://127.0.0.1:8787';
const SECRET = 'blob-secret-'.repeat(4);
const PEPPER = 'pepper-'.repeat(4);
/** 1×1 RGBA: the edge reads the header of every reference image */
const PNG = new Uint8Array(encodePng({ width: 1, height: 1, data: new Uint8Array([200, 100, 50, 255]), channels: 4, depth: 8 }));

const model = (id: string, extra: Partial<ModelInfo['conditions']> = {}): ModelInfo => ({
  id,
  description: '',
  ecosystem: 'shapes-v1',
  latent: { channels: 4, vae_scale_factor: 4 },
  sizes: { default: [64, 64], min: 32, max: 128, multiple: 16 },
  conditions: { prompt: { max_tokens: 32 }, grounding: null, reference_image: null, ...extra },
  schedulers: ['ddim', 'euler'],
});
export const CATALOG: ModelInfo[] = [
  model('shapes-base'),
  model('shapes-layout', { grounding: { max_objects: 4 } }),
  model('shapes-style', { reference_image: { width: 64, height: 64 } }),
];

async function setup(over: Partial<AppDeps> = {}) {
  let now = Date.parse('2025-03-01T10:00:00Z');
  const clock = { now: () => now };
  const store = new MemoryStore({ signing: { secret: SECRET, baseUrl: BASE }, now: () => now });
  const queue = new MemoryQueue();
  const app = createApp({
    store,
    queue,
    catalog: async () => CATALOG,
    pepper: PEPPER,
    publicBaseUrl: BASE,
    localBlobs: { secret: SECRET },
    clock,
    logger: { error() {}, warn() {}, info() {} },
    ...over,
    limits: { idempotencySettleMs: 0, ...over.limits },
  });
  const acme = (await createApiKey(store, { tenant: 'acme', pepper: PEPPER })).key;
  const other = (await createApiKey(store, { tenant: 'other', pepper: PEPPER })).key;
  const call = (path: string, init: { method?: string; key?: string | null; body?: unknown; headers?: Record<string, string> } = {}) =>
    app.request(path, {
      method: init.method ?? (init.body !== undefined ? 'POST' : 'GET'),
      headers: {
        ...(init.key === null ? {} : { authorization: `Bearer ${init.key ?? acme}` }),
        ...(init.body !== undefined ? { 'content-type': 'application/json' } : {}),
        ...init.headers,
      },
      ...(init.body !== undefined ? { body: typeof init.body === 'string' ? init.body : JSON.stringify(init.body) } : {}),
    });
  return { app, store, queue, repo: new JobRepository(store), acme, other, call, advance: (ms: number) => (now += ms), clock };
}

const single = (prompt = 'a red circle') => ({ models: [{ id: 'shapes-base', role: 'base', prompt }], sampler: { steps: 4, seed: 1 } });

function runningStatus(over: Partial<StoredStatus> = {}): StoredStatus {
  return {
    v: 1,
    status: 'running',
    message_id: 'm',
    attempt: 1,
    started_at: '2025-03-01T10:00:01.000Z',
    finished_at: null,
    updated_at: '2025-03-01T10:00:01.000Z',
    progress: { step: 1, total: 4, phase: 'aggregating', image: 1, images: 1 },
    usage: null,
    timings: { queued_ms: 1000, run_ms: null, onnx_ms: null, outside_onnx_ms: null },
    error: null,
    outputs: [],
    webhook_enqueued: false,
    ...over,
  };
}

describe('POST /v1/jobs', () => {
  it('answers a create without looking up the queue position; reads of the job report it', async () => {
    const asked: string[] = [];
    const { call } = await setup({
      queueInfo: async (req) => {
        asked.push(req.id);
        return { position: 3, reason: '3 job(s) ahead' };
      },
    });
    const created = await (await call('/v1/jobs', { body: single() })).json();
    expect(created.queue).toEqual({ position: null, reason: expect.stringMatching(/waiting for a runner/) });
    expect(asked).toEqual([]);
    const read = await (await call(`/v1/jobs/${created.id}`)).json();
    expect(read.queue).toEqual({ position: 3, reason: '3 job(s) ahead' });
    expect(asked).toEqual([created.id]);
  });

  it('202 with the queued job, its Location, the stored spec and one queue message', async () => {
    const { call, queue, store } = await setup();
    const res = await call('/v1/jobs', { body: single() });
    expect(res.status).toBe(202);
    const job = await res.json();
    expect(res.headers.get('location')).toBe(`${BASE}/v1/jobs/${job.id}`);
    expect(job).toMatchObject({ object: 'job', status: 'queued', spec: { sampler: { steps: 4, seed: 1, width: 64, height: 64 } }, outputs: [] });
    expect(job.queue.reason).toMatch(/waiting/);
    const [lease] = await queue.receive({ visibilitySeconds: 30 });
    expect(JSON.parse(lease!.body)).toMatchObject({ v: 1, job_id: job.id, tenant: 'acme' });
    expect(await store.get(`tenants/acme/jobs/${job.id}/request.json`)).not.toBeNull();
    expect((await store.list('tenants/acme/index/')).keys).toHaveLength(1);
  });

  it('422 naming fields: schema, unknown fields, catalog shaping', async () => {
    const { call } = await setup();
    const res = await call('/v1/jobs', {
      body: { models: [{ id: 'shapes-base', role: 'base', prompt: 'x' }, { id: 'shapes-layout', role: 'auxiliary', prompt: 'x', grounding: [{ phrase: 'a', box: [0.5, 0, 0.2, 1] }] }], colour: 'red' },
    });
    expect(res.status).toBe(422);
    expect(res.headers.get('content-type')).toBe('application/problem+json');
    const p = await res.json();
    expect(p.errors.map((e: { field: string }) => e.field).sort()).toEqual(['colour', 'models[1].grounding[0].box']);

    const shaped = await call('/v1/jobs', { body: { models: [{ id: 'nope', role: 'base', prompt: 'x' }] } });
    expect(shaped.status).toBe(422);
    expect((await shaped.json()).errors).toEqual([{ field: 'models[0].id', message: expect.stringMatching(/unknown model "nope"; installed: shapes-base/) }]);
  });

  it('400 for malformed JSON, 415 for other media types, 413 for huge bodies', async () => {
    const { call } = await setup({ limits: { maxJobBodyBytes: 1000 } });
    const bad = await call('/v1/jobs', { body: '{"models": [' });
    expect(bad.status).toBe(400);
    expect(await bad.json()).toMatchObject({ errors: [{ field: 'body' }] });
    const text = await call('/v1/jobs', { method: 'POST', headers: { 'content-type': 'text/plain' }, body: undefined });
    expect([400, 415]).toContain(text.status);
    const plain = await call('/v1/jobs', { method: 'POST', headers: { 'content-type': 'text/plain' } });
    expect(plain.headers.get('content-type')).toBe('application/problem+json');
    const huge = await call('/v1/jobs', { body: single('x'.repeat(2000)) });
    expect(huge.status).toBe(413);
  });

  it('refuses webhooks to private addresses unless allowed', async () => {
    const { call } = await setup();
    const res = await call('/v1/jobs', { body: { ...single(), webhook: { url: 'http://169.254.169.254/latest' } } });
    expect(res.status).toBe(422);
    expect((await res.json()).errors[0].field).toBe('webhook.url');
    const dev = await setup({ allowPrivateWebhooks: true });
    expect((await dev.call('/v1/jobs', { body: { ...single(), webhook: { url: 'http://127.0.0.1:9/hook' } } })).status).toBe(202);
  });

  it('refuses webhooks to IPv4 carried in IPv6 and to special-purpose IPv6 blocks, naming the block', async () => {
    const { call } = await setup();
    const refused: [string, RegExp][] = [
      ['http://[::ffff:0:127.0.0.1]:9/hook', /::ffff:0:7f00:1 is in ::ffff:0:0:0\/96, IPv4-translated Address .*carrying IPv4 127\.0\.0\.1/],
      ['http://[64:ff9b::169.254.169.254]/latest', /64:ff9b::a9fe:a9fe is in 64:ff9b::\/96, NAT64 Well-Known Prefix \(RFC 6052\), carrying IPv4 169\.254\.169\.254, which is in 169\.254\.0\.0\/16, Link Local/],
      ['http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/hook', /TEREDO .*Teredo client 127\.0\.0\.1/],
      ['http://[2002:a9fe:a9fe::1]/hook', /6to4 .*6to4 router 169\.254\.169\.254/],
      ['http://[64:ff9b:1::a00:1]/hook', /64:ff9b:1::\/48, Local-Use IPv4\/IPv6 Translation Prefix/],
      ['http://[2001:20::1]/hook', /ORCHIDv2/],
      ['http://[3fff::1]/hook', /3fff::\/20, Documentation/],
    ];
    for (const [url, why] of refused) {
      const res = await call('/v1/jobs', { body: { ...single(), webhook: { url } } });
      expect(res.status, url).toBe(422);
      const p = await res.json();
      expect(p.errors, url).toEqual([{ field: 'webhook.url', message: expect.stringMatching(why) }]);
    }
    expect((await call('/v1/jobs', { body: { ...single(), webhook: { url: 'http://[64:ff9b::8.8.8.8]/hook' } } })).status).toBe(202);
  });

  it('stores inline reference images and keeps only their key in the spec', async () => {
    const { call, store } = await setup();
    const data = btoa(String.fromCharCode(...PNG));
    const res = await call('/v1/jobs', {
      body: { models: [{ id: 'shapes-base', role: 'base', prompt: 'x' }, { id: 'shapes-style', role: 'auxiliary', prompt: 'x', reference_image: { data, scale: 0.5 } }] },
    });
    expect(res.status).toBe(202);
    const job = await res.json();
    const ref = job.spec.models[1].reference_image;
    expect(ref).toEqual({ key: expect.stringMatching(/^tenants\/acme\/uploads\/upl_/), scale: 0.5 });
    expect((await store.get(ref.key))!.body).toEqual(PNG);
    expect(JSON.stringify(job)).not.toContain(data);

    const notImage = await call('/v1/jobs', {
      body: { models: [{ id: 'shapes-base', role: 'base', prompt: 'x' }, { id: 'shapes-style', role: 'auxiliary', prompt: 'x', reference_image: { data: btoa('hello world!') } }] },
    });
    expect(notImage.status).toBe(422);
    expect((await notImage.json()).errors).toEqual([{ field: 'models[1].reference_image.data', message: expect.stringMatching(/PNG or JPEG/) }]);
  });

  it('uploads: ticket -> signed PUT -> job by upload_id; unknown ids and other tenants refused', async () => {
    const { call, app, other } = await setup();
    const ticket = await (await call('/v1/uploads', { body: { content_type: 'image/png' } })).json();
    expect(ticket).toMatchObject({ object: 'upload', method: 'PUT', upload_id: expect.stringMatching(/^upl_/) });
    const put = await app.request(ticket.upload_url, { method: 'PUT', headers: { 'content-type': 'image/png' }, body: PNG });
    expect(put.status).toBe(204);
    expect((await app.request(ticket.upload_url, { method: 'PUT', body: PNG })).status).toBe(409);
    const body = (id: string) => ({ models: [{ id: 'shapes-style', role: 'base', prompt: 'x', reference_image: { upload_id: id } }] });
    const ok = await call('/v1/jobs', { body: body(ticket.upload_id) });
    expect(ok.status).toBe(202);
    expect((await ok.json()).spec.models[0].reference_image.key).toBe(`tenants/acme/uploads/${ticket.upload_id}`);
    const theirs = await call('/v1/jobs', { key: other, body: body(ticket.upload_id) });
    expect(theirs.status).toBe(422);
    expect((await theirs.json()).errors[0].field).toBe('models[0].reference_image.upload_id');
  });

  describe('decompression bombs are refused by their header, before anything decodes them', () => {
    // 30000×30000 gray over 900 MB of deflated zeros: an 0.9 MB file
    const bomb = pngBomb(30000, 30000);
    const tooLarge =
      /^the image is 30000×30000 \(900 MP, 900000000 bytes decoded\); at most 16384 pixels wide or high, 16777216 pixels in all and 67108864 bytes decoded/;
    const styled = (ref: object) => ({ models: [{ id: 'shapes-base', role: 'base', prompt: 'x' }, { id: 'shapes-style', role: 'auxiliary', prompt: 'x', reference_image: ref }] });

    it('inline: 422 naming models[1].reference_image.data; nothing stored or queued', async () => {
      const { call, store, queue } = await setup();
      expect(bomb.length).toBeLessThan(1024 * 1024);
      const res = await call('/v1/jobs', { body: styled({ data: Buffer.from(bomb).toString('base64') }) });
      expect(res.status).toBe(422);
      expect(res.headers.get('content-type')).toBe('application/problem+json');
      expect((await res.json()).errors).toEqual([{ field: 'models[1].reference_image.data', message: expect.stringMatching(tooLarge) }]);
      expect((await store.list('tenants/acme/')).keys.filter((k) => !k.startsWith('tenants/acme/keys'))).toEqual([]);
      expect(await queue.receive({ visibilitySeconds: 30 })).toEqual([]);

      const jpeg = await call('/v1/jobs', { body: styled({ data: Buffer.from(jpegDeclaring(30000, 30000)).toString('base64') }) });
      expect(jpeg.status).toBe(422);
      expect((await jpeg.json()).errors).toEqual([{ field: 'models[1].reference_image.data', message: expect.stringMatching(/^the image is 30000×30000 \(900 MP/) }]);
    });

    it('signed PUT: 422 naming body; nothing stored, and the same URL then takes a good image', async () => {
      const { call, app, store } = await setup();
      const ticket = await (await call('/v1/uploads', { body: { content_type: 'image/png' } })).json();
      const put = await app.request(ticket.upload_url, { method: 'PUT', headers: { 'content-type': 'image/png' }, body: bomb });
      expect(put.status).toBe(422);
      expect((await put.json()).errors).toEqual([{ field: 'body', message: expect.stringMatching(tooLarge) }]);
      expect(await store.get(`tenants/acme/uploads/${ticket.upload_id}`)).toBeNull();
      expect((await app.request(ticket.upload_url, { method: 'PUT', headers: { 'content-type': 'image/png' }, body: PNG })).status).toBe(204);
    });

    it('an upload that reached the store around the edge (S3 presigned PUT): refused when a job names it', async () => {
      const { call, store } = await setup();
      const ticket = await (await call('/v1/uploads', { body: { content_type: 'image/png' } })).json();
      await store.put(`tenants/acme/uploads/${ticket.upload_id}`, bomb, 'image/png');
      const res = await call('/v1/jobs', { body: styled({ upload_id: ticket.upload_id }) });
      expect(res.status).toBe(422);
      expect((await res.json()).errors).toEqual([{ field: 'models[1].reference_image.upload_id', message: expect.stringMatching(tooLarge) }]);
    });

    it('a damaged header is refused with what is wrong', async () => {
      const { call } = await setup();
      const damaged = PNG.slice();
      damaged[17] = damaged[17]! ^ 1; // width, under the IHDR checksum
      const res = await call('/v1/jobs', { body: styled({ data: Buffer.from(damaged).toString('base64') }) });
      expect(res.status).toBe(422);
      expect((await res.json()).errors).toEqual([{ field: 'models[1].reference_image.data', message: expect.stringMatching(/IHDR\) checksum does not match/) }]);
    });
  });

  it('Idempotency-Key: same body -> same job, once; different body -> 422', async () => {
    const { call, queue } = await setup();
    const h = { 'idempotency-key': 'order-42' };
    const a = await call('/v1/jobs', { body: single(), headers: h });
    // same meaning, other key order and spacing
    const b = await call('/v1/jobs', { body: JSON.stringify({ sampler: { seed: 1, steps: 4 }, models: [{ prompt: 'a red circle', role: 'base', id: 'shapes-base' }] }), headers: h });
    expect(a.status).toBe(202);
    expect(b.status).toBe(202);
    expect(b.headers.get('idempotent-replayed')).toBe('true');
    expect((await b.json()).id).toBe((await a.json()).id);
    expect((await queue.stats()).visible).toBe(1);
    const c = await call('/v1/jobs', { body: single('something else'), headers: h });
    expect(c.status).toBe(422);
    expect(await c.json()).toMatchObject({ type: 'urn:amdm:problem:idempotency-key-reused', errors: [{ field: 'header Idempotency-Key' }] });
    const long = await call('/v1/jobs', { body: single(), headers: { 'idempotency-key': 'k'.repeat(256) } });
    expect(long.status).toBe(400);
    expect((await long.json()).errors[0].field).toBe('header Idempotency-Key');
  });

  it('Idempotency-Key: concurrent same-key requests create exactly one job', async () => {
    // same fake millisecond for all: claims tie and are ordered by job id, the hardest case
    const { call, queue } = await setup();
    const results = await Promise.all(Array.from({ length: 8 }, () => call('/v1/jobs', { body: single(), headers: { 'idempotency-key': 'race' } })));
    const ids = new Set(await Promise.all(results.map(async (r) => (await r.json()).id)));
    expect(ids.size).toBe(1);
    expect((await queue.stats()).visible).toBe(1);
  });

  it('Idempotency-Key: two edge instances over one store agree on one job', async () => {
    const one = await setup({ limits: { idempotencySettleMs: 30 } });
    const two = createApp({
      store: one.store,
      queue: one.queue,
      catalog: async () => CATALOG,
      pepper: PEPPER,
      publicBaseUrl: BASE,
      clock: one.clock,
      limits: { idempotencySettleMs: 30 },
      logger: { error() {}, warn() {}, info() {} },
    });
    const init = { method: 'POST', headers: { authorization: `Bearer ${one.acme}`, 'content-type': 'application/json', 'idempotency-key': 'cross' }, body: JSON.stringify(single()) };
    const results = await Promise.all([one.app, two, one.app, two].map((a) => a.request('/v1/jobs', init)));
    const ids = new Set(await Promise.all(results.map(async (r) => (await r.json()).id)));
    expect(ids.size).toBe(1);
    expect((await one.queue.stats()).visible).toBe(1);
  });

  it('Idempotency-Key: keys are per tenant', async () => {
    const { call, other } = await setup();
    const a = await (await call('/v1/jobs', { body: single(), headers: { 'idempotency-key': 'k' } })).json();
    const b = await (await call('/v1/jobs', { key: other, body: single(), headers: { 'idempotency-key': 'k' } })).json();
    expect(a.id).not.toBe(b.id);
  });

  it('Prefer: wait returns the finished job with 200, or the current one with 202 after the wait', async () => {
    const { call, repo, advance, queue } = await setup();
    const pending = call('/v1/jobs', { body: single(), headers: { prefer: 'wait=5' } });
    // play the runner: take the message and finish the job
    const [lease] = await queue.receive({ visibilitySeconds: 30, waitSeconds: 5 });
    const { job_id } = JSON.parse(lease!.body);
    await repo.putStatus('acme', job_id, runningStatus({ status: 'succeeded', finished_at: '2025-03-01T10:00:02.000Z' }));
    const res = await pending;
    expect(res.status).toBe(200);
    expect(res.headers.get('preference-applied')).toBe('wait=5');
    expect((await res.json()).status).toBe('succeeded');

    const slow = call('/v1/jobs', { body: single('b'), headers: { prefer: 'respond-async, wait=1' } });
    await new Promise((r) => setTimeout(r, 50));
    advance(2000); // the fake clock passes the deadline
    const r2 = await slow;
    expect(r2.status).toBe(202);
    expect(r2.headers.get('preference-applied')).toBe('wait=1');
    for (const prefer of ['wait=soon', 'wait=0', 'wait=1.5', 'wait=-3']) {
      const bad = await call('/v1/jobs', { body: single(), headers: { prefer } });
      expect(bad.status, prefer).toBe(400);
      expect((await bad.json()).errors[0].field).toBe('header Prefer');
    }
  });

  it('Prefer: wait above the cap is no error: applied as the cap, answered 202 with the job once it is over', async () => {
    // a cap of 2 s stands for AWS's 50 s below CloudFront's 60 s origin timeout
    const { call, advance } = await setup({ limits: { maxWaitSeconds: 2 } });
    for (const prefer of ['wait=600', `wait=${'9'.repeat(40)}`]) {
      const pending = call('/v1/jobs', { body: single(prefer), headers: { prefer } });
      await new Promise((r) => setTimeout(r, 50));
      advance(2001);
      const res = await pending;
      expect(res.status, prefer).toBe(202);
      expect(res.headers.get('preference-applied')).toBe('wait=2');
      expect((await res.json()).status).toBe('queued');
    }
  });

  it('Prefer: wait counts from the start of the create: a slow create shortens the wait', { timeout: 10_000 }, async () => {
    const { call, advance, store } = await setup({ limits: { maxWaitSeconds: 2 } });
    // S3 taking 1.5 s to write the index entry (the fake clock moves as the write lands)
    const put = store.put.bind(store);
    store.put = async (key, body, type) => {
      if (key.includes('/index/')) advance(1500);
      return put(key, body, type);
    };
    const pending = call('/v1/jobs', { body: single(), headers: { prefer: 'wait=2' } });
    await new Promise((r) => setTimeout(r, 50));
    // 2.1 s after the create started: past the cap, though only 0.6 s after the create ended
    advance(600);
    const res = await pending;
    expect(res.status).toBe(202);
    expect(res.headers.get('preference-applied')).toBe('wait=2');
  });

  it('429 at the per-tenant cap of active jobs, and again free once one finishes', async () => {
    const { call, repo, advance } = await setup({ limits: { maxActiveJobs: 2 } });
    const a = await (await call('/v1/jobs', { body: single('1') })).json();
    await call('/v1/jobs', { body: single('2') });
    const third = await call('/v1/jobs', { body: single('3') });
    expect(third.status).toBe(429);
    expect(third.headers.get('retry-after')).toMatch(/^\d+$/);
    await repo.putStatus('acme', a.id, runningStatus({ status: 'succeeded', finished_at: '2025-03-01T10:00:02.000Z' }));
    advance(300); // the tracker re-reads a full tenant's jobs at most every 250 ms
    expect((await call('/v1/jobs', { body: single('3') })).status).toBe(202);
  });

  it('429 with Retry-After from the per-tenant rate limit', async () => {
    const { call } = await setup({ rateLimiter: new TokenBucketLimiter({ ratePerSecond: 1, burst: 2, now: () => 0 }) });
    await call('/v1/models');
    await call('/v1/models');
    const res = await call('/v1/models');
    expect(res.status).toBe(429);
    expect(res.headers.get('retry-after')).toBe('1');
  });
});

describe('POST /v1/jobs: numbers at the edges of float64', () => {
  const weighted = (w: number[]) => ({
    models: w.map((weight, i) => ({ id: i === 0 ? 'shapes-base' : 'shapes-layout', role: i === 0 ? 'base' : 'auxiliary', prompt: 'x', weight })),
    sampler: { steps: 4, seed: 1 },
  });
  const weightsOf = async (res: Response) => ((await res.json()) as { spec: { models: { weight: number }[] } }).spec.models.map((m) => m.weight);

  it('weights of any finite size normalise to the weights their ratio gives', async () => {
    const { call } = await setup();
    const equal = await weightsOf(await call('/v1/jobs', { body: weighted([1, 1]) }));
    const oneToTwo = await weightsOf(await call('/v1/jobs', { body: weighted([1, 2]) }));
    // squares underflow to 0 (was: 500 "weights must not all be zero") or overflow to
    // Infinity (was: stored as [0, 0] and run)
    for (const w of [[1e-200, 1e-200], [5e-324, 5e-324], [1e200, 1e200], [Number.MAX_VALUE, Number.MAX_VALUE]]) {
      const res = await call('/v1/jobs', { body: weighted(w) });
      expect(res.status, String(w)).toBe(202);
      expect(await weightsOf(res), String(w)).toEqual(equal);
    }
    for (const w of [[1e-200, 2e-200], [1e200, 2e200], [Number.MAX_VALUE / 2, Number.MAX_VALUE]]) {
      const got = await weightsOf(await call('/v1/jobs', { body: weighted(w) }));
      got.forEach((v, i) => expect(v, String(w)).toBeCloseTo(oneToTwo[i]!, 15));
    }
    // a weight far below the others stays a tiny, finite weight
    const [big, tiny] = await weightsOf(await call('/v1/jobs', { body: weighted([1e200, 1]) }));
    expect(big).toBe(1);
    expect(tiny).toBe(1e-200);
  });

  it('official three-model weights that would all be zero are a 422 naming omega2', async () => {
    const { call } = await setup();
    const three = (omega: number, omega2: number) => ({ ...weighted([1, 1, 1]), models: weighted([1, 1, 1]).models.map(({ weight: _, ...m }) => m), aggregation: { omega, omega2 } });
    const res = await call('/v1/jobs', { body: three(1, 0) });
    expect(res.status).toBe(422);
    const p = await res.json();
    expect(p.errors).toEqual([expect.objectContaining({ field: 'aggregation.omega2', message: expect.stringMatching(/all be zero/) })]);
    expect((await call('/v1/jobs', { body: three(1, 1e-300) })).status).toBe(202);
    expect((await call('/v1/jobs', { body: three(0.999, 0) })).status).toBe(202);
  });
});

describe('reading, listing, cancelling', () => {
  it('GET /v1/jobs/:id: 404 for other tenants and unknown ids, never 403', async () => {
    const { call, other } = await setup();
    const job = await (await call('/v1/jobs', { body: single() })).json();
    expect((await call(`/v1/jobs/${job.id}`)).status).toBe(200);
    const theirs = await call(`/v1/jobs/${job.id}`, { key: other });
    expect(theirs.status).toBe(404);
    expect(theirs.headers.get('content-type')).toBe('application/problem+json');
    expect((await call('/v1/jobs/job_00000000000000000000000000')).status).toBe(404);
    expect((await call('/v1/jobs/../../apikeys')).status).toBe(404);
  });

  it('lists newest first with stable cursors; bad cursors are 400', async () => {
    const { call, advance, other } = await setup();
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      ids.push((await (await call('/v1/jobs', { body: single(String(i)) })).json()).id);
      advance(10);
    }
    const p1 = await (await call('/v1/jobs?limit=2')).json();
    expect(p1.data.map((j: { id: string }) => j.id)).toEqual([ids[4], ids[3]]);
    await call('/v1/jobs', { body: single('late') });
    const p2 = await (await call(`/v1/jobs?limit=2&cursor=${p1.next_cursor}`)).json();
    expect(p2.data.map((j: { id: string }) => j.id)).toEqual([ids[2], ids[1]]);
    const p3 = await (await call(`/v1/jobs?limit=2&cursor=${p2.next_cursor}`)).json();
    expect(p3.data.map((j: { id: string }) => j.id)).toEqual([ids[0]]);
    expect(p3.next_cursor).toBeNull();
    // another tenant cannot use the cursor to read this tenant's index
    const stolen = await call(`/v1/jobs?cursor=${p1.next_cursor}`, { key: other });
    expect(stolen.status).toBe(400);
    expect((await stolen.json()).errors[0].field).toBe('query.cursor');
    expect((await call('/v1/jobs?cursor=garbage')).status).toBe(400);
    expect((await call('/v1/jobs?limit=101')).status).toBe(400);
  });

  it('a forged cursor is a 400 naming query.cursor, however long or odd it decodes', async () => {
    const { call } = await setup();
    await call('/v1/jobs', { body: single() });
    const index = 'tenants/acme/index/';
    const forged = [
      `${index}${'9'.repeat(1100)}`, // over the stores' 1024-byte key limit: reached a RangeError (500)
      `${index}${'é'.repeat(600)}`, // 1219 bytes in fewer characters
      `${index}000000000000001-job_0000000000000000000000000\u0001`, // a control character no store key has
      `${index}000000000000001-job_00000000000000000000000000/x`, // not an index key
      `${index}`, // the prefix alone
    ];
    for (const key of forged) {
      const res = await call(`/v1/jobs?cursor=${encodeCursor(key)}`);
      expect(res.status, key.slice(0, 60)).toBe(400);
      expect(res.headers.get('content-type')).toBe('application/problem+json');
      const body = await res.json();
      expect(body.errors[0].field).toBe('query.cursor');
      expect(body.errors[0].message).toMatch(/next_cursor/);
    }
    // longer than the query schema allows: refused before decoding, naming the same field
    const huge = await call(`/v1/jobs?cursor=c1.${'A'.repeat(5000)}`);
    expect(huge.status).toBe(400);
    expect((await huge.json()).errors[0].field).toBe('query.cursor');
    // a real cursor still works
    await call('/v1/jobs', { body: single('second') });
    const p1 = await (await call('/v1/jobs?limit=1')).json();
    expect((await call(`/v1/jobs?limit=1&cursor=${p1.next_cursor}`)).status).toBe(200);
  });

  it('cancel: queued -> canceled at once (200); running -> requested (202); canceled again -> 200; finished -> 409', async () => {
    const { call, repo } = await setup();
    const queued = await (await call('/v1/jobs', { body: single('q') })).json();
    const c1 = await call(`/v1/jobs/${queued.id}/cancel`, { method: 'POST' });
    expect(c1.status).toBe(200);
    const first = await c1.json();
    expect(first.status).toBe('canceled');
    // canceling twice is harmless (docs/api.md): the same answer, the same job
    const again = await call(`/v1/jobs/${queued.id}/cancel`, { method: 'POST' });
    expect(again.status).toBe(200);
    expect(await again.json()).toEqual(first);

    const running = await (await call('/v1/jobs', { body: single('r') })).json();
    await repo.putStatus('acme', running.id, runningStatus());
    const c2 = await call(`/v1/jobs/${running.id}/cancel`, { method: 'POST' });
    expect(c2.status).toBe(202);
    expect((await c2.json()).status).toBe('running');
    expect(await repo.getCancel('acme', running.id)).not.toBeNull();
    // asking again while the runner has not stopped yet is harmless
    expect((await call(`/v1/jobs/${running.id}/cancel`, { method: 'POST' })).status).toBe(202);
    // the runner stopped it: canceled, and a late cancel still answers 200
    await repo.putStatus('acme', running.id, runningStatus({ status: 'canceled', finished_at: '2025-03-01T10:00:02.000Z' }));
    const late = await call(`/v1/jobs/${running.id}/cancel`, { method: 'POST' });
    expect(late.status).toBe(200);
    expect((await late.json()).status).toBe('canceled');
    // a job that succeeded cannot be canceled
    const ok = await (await call('/v1/jobs', { body: single('s') })).json();
    await repo.putStatus('acme', ok.id, runningStatus({ status: 'succeeded', finished_at: '2025-03-01T10:00:02.000Z' }));
    const c3 = await call(`/v1/jobs/${ok.id}/cancel`, { method: 'POST' });
    expect(c3.status).toBe(409);
    expect(await c3.json()).toMatchObject({ type: 'urn:amdm:problem:job-finished', status: 409 });
  });

  it('cancel of a queued job releases its slot at once; of a running job, not (its runner does)', async () => {
    const released: string[] = [];
    const admission = {
      admit: async () => true,
      withdraw: async () => {},
      release: async (tenant: string, jobId: string) => {
        released.push(`${tenant}/${jobId}`);
      },
      hasRoom: async () => true,
      close: async () => {},
    };
    const { call, repo } = await setup({ admission });
    const queued = await (await call('/v1/jobs', { body: single('q') })).json();
    const running = await (await call('/v1/jobs', { body: single('r') })).json();
    await repo.putStatus('acme', running.id, runningStatus());
    expect((await call(`/v1/jobs/${running.id}/cancel`, { method: 'POST' })).status).toBe(202);
    expect(released).toEqual([]);
    expect((await call(`/v1/jobs/${queued.id}/cancel`, { method: 'POST' })).status).toBe(200);
    expect(released).toEqual([`acme/${queued.id}`]);
  });

  it('output URLs are signed per read; expired or tampered URLs are 403 problems', async () => {
    const { call, repo, app, advance } = await setup();
    const job = await (await call('/v1/jobs', { body: single() })).json();
    const out = await repo.putOutput('acme', job.id, { source: 'aggregated', index: 0, kind: 'image', content_type: 'image/png', width: 64, height: 64 }, PNG);
    await repo.putStatus('acme', job.id, runningStatus({ status: 'succeeded', finished_at: '2025-03-01T10:00:02.000Z', outputs: [out] }));
    const rec = await (await call(`/v1/jobs/${job.id}`)).json();
    const url: string = rec.outputs[0].url;
    const ok = await app.request(url);
    expect(ok.status).toBe(200);
    expect(ok.headers.get('content-type')).toBe('image/png');
    expect(new Uint8Array(await ok.arrayBuffer())).toEqual(PNG);
    const tampered = url.replace('aggregated-0', 'aggregated-1');
    expect((await app.request(tampered)).status).toBe(403);
    expect((await app.request(url, { method: 'PUT', body: PNG })).status).toBe(403);
    advance(901_000);
    const expired = await app.request(url);
    expect(expired.status).toBe(403);
    expect(expired.headers.get('content-type')).toBe('application/problem+json');
    expect((await expired.json()).detail).toMatch(/expired/);
  });

  it('GET /v1/usage sums usage records per day', async () => {
    const { call, repo } = await setup();
    for (const [day, id, evals] of [['2025-02-27', 'job_a', 8], ['2025-02-28', 'job_b', 4], ['2025-02-28', 'job_c', 4]] as const) {
      await repo.putUsage({ v: 1, job_id: id, tenant: 'acme', day, finished_at: `${day}T10:00:00Z`, status: 'succeeded', images: 1, unet_evals: evals, runner_ms: 100 });
    }
    const res = await call('/v1/usage?from=2025-02-28&to=2025-03-01');
    expect(await res.json()).toEqual({
      object: 'usage',
      from: '2025-02-28',
      to: '2025-03-01',
      days: [{ day: '2025-02-28', jobs: 2, images: 2, unet_evals: 8, runner_ms: 200 }],
      total: { jobs: 2, images: 2, unet_evals: 8, runner_ms: 200 },
    });
    expect((await call('/v1/usage?from=2025-02-30')).status).toBe(400);
    expect((await call('/v1/usage?from=2025-03-02&to=2025-03-01')).status).toBe(400);
  });

  it('GET /v1/jobs/:id/events streams the job until it finishes', async () => {
    const { call, repo } = await setup();
    const job = await (await call('/v1/jobs', { body: single() })).json();
    const res = await call(`/v1/jobs/${job.id}/events`);
    expect(res.headers.get('content-type')).toMatch(/text\/event-stream/);
    setTimeout(() => void repo.putStatus('acme', job.id, runningStatus({ status: 'succeeded', finished_at: '2025-03-01T10:00:02.000Z', updated_at: 'z' })), 100);
    const text = await res.text();
    const events = text.split('\n\n').filter((e) => e.startsWith('event: job'));
    expect(events.length).toBeGreaterThanOrEqual(2);
    expect(JSON.parse(events.at(-1)!.split('\ndata: ')[1]!.split('\nid:')[0]!).status).toBe('succeeded');
  });
});

/**
 * A store that finds its disk full while `disk.full` is set: every put and delete rejects with
 * StorageFullError, told to `health` as the embedded adapters tell their observer, and a
 * write that succeeds tells it there is room again. `disk.writes` counts the writes tried.
 */
function fillable(store: MemoryStore, health: StorageHealth) {
  const where = '/srv/amdm/data/store';
  const disk = { full: false, writes: 0 };
  const put = store.put.bind(store);
  const del = store.delete.bind(store);
  const guarded =
    <A extends unknown[]>(write: (...args: A) => Promise<void>) =>
    async (...args: A): Promise<void> => {
      disk.writes++;
      if (disk.full) {
        const err = new StorageFullError(where, 'ENOSPC');
        health.full(err);
        throw err;
      }
      await write(...args);
      health.room(where);
    };
  store.put = guarded(put);
  store.delete = guarded(del);
  return disk;
}

describe('a full disk', () => {
  async function fullSetup() {
    const logged: string[] = [];
    const logger = { error: (m: string) => logged.push(m), warn() {}, info: (m: string) => logged.push(m) };
    const storageHealth = new StorageHealth({ logger });
    const w = await setup({ storageHealth });
    const disk = fillable(w.store, storageHealth);
    return { ...w, disk, logged };
  }

  it('writes answer 507 naming the cause, with Retry-After and never the path; reads keep working', async () => {
    const { call, disk, app } = await fullSetup();
    const queued = await (await call('/v1/jobs', { body: single('before') })).json();
    const ticket = await (await call('/v1/uploads', { body: { content_type: 'image/png' } })).json();
    disk.full = true;

    const refused = [
      ['create', await call('/v1/jobs', { body: single('during') })],
      ['cancel', await call(`/v1/jobs/${queued.id}/cancel`, { method: 'POST' })],
      ['upload', await app.request(new URL(ticket.upload_url).pathname + new URL(ticket.upload_url).search, { method: 'PUT', headers: { 'content-type': 'image/png' }, body: PNG })],
    ] as const;
    for (const [what, res] of refused) {
      expect(res.status, what).toBe(507);
      expect(res.headers.get('content-type'), what).toBe('application/problem+json');
      expect(res.headers.get('retry-after'), what).toBe('60');
      const text = await res.text();
      expect(text, what).not.toMatch(/srv|amdm\/data/);
      expect(JSON.parse(text), what).toMatchObject({
        type: 'urn:amdm:problem:insufficient-storage',
        title: 'Insufficient storage',
        status: 507,
        detail: expect.stringMatching(/storage is full \(no space left on the device, ENOSPC\)/),
      });
    }
    // reads write nothing, so they are answered as ever
    const read = await call(`/v1/jobs/${queued.id}`);
    expect(read.status).toBe(200);
    expect((await read.json()).status).toBe('queued');
    expect((await call('/v1/jobs')).status).toBe(200);
    expect((await call('/v1/models')).status).toBe(200);
  });

  it('Idempotency-Key: a retry of a job that exists writes nothing, so it is answered on a full disk', async () => {
    const { call, disk, queue } = await fullSetup();
    const h = { 'idempotency-key': 'order-full' };
    const first = await call('/v1/jobs', { body: single(), headers: h });
    expect(first.status).toBe(202);
    const { id } = await first.json();
    disk.full = true;
    disk.writes = 0;
    const again = await call('/v1/jobs', { body: single(), headers: h });
    expect(again.status).toBe(202);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect((await again.json()).id).toBe(id);
    // the same key with another body is still refused, from what is stored
    const other = await call('/v1/jobs', { body: single('another body'), headers: h });
    expect(other.status).toBe(422);
    expect((await other.json()).type).toBe('urn:amdm:problem:idempotency-key-reused');
    expect(disk.writes).toBe(0);
    // a new key needs a claim and a job: that is a write
    expect((await call('/v1/jobs', { body: single(), headers: { 'idempotency-key': 'order-new' } })).status).toBe(507);
    expect((await queue.stats()).visible).toBe(1);
  });

  it('/healthz is degraded with the cause while the storage is full, logged once; ok again after a write succeeds', async () => {
    const { call, disk, app, logged } = await fullSetup();
    expect(await (await app.request('/healthz')).json()).toEqual({ status: 'ok' });
    disk.full = true;
    for (let i = 0; i < 3; i++) expect((await call('/v1/jobs', { body: single(`try ${i}`) })).status).toBe(507);
    const health = await app.request('/healthz');
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ status: 'degraded', reason: 'store full: no space left on the device (ENOSPC)', since: expect.any(String) });
    expect(logged.filter((m) => /storage full/.test(m))).toHaveLength(1);
    disk.full = false;
    expect((await call('/v1/jobs', { body: single('after') })).status).toBe(202);
    expect(await (await app.request('/healthz')).json()).toEqual({ status: 'ok' });
    expect(logged.filter((m) => /room again/.test(m))).toHaveLength(1);
  });
});

describe('warnings and previews', () => {
  it('the 202 already carries what shaping changed or found pointless; the runner\'s warnings join on reads', async () => {
    const trained = (id: string, extra: Partial<ModelInfo['conditions']> = {}): ModelInfo => ({ ...model(id, extra), sizes: { default: [64, 64], min: 32, max: 128, multiple: 16, trained: { min: 64, max: 64 } } });
    const { call, repo } = await setup({ catalog: async () => [trained('shapes-base'), trained('shapes-layout', { grounding: { max_objects: 4 } })] });
    const body = {
      models: [
        { id: 'shapes-base', role: 'base', prompt: 'a red circle', weight: 1 },
        { id: 'shapes-layout', role: 'auxiliary', prompt: 'a circle', weight: 0 },
      ],
      aggregation: { window: [0, 0] },
      sampler: { steps: 4, seed: 1, width: 100, height: 64 },
    };
    const res = await call('/v1/jobs', { body });
    expect(res.status).toBe(202);
    const created = await res.json();
    expect(created.warnings).toEqual([
      { code: 'size_rounded', field: 'sampler.width', message: 'width 100 was rounded to 96: model "shapes-base" renders multiples of 16 pixels' },
      { code: 'size_untrained', field: 'sampler.width', message: 'model "shapes-base" was trained at 64×64 pixels; at 96×64 it renders, but expect repeated or broken objects' },
      { code: 'window_empty', field: 'aggregation.window', message: expect.stringMatching(/^window \[0, 0\] aggregates no step .*the auxiliary models cannot change the image/) },
      { code: 'auxiliary_weight_zero', field: 'models[1].weight', message: expect.stringMatching(/^model "shapes-layout" gets aggregation weight 0, so it cannot change the image/) },
    ]);
    expect(created.spec.sampler.width).toBe(96);
    const truncated = { code: 'prompt_truncated', field: 'models[0].prompt', message: 'the prompt has 40 tokens but model "shapes-base" reads 32: the first 32 of 40 were kept, the last 8 dropped' } as const;
    await repo.putStatus('acme', created.id, runningStatus({ warnings: [truncated] }));
    const read = await (await call(`/v1/jobs/${created.id}`)).json();
    expect(read.warnings).toEqual([...created.warnings, truncated]);
    // a request that needs nothing changed has none
    expect((await (await call('/v1/jobs', { body: single() })).json()).warnings).toEqual([]);
  });

  it('the event stream sends each new preview frame of a running job as `event: preview`, in order, once', async () => {
    const { call, repo } = await setup();
    const job = await (await call('/v1/jobs', { body: single() })).json();
    const frame = (seq: number, step: number, windowEnd: boolean) => ({
      seq,
      at: '2025-03-01T10:00:01.000Z',
      image: 1,
      images: 1,
      step,
      total: 4,
      phase: 'aggregating' as const,
      window_end: windowEnd,
      method: 'vae_decode_x0' as const,
      models: [{ id: 'shapes-base', run: 'aggregated' as const, width: 32, height: 32, png: 'data:image/png;base64,iVBORw0KGgo=' }],
    });
    await repo.putStatus('acme', job.id, runningStatus());
    await repo.putPreview('acme', job.id, { v: 1, latest: frame(7, 3, false), window_end: frame(5, 2, true) });
    const res = await call(`/v1/jobs/${job.id}/events`);
    setTimeout(() => void repo.putPreview('acme', job.id, { v: 1, latest: frame(9, 4, false), window_end: frame(5, 2, true) }), 50);
    setTimeout(() => void repo.putStatus('acme', job.id, runningStatus({ status: 'succeeded', finished_at: '2025-03-01T10:00:02.000Z', updated_at: 'z' })), 1200);
    const blocks = (await res.text()).split('\n\n').filter((b) => b.startsWith('event: '));
    const previews = blocks.filter((b) => b.startsWith('event: preview')).map((b) => JSON.parse(b.split('\ndata: ')[1]!));
    expect(previews.map((p) => [p.seq, p.step, p.window_end, p.job_id])).toEqual([
      [5, 2, true, job.id],
      [7, 3, false, job.id],
      [9, 4, false, job.id],
    ]);
    expect(previews[0]).toEqual({ job_id: job.id, ...frame(5, 2, true) });
    // the job events are all there, the last one finished
    expect(JSON.parse(blocks.at(-1)!.split('\ndata: ')[1]!).status).toBe('succeeded');
  });
});

describe('the app as a whole', () => {
  it('serves a valid OpenAPI 3.1 document covering every route with examples', async () => {
    const { app } = await setup();
    const doc = await (await app.request('/openapi.json')).json();
    expect(doc.openapi).toBe('3.1.0');
    await SwaggerParser.validate(structuredClone(doc));
    const ops = Object.entries(doc.paths as Record<string, Record<string, { responses: Record<string, { content?: Record<string, { example?: unknown }> }> }>>).flatMap(([p, m]) => Object.entries(m).map(([verb, op]) => ({ id: `${verb} ${p}`, op })));
    expect(ops.map((o) => o.id).sort()).toEqual(
      ['get /healthz', 'get /v1/blobs/{key}', 'get /v1/jobs', 'get /v1/jobs/{id}', 'get /v1/jobs/{id}/events', 'get /v1/models', 'get /v1/usage', 'post /v1/jobs', 'post /v1/jobs/{id}/cancel', 'post /v1/models/{id}/tokens', 'post /v1/uploads', 'put /v1/blobs/{key}'].sort(),
    );
    for (const { id, op } of ops) {
      const withContent = Object.values(op.responses).flatMap((r) => Object.values(r.content ?? {}));
      expect(withContent.length, id).toBeGreaterThan(0);
      expect(withContent.every((c) => c.example !== undefined), id).toBe(true);
    }
    expect(doc.components.schemas).toHaveProperty('JobRequest');
    expect(doc.components.schemas).toHaveProperty('Problem');
    expect(doc.components.schemas).toHaveProperty('JobPreview');
    expect(doc.components.schemas).toHaveProperty('JobWarning');
  });

  it('health and models', async () => {
    const { app, call } = await setup();
    expect(await (await app.request('/healthz')).json()).toEqual({ status: 'ok' });
    const models = await (await call('/v1/models')).json();
    expect(models.data.map((m: ModelInfo) => m.id)).toEqual(['shapes-base', 'shapes-layout', 'shapes-style']);
    expect((await call('/v1/models', { key: null })).status).toBe(401);
  });

  it('a store failure is a 500 problem that names only the request id', async () => {
    const { store, call } = await setup();
    store.put = async () => {
      throw new Error('EIO: disk /srv/data exploded');
    };
    const res = await call('/v1/jobs', { body: single() });
    expect(res.status).toBe(500);
    const text = await res.text();
    expect(text).not.toMatch(/EIO|srv|exploded/);
    expect(JSON.parse(text).instance).toMatch(/^urn:amdm:request:/);
  });

  it('refuses bad options at construction, naming the option', async () => {
    const store = new MemoryStore();
    const queue = new MemoryQueue();
    const ok = { store, queue, catalog: async () => CATALOG, pepper: PEPPER, publicBaseUrl: BASE };
    expect(() => createApp({ ...ok, store: {} as never })).toThrow(/option "store"/);
    expect(() => createApp({ ...ok, queue: undefined as never })).toThrow(/option "queue"/);
    expect(() => createApp({ ...ok, pepper: 'x' })).toThrow(/option "pepper"/);
    expect(() => createApp({ ...ok, publicBaseUrl: 'http://x/' })).toThrow(/option "publicBaseUrl"/);
    expect(() => createApp({ ...ok, limits: { maxActiveJobs: 0 } })).toThrow(/option "limits.maxActiveJobs"/);
    expect(() => createApp({ ...ok, limits: { bogus: 1 } as never })).toThrow(/option "limits.bogus"/);
    expect(() => createApp({ ...ok, localBlobs: { secret: 'short' } })).toThrow(/option "localBlobs.secret"/);
  });
});
