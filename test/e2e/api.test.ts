/**
 * End to end over real HTTP with the real AMDM engine and the built-in models, once per
 * adapter set (harness.ts):
 * - embedded: the local edge, fs store + SQLite queues in a temporary DATA_DIR;
 * - aws: the edge Lambda module behind a streaming Function URL, the runner's AWS mode, S3
 *   and SQS on fauxqs. Output URLs are then S3 presigned URLs; fauxqs does not check
 *   presigned signatures or expiry (real S3 does), so the tamper and expiry checks of signed
 *   URLs run on the embedded set only, where this code base is what checks them.
 */
import { decode, encode } from 'fast-png';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JobPreview, JobRecord, ModelInfo, QueueMessage } from '../../shared/contract/index.ts';
import { ApiClient } from '../../shared/client/client.ts';
import type { JobQueue, Lease } from '../../shared/ports/queue.ts';
import { ADAPTER_SETS, startStack, until, type AdapterSet, type Stack } from './harness.ts';

/** What the fault-injecting jobs queue saw: the message whose ack it lost, and every delivery. */
interface AckFaults {
  lost: string | null;
  /** message id -> receive counts seen, in order */
  deliveries: Map<string, number[]>;
}

/**
 * A jobs queue whose first ack of a message of `tenant` fails without deleting it, as a
 * DeleteMessage that never reached SQS: the worker loop hands the message back with a
 * backoff and the queue delivers the same message again.
 */
function losingFirstAck(tenant: string, faults: AckFaults) {
  return (jobs: JobQueue): JobQueue => ({
    async receive(o) {
      const leases = await jobs.receive(o);
      for (const l of leases) faults.deliveries.set(l.messageId, [...(faults.deliveries.get(l.messageId) ?? []), l.receiveCount]);
      return leases;
    },
    extend: (l, s) => jobs.extend(l, s),
    release: (l, d) => jobs.release(l, d),
    send: (b, o) => jobs.send(b, o),
    stats: () => jobs.stats(),
    close: () => jobs.close(),
    async ack(lease: Lease) {
      const msg = JSON.parse(lease.body) as QueueMessage;
      if (msg.tenant === tenant && faults.lost === null) {
        faults.lost = lease.messageId;
        throw new Error('injected: the DeleteMessage request was lost');
      }
      return jobs.ack(lease);
    },
  });
}

