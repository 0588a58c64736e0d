import { describe, expect, it } from 'vitest';
import { MemoryStore } from '../adapters/memory/memory-store.ts';
import { JobRepository, derivedStatus, type StoredRequest, type StoredStatus } from './job-repository.ts';
import { newJobId } from './ids.ts';
import { oneModelSpec } from '../test/fixtures/job-spec.ts';

const spec = oneModelSpec();

function request(tenant: string, ms: number, webhook: string | null = null): StoredRequest {
  const id = newJobId(ms);
  return { v: 1, id, tenant, created_at: new Date(ms).toISOString(), spec, webhook: webhook ? { url: webhook } : null };
}

function status(over: Partial<StoredStatus>): StoredStatus {
  return {
    v: 1,
    status: 'running',
    message_id: 'm1',
    attempt: 1,
    started_at: '2025-01-01T00:00:01.000Z',
    finished_at: null,
    updated_at: '2025-01-01T00:00:01.000Z',
    progress: null,
    usage: null,
    timings: { queued_ms: 1000, run_ms: null, onnx_ms: null, outside_onnx_ms: null },
    error: null,
    outputs: [],
    webhook_enqueued: false,
    ...over,
  };
}

const signCalls: string[] = [];
const opts = (now = Date.parse('2025-01-01T00:00:10Z')) => ({
  sign: async (key: string, ttl: number) => {
    signCalls.push(key);
    return `https://signed.example/${key}?ttl=${ttl}&n=${signCalls.length}`;
  },
  urlTtlSeconds: 60,
  now,
  baseUrl: 'https://api.example',
});