describe.each(ADAPTER_SETS.map((set) => [set] as [AdapterSet]))('the API end to end (real engine) on the %s adapters', (adapterSet) => {
  let stack: Stack;
  let base: ModelInfo;
  const ackFaults: AckFaults = { lost: null, deliveries: new Map() };

  beforeAll(async () => {
    // a short retry backoff: the redelivery after the lost ack comes within a second or two
    stack = await startStack({ adapters: adapterSet, wrapJobs: losingFirstAck('metered', ackFaults), config: { retryBackoff: { baseSeconds: 1, maxSeconds: 2 } } });
    const models = (await (await stack.api('/v1/models')).json()) as { data: ModelInfo[] };
    base = models.data.find((m) => m.id === 'shapes-base') ?? models.data[0]!;
  }, 180_000);

  afterAll(async () => {
    await stack?.close();
  });

  const job = async (body: unknown, headers: Record<string, string> = {}, key?: string) => {
    const res = await stack.api('/v1/jobs', { body, headers, ...(key ? { key } : {}) });
    return { res, record: (await res.json()) as JobRecord & { errors?: { field: string }[]; type?: string } };
  };
  const get = async (id: string, key?: string) => (await (await stack.api(`/v1/jobs/${id}`, key ? { key } : {})).json()) as JobRecord;
  const finished = (id: string, timeoutMs = 120_000) =>
    until(async () => {
      const r = await get(id);
      return ['succeeded', 'failed', 'canceled'].includes(r.status) ? r : null;
    }, `job ${id} to finish`, timeoutMs);
  const single = (extra: Record<string, unknown> = {}) => ({ models: [{ id: base.id, role: 'base', prompt: 'a red circle and a blue square' }], ...extra });
  /** hundreds of UNet calls: still running when the test acts on it */
  const long = () => single({ sampler: { steps: 100, seed: 3 }, outputs: { images: 4 } });

  describe('flows', () => {
    it('submit -> progress -> succeeded -> the PNG downloads through its signed URL at the requested size', async () => {
      const width = base.sizes.min;
      const height = Math.min(base.sizes.max, base.sizes.min + base.sizes.multiple);
      const { res, record } = await job(single({ sampler: { steps: 12, seed: 11, width, height } }));
      expect(res.status).toBe(202);
      expect(res.headers.get('location')).toBe(`${stack.url}/v1/jobs/${record.id}`);
      expect(record.status).toBe('queued');

      const seen: JobRecord[] = [];
      const done = await until(async () => {
        const r = await get(record.id);
        seen.push(r);
        return ['succeeded', 'failed', 'canceled'].includes(r.status) ? r : null;
      }, 'the job to finish', 120_000, 25);
      expect(done.status, JSON.stringify(done.error)).toBe('succeeded');
      expect(seen.some((r) => r.status === 'running' && r.progress !== null)).toBe(true);
      expect(done.progress).toMatchObject({ total: 12 });
      expect(done.usage).toMatchObject({ images: 1, unet_evals: 12 });
      expect(done.timings.run_ms).toBeGreaterThan(0);

      const out = done.outputs.find((o) => o.source === 'aggregated' && o.kind === 'image')!;
      expect(out).toMatchObject({ content_type: 'image/png', width, height });
      const png = await fetch(out.url); // no API key: the signature is the credential
      expect(png.status).toBe(200);
      expect(png.headers.get('content-type')).toBe('image/png');
      const img = decode(new Uint8Array(await png.arrayBuffer()));
      expect([img.width, img.height]).toEqual([width, height]);

      const outputKey = `tenants/alpha/jobs/${record.id}/out/aggregated-0.png`;
      if (adapterSet === 'aws') {
        // an S3 presigned GET of the output object, valid for the edge's output URL lifetime
        const url = new URL(out.url);
        expect(url.origin).toBe(stack.fauxqs!.endpoint);
        expect(decodeURIComponent(url.pathname)).toBe(`/${JSON.parse(process.env.SST_RESOURCE_Store!).name}/${outputKey}`);
        expect(url.searchParams.get('X-Amz-Algorithm')).toBe('AWS4-HMAC-SHA256');
        expect(url.searchParams.get('X-Amz-Expires')).toBe('900');
        expect(url.searchParams.get('X-Amz-Signature')).toMatch(/^[0-9a-f]{64}$/);
      } else {
        // tampered and expired URLs are refused with problem+json
        const tampered = out.url.replace(/sig=([A-Za-z0-9_-])/, (_, c: string) => `sig=${c === 'A' ? 'B' : 'A'}`);
        const t = await fetch(tampered);
        expect(t.status).toBe(403);
        expect(t.headers.get('content-type')).toBe('application/problem+json');
        const shortLived = await stack.adapters.store.signedGetUrl(outputKey, 1);
        await new Promise((r) => setTimeout(r, 2100));
        const expired = await fetch(shortLived);
        expect(expired.status).toBe(403);
        expect(((await expired.json()) as { detail: string }).detail).toMatch(/expired/);
      }

      // usage shows the job, once, on the day it finished
      const day = done.finished_at!.slice(0, 10);
      const usage = (await (await stack.api(`/v1/usage?from=${day}&to=${day}`)).json()) as { days: { day: string; jobs: number }[]; total: { jobs: number; images: number } };
      expect(usage.days.map((d) => d.day)).toEqual([day]);
      expect(usage.total.jobs).toBeGreaterThanOrEqual(1);
      const records = (await stack.adapters.store.list('tenants/alpha/usage/')).keys.filter((k) => k.endsWith(`/${record.id}.json`));
      expect(records).toHaveLength(1);
    });

    it('solo, warnings and live previews: each model alone beside the aggregated image, metered; a cut prompt said; previews on the event stream', async () => {
      const layout = { id: 'shapes-layout', role: 'auxiliary', prompt: 'a circle', grounding: [{ phrase: 'circle', box: [0.1, 0.1, 0.5, 0.5] }] };
      const long = 'a red circle and a blue square and a green triangle on a yellow background with a purple border and more';
      const body = { models: [{ id: base.id, role: 'base', prompt: long }, layout], aggregation: { window: [1, 3] }, sampler: { steps: 100, seed: 21, width: 35 }, outputs: { solo: true, images: 2 } };
      const { res, record } = await job(body);
      expect(res.status).toBe(202);
      // the cost of the solo runs is in the answer: per image 2 × (100 − 1) on top of 2 × 4 + 96
      expect(record.spec.estimate).toEqual({ unet_evals: 2 * (104 + 198), solo_unet_evals: 2 * 198 });
      // shaping's warnings are in the 202 already
      expect(record.warnings).toEqual([{ code: 'size_rounded', field: 'sampler.width', message: 'width 35 was rounded to 32: model "shapes-base" renders multiples of 8 pixels' }]);

      const previews: JobPreview[] = [];
      const client = new ApiClient({ baseUrl: stack.url, apiKey: stack.key });
      const done = await client.follow(record.id, { onPreview: (p) => previews.push(p) });
      expect(done.status, JSON.stringify(done.error)).toBe('succeeded');
      // the runner's warning (it tokenizes; the edge cannot) joins shaping's
      expect(done.warnings.map((w) => [w.code, w.field])).toEqual([
        ['size_rounded', 'sampler.width'],
        ['prompt_truncated', 'models[0].prompt'],
      ]);
      expect(done.outputs.filter((o) => o.kind === 'image').map((o) => `${o.source}:${o.model}:${o.index}`)).toEqual([
        'aggregated:shapes-base:0', 'solo:shapes-base:0', 'solo:shapes-layout:0',
        'aggregated:shapes-base:1', 'solo:shapes-base:1', 'solo:shapes-layout:1',
      ]);
      for (const o of done.outputs) expect((await fetch(o.url)).status).toBe(200);
      // metered as run: every UNet call, solo included
      expect(done.usage).toMatchObject({ images: 2, unet_evals: 604 });

      // previews came through the stream, as small PNGs of the models, the window's end among them
      expect(previews.length).toBeGreaterThan(0);
      expect(previews.every((p) => p.job_id === record.id && p.method === 'vae_decode_x0')).toBe(true);
      expect(previews.map((p) => p.seq)).toEqual([...previews.map((p) => p.seq)].sort((a, b) => a - b));
      const end = previews.find((p) => p.window_end);
      expect(end?.models.map((m) => m.id)).toEqual(['shapes-base', 'shapes-layout']);
      const png = decode(Uint8Array.from(atob(end!.models[0]!.png.split(',')[1]!), (c) => c.charCodeAt(0)));
      expect([png.width, png.height]).toEqual([done.spec.sampler.width, done.spec.sampler.height]);
    });

    it('token counts: the single node counts with the model\'s tokenizer; the AWS edge has none and says so', async () => {
      const client = new ApiClient({ baseUrl: stack.url, apiKey: stack.key });
      if (adapterSet === 'embedded') {
        expect(await client.countTokens('shapes-base', 'a red circle and a blue square')).toEqual({ object: 'token_count', model: 'shapes-base', tokens: 7, max_tokens: 14, truncated: false });
        const unknown = await stack.api('/v1/models/no-such/tokens', { body: { text: 'x' } });
        expect(unknown.status).toBe(404);
      } else {
        const err = await client.countTokens('shapes-base', 'a red circle').catch((e: unknown) => e);
        expect(err).toMatchObject({ status: 501, problem: { type: 'urn:amdm:problem:token-count-unavailable' } });
      }
    });

    it('uploads: a reference image PUT through its signed URL drives a job', async () => {
      const models = ((await (await stack.api('/v1/models')).json()) as { data: ModelInfo[] }).data;
      const styled = models.find((m) => m.conditions.reference_image && m.ecosystem === base.ecosystem);
      expect(styled, 'the built-in models include one that takes a reference image').toBeDefined();
      const ticket = (await (await stack.api('/v1/uploads', { body: { content_type: 'image/png' } })).json()) as { upload_id: string; upload_url: string; headers: Record<string, string> };
      const px = new Uint8Array(32 * 32 * 3).map((_, i) => (i % 3 === 0 ? 220 : 30));
      const png = encode({ width: 32, height: 32, data: px, channels: 3 }) as Uint8Array<ArrayBuffer>;
      if (adapterSet === 'embedded') {
        const tampered = await fetch(ticket.upload_url.replace('method=PUT', 'method=PUT&x=1').replace(/sig=./, 'sig=A'), { method: 'PUT', headers: ticket.headers, body: png });
        expect(tampered.status).toBe(403);
      } else {
        // a presigned S3 PUT that signs the content type and the expiry tag the client must send
        expect(new URL(ticket.upload_url).searchParams.get('X-Amz-SignedHeaders')).toBe('content-type;host;x-amz-tagging');
        expect(ticket.headers['x-amz-tagging']).toBe('amdm-expire=job-output');
      }
      const put = await fetch(ticket.upload_url, { method: 'PUT', headers: ticket.headers, body: png });
      // the local blob route answers 204, S3 200
      expect(put.status).toBe(adapterSet === 'aws' ? 200 : 204);
      const { res, record } = await job({
        models: [
          { id: base.id, role: 'base', prompt: 'a red circle' },
          { id: styled!.id, role: 'auxiliary', prompt: 'a red circle', reference_image: { upload_id: ticket.upload_id, scale: 0.8 } },
        ],
        sampler: { steps: 8, seed: 2 },
      });
      expect(res.status).toBe(202);
      expect(record.spec.models[1]!.reference_image).toEqual({ key: `tenants/alpha/uploads/${ticket.upload_id}`, scale: 0.8 });
      const done = await finished(record.id);
      expect(done.status, JSON.stringify(done.error)).toBe('succeeded');
    });

    it('cancel: a queued job never runs; a running job stops', async () => {
      const running = (await job(long())).record;
      const queued = (await job(long())).record;
      await until(async () => (await get(running.id)).status === 'running', 'the first job to run');

      const c1 = await stack.api(`/v1/jobs/${queued.id}/cancel`, { method: 'POST' });
      expect(c1.status).toBe(200);
      expect(((await c1.json()) as JobRecord).status).toBe('canceled');

      await until(async () => ((await get(running.id)).progress?.step ?? 0) >= 1, 'a step of the running job');
      const c2 = await stack.api(`/v1/jobs/${running.id}/cancel`, { method: 'POST' });
      expect(c2.status).toBe(202);
      const stopped = await finished(running.id, 60_000);
      expect(stopped.status).toBe('canceled');
      expect(stopped.outputs).toEqual([]);
      expect(stopped.progress!.image).toBeLessThanOrEqual(4);

      const never = await finished(queued.id);
      expect(never).toMatchObject({ status: 'canceled', started_at: null, outputs: [], usage: null });
      // canceling again is harmless: 200 with the canceled job
      const again = await stack.api(`/v1/jobs/${queued.id}/cancel`, { method: 'POST' });
      expect(again.status).toBe(200);
      expect(((await again.json()) as JobRecord).status).toBe('canceled');
    });

    it('Idempotency-Key: same body -> the same job; another body -> 422', async () => {
      const body = single({ sampler: { steps: 2, seed: 5 } });
      const a = await job(body, { 'idempotency-key': 'e2e-1' });
      const b = await job(body, { 'idempotency-key': 'e2e-1' });
      expect(a.res.status).toBe(202);
      expect([200, 202]).toContain(b.res.status);
      expect(b.record.id).toBe(a.record.id);
      expect(b.res.headers.get('idempotent-replayed')).toBe('true');
      const c = await job(single({ sampler: { steps: 3, seed: 5 } }), { 'idempotency-key': 'e2e-1' });
      expect(c.res.status).toBe(422);
      expect(c.record.errors![0]!.field).toBe('header Idempotency-Key');
      await finished(a.record.id);
    });

    it('lists jobs newest first with a stable cursor', async () => {
      const ids: string[] = [];
      for (let i = 0; i < 5; i++) {
        const { record } = await job(single({ sampler: { steps: 1, seed: i } }), {}, stack.otherKey);
        ids.unshift(record.id);
        // keep the runner free for the other tests: these only need to exist
        await stack.api(`/v1/jobs/${record.id}/cancel`, { method: 'POST', key: stack.otherKey });
      }
      const page = async (cursor?: string) =>
        (await (await stack.api(`/v1/jobs?limit=2${cursor ? `&cursor=${cursor}` : ''}`, { key: stack.otherKey })).json()) as { data: JobRecord[]; next_cursor: string | null };
      const p1 = await page();
      await job(single({ sampler: { steps: 1 } }), {}, stack.otherKey).then(({ record }) => stack.api(`/v1/jobs/${record.id}/cancel`, { method: 'POST', key: stack.otherKey }));
      const p2 = await page(p1.next_cursor!);
      const p3 = await page(p2.next_cursor!);
      expect([...p1.data, ...p2.data, ...p3.data].map((j) => j.id)).toEqual(ids);
      expect(p3.next_cursor).toBeNull();
    });

    it('auth: 401 without or with a bad key; 404 for another tenant\'s job', async () => {
      const none = await stack.api('/v1/jobs', { key: null });
      expect(none.status).toBe(401);
      expect(none.headers.get('www-authenticate')).toMatch(/^Bearer/);
      expect(none.headers.get('content-type')).toBe('application/problem+json');
      const bad = await stack.api('/v1/jobs', { key: 'amdm_aaaaaaaaaaaa_' + 'A'.repeat(40) });
      expect(bad.status).toBe(401);
      const { record } = await job(single({ sampler: { steps: 1 } }));
      const theirs = await stack.api(`/v1/jobs/${record.id}`, { key: stack.otherKey });
      expect(theirs.status).toBe(404);
      expect((await stack.api(`/v1/jobs/${record.id}/cancel`, { method: 'POST', key: stack.otherKey })).status).toBe(404);
      await finished(record.id);
    });

    it('metering: a job whose message is delivered twice yields one usage record', async () => {
      const key = await stack.keyFor('metered');
      const { res, record } = await job(single({ sampler: { steps: 4, seed: 8 } }), {}, key);
      expect(res.status).toBe(202);
      const get = async () => (await (await stack.api(`/v1/jobs/${record.id}`, { key })).json()) as JobRecord;
      const done = await until(async () => {
        const r = await get();
        return r.status === 'succeeded' ? r : null;
      }, 'the job to succeed', 120_000);
      // the first ack was lost: the queue delivers the same message again (after the loop's
      // backoff), and the redelivery finds the job finished and acks it without rework
      await until(async () => {
        const s = await stack.adapters.jobs.stats();
        return ackFaults.lost !== null && s.visible + s.inFlight + s.delayed === 0;
      }, 'the redelivered message to be acked', 60_000, 200);
      expect(ackFaults.deliveries.get(ackFaults.lost!)).toEqual([1, 2]);
      // and a duplicate of the message (at-least-once queues may deliver one) changes nothing either
      const duplicate: QueueMessage = { v: 1, job_id: record.id, tenant: 'metered', enqueued_at: record.created_at };
      await stack.adapters.jobs.send(JSON.stringify(duplicate));
      await until(async () => {
        const s = await stack.adapters.jobs.stats();
        return s.visible + s.inFlight + s.delayed === 0;
      }, 'the duplicate to be acked', 60_000, 200);

      const records = (await stack.adapters.store.list('tenants/metered/usage/')).keys;
      expect(records).toEqual([`tenants/metered/usage/${done.finished_at!.slice(0, 10)}/${record.id}.json`]);
      const usage = (await (await stack.api('/v1/usage', { key })).json()) as { total: { jobs: number; images: number; unet_evals: number } };
      expect(usage.total).toMatchObject({ jobs: 1, images: 1, unet_evals: done.usage!.unet_evals });
      expect(await get()).toMatchObject({ status: 'succeeded', usage: done.usage });
    });
  });
});