describe('JobRepository', () => {
  it('lays keys out as docs/architecture.md says', () => {
    const repo = new JobRepository(new MemoryStore());
    expect(repo.requestKey('t', 'job_x')).toBe('tenants/t/jobs/job_x/request.json');
    expect(repo.statusKey('t', 'job_x')).toBe('tenants/t/jobs/job_x/status.json');
    expect(repo.cancelKey('t', 'job_x')).toBe('tenants/t/jobs/job_x/cancel.json');
    expect(repo.outputKey('t', 'job_x', 'aggregated', 0, 'image')).toBe('tenants/t/jobs/job_x/out/aggregated-0.png');
    expect(repo.webhookAttemptKey('t', 'job_x', 3)).toBe('tenants/t/jobs/job_x/webhook/0003.json');
    expect(repo.usageKey('t', '2025-01-01', 'job_x')).toBe('tenants/t/usage/2025-01-01/job_x.json');
    expect(repo.uploadKey('t', 'upl_abcdefghij')).toBe('tenants/t/uploads/upl_abcdefghij');
    expect(repo.uploadKey('t', 'upl_abcdefghij').startsWith(repo.uploadsPrefix('t'))).toBe(true);
    expect(repo.uploadKey('t', 'upl_abcdefghij').startsWith(repo.uploadsPrefix('u'))).toBe(false);
    expect(repo.idempotencyClaimKey('t', 'h', 5, 'job_x')).toBe('tenants/t/idempotency/h/000000000000005-job_x.json');
  });

  it('derives the status clients see', () => {
    expect(derivedStatus(null, null)).toBe('queued');
    expect(derivedStatus(null, { requested_at: 'x' })).toBe('canceled');
    expect(derivedStatus(status({}), { requested_at: 'x' })).toBe('running');
    expect(derivedStatus(status({ status: 'succeeded' }), { requested_at: 'x' })).toBe('succeeded');
  });

  it('assembles a queued job with queue info and no outputs', async () => {
    const repo = new JobRepository(new MemoryStore());
    const req = request('acme', Date.parse('2025-01-01T00:00:00Z'), 'https://hooks.example/x');
    await repo.putRequest(req);
    const rec = await repo.getJob('acme', req.id, { ...opts(), queueInfo: async () => ({ position: 2, reason: 'two ahead' }) });
    expect(rec).toMatchObject({ id: req.id, status: 'queued', queue: { position: 2 }, outputs: [], progress: null, finished_at: null });
    expect(rec!.urls).toEqual({
      self: `https://api.example/v1/jobs/${req.id}`,
      cancel: `https://api.example/v1/jobs/${req.id}/cancel`,
      events: `https://api.example/v1/jobs/${req.id}/events`,
    });
    expect(rec!.webhook).toEqual({ url: 'https://hooks.example/x', deliveries: [] });
    expect(await repo.getJob('other', req.id, opts())).toBeNull();
  });

  it('signs output URLs on every read and never stores them', async () => {
    const store = new MemoryStore();
    const repo = new JobRepository(store);
    const req = request('acme', Date.parse('2025-01-01T00:00:00Z'));
    await repo.putRequest(req);
    const out = await repo.putOutput('acme', req.id, { source: 'aggregated', index: 0, kind: 'image', content_type: 'image/png', width: 64, height: 64 }, new Uint8Array([1, 2]));
    await repo.putStatus('acme', req.id, status({ status: 'succeeded', finished_at: '2025-01-01T00:00:05.000Z', outputs: [out] }));
    const a = await repo.getJob('acme', req.id, opts());
    const b = await repo.getJob('acme', req.id, opts(Date.parse('2025-01-01T01:00:00Z')));
    expect(a!.outputs[0]).toMatchObject({ source: 'aggregated', index: 0, kind: 'image', content_type: 'image/png', width: 64, height: 64 });
    expect(a!.outputs[0]!.url).not.toBe(b!.outputs[0]!.url);
    expect(a!.outputs[0]!.expires_at).toBe('2025-01-01T00:01:10.000Z');
    expect(b!.outputs[0]!.expires_at).toBe('2025-01-01T01:01:00.000Z');
    const statusText = new TextDecoder().decode((await store.get(repo.statusKey('acme', req.id)))!.body);
    expect(statusText).not.toContain('signed.example');
  });

  it('a cancel before the runner started is a canceled job finished at the cancel time', async () => {
    const repo = new JobRepository(new MemoryStore());
    const req = request('acme', Date.parse('2025-01-01T00:00:00Z'));
    await repo.putRequest(req);
    await repo.putCancel('acme', req.id, { requested_at: '2025-01-01T00:00:03.000Z' });
    expect(await repo.getJob('acme', req.id, opts())).toMatchObject({ status: 'canceled', finished_at: '2025-01-01T00:00:03.000Z', queue: null });
  });

  it('lists newest first with a cursor that new jobs do not disturb', async () => {
    const repo = new JobRepository(new MemoryStore());
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const req = request('acme', 1_000_000 + i);
      await repo.putRequest(req);
      await repo.putIndex('acme', 1_000_000 + i, req.id);
      ids.push(req.id);
    }
    const p1 = await repo.listJobIds('acme', { limit: 2, cursor: null });
    expect(p1.ids).toEqual([ids[4], ids[3]]);
    // a job created between pages lands before page 1, never on page 2
    const late = request('acme', 2_000_000);
    await repo.putIndex('acme', 2_000_000, late.id);
    const p2 = await repo.listJobIds('acme', { limit: 2, cursor: p1.cursor });
    expect(p2.ids).toEqual([ids[2], ids[1]]);
    const p3 = await repo.listJobIds('acme', { limit: 2, cursor: p2.cursor });
    expect(p3.ids).toEqual([ids[0]]);
  });

  it('orders idempotency claims by time, then job id', async () => {
    const repo = new JobRepository(new MemoryStore());
    await repo.putIdempotencyClaim('acme', 'k', 20, { job_id: 'job_b', body_hash: 'h', created_at: 'x' });
    await repo.putIdempotencyClaim('acme', 'k', 10, { job_id: 'job_c', body_hash: 'h', created_at: 'x' });
    await repo.putIdempotencyClaim('acme', 'k', 10, { job_id: 'job_a', body_hash: 'h', created_at: 'x' });
    expect((await repo.listIdempotencyClaims('acme', 'k')).map((c) => c.job_id)).toEqual(['job_a', 'job_c', 'job_b']);
  });

  it('lists usage within a day range', async () => {
    const repo = new JobRepository(new MemoryStore());
    for (const [day, id] of [['2025-01-01', 'job_1'], ['2025-01-02', 'job_2'], ['2025-01-03', 'job_3']] as const) {
      await repo.putUsage({ v: 1, job_id: id, tenant: 'acme', day, finished_at: `${day}T10:00:00Z`, status: 'succeeded', images: 1, unet_evals: 4, runner_ms: 10 });
    }
    expect((await repo.listUsage('acme', '2025-01-02', '2025-01-03')).map((u) => u.job_id)).toEqual(['job_2', 'job_3']);
    expect(await repo.listUsage('other', '2025-01-01', '2025-01-03')).toEqual([]);
  });

  it('shows webhook attempts in attempt order on the job', async () => {
    const repo = new JobRepository(new MemoryStore());
    const req = request('acme', Date.parse('2025-01-01T00:00:00Z'), 'https://hooks.example/x');
    await repo.putRequest(req);
    for (const n of [10, 2, 1]) {
      await repo.putWebhookAttempt('acme', req.id, { attempt: n, at: 'x', status: 500, ok: false, next_attempt_at: null });
    }
    const rec = await repo.getJob('acme', req.id, opts());
    expect(rec!.webhook!.deliveries.map((d) => d.attempt)).toEqual([1, 2, 10]);
  });
});
