import { Hono } from 'hono';
import { describe, expect, it } from 'vitest';
import { problemOnError } from '../problem/index.ts';
import { TokenBucketLimiter, concurrencyCap, rateLimit } from './index.ts';

const silent = { error() {}, warn() {}, info() {} };

describe('TokenBucketLimiter', () => {
  it('allows a burst, then the steady rate, per subject', () => {
    let now = 0;
    const l = new TokenBucketLimiter({ ratePerSecond: 2, burst: 3, now: () => now });
    expect([l.take('a'), l.take('a'), l.take('a')].every((r) => r.ok)).toBe(true);
    expect(l.take('a')).toEqual({ ok: false, retryAfterSeconds: 1 });
    expect(l.take('b').ok).toBe(true); // another tenant is unaffected
    now += 500; // one token back at 2/s
    expect(l.take('a').ok).toBe(true);
    expect(l.take('a').ok).toBe(false);
  });

  it('reports how long until enough tokens are back', () => {
    const l = new TokenBucketLimiter({ ratePerSecond: 0.1, burst: 1, now: () => 0 });
    l.take('a');
    expect(l.take('a')).toEqual({ ok: false, retryAfterSeconds: 10 });
  });

  it('checks its options', () => {
    expect(() => new TokenBucketLimiter({ ratePerSecond: 0, burst: 1 })).toThrow(/ratePerSecond/);
    expect(() => new TokenBucketLimiter({ ratePerSecond: 1, burst: 0 })).toThrow(/burst/);
  });
});

function app(mw: ReturnType<typeof rateLimit>) {
  const a = new Hono<{ Variables: { tenant: string } }>();
  a.onError(problemOnError({ logger: silent }));
  a.use(async (c, next) => {
    c.set('tenant', c.req.header('x-tenant') ?? 'acme');
    await next();
  });
  a.use(mw);
  a.get('/', (c) => c.text('ok'));
  return a;
}

describe('rateLimit middleware', () => {
  it('429 problem with Retry-After once the bucket is empty', async () => {
    const a = app(rateLimit({ limiter: new TokenBucketLimiter({ ratePerSecond: 1, burst: 1, now: () => 0 }) }));
    expect((await a.request('/')).status).toBe(200);
    const res = await a.request('/');
    expect(res.status).toBe(429);
    expect(res.headers.get('retry-after')).toBe('1');
    expect(res.headers.get('content-type')).toBe('application/problem+json');
    expect((await a.request('/', { headers: { 'x-tenant': 'other' } })).status).toBe(200);
  });
});

describe('concurrencyCap middleware', () => {
  it('429 when the tenant has max active jobs', async () => {
    const counts: Record<string, number> = { acme: 2, small: 1 };
    const a = app(concurrencyCap({ active: { hasRoom: async (t, cap) => (counts[t] ?? 0) < cap }, max: 2, retryAfterSeconds: 7 }));
    const res = await a.request('/');
    expect(res.status).toBe(429);
    expect(res.headers.get('retry-after')).toBe('7');
    expect(await res.json()).toMatchObject({ type: 'urn:amdm:problem:too-many-active-jobs' });
    expect((await a.request('/', { headers: { 'x-tenant': 'small' } })).status).toBe(200);
  });

  it('checks its options', () => {
    expect(() => concurrencyCap({ active: { hasRoom: async () => true }, max: 0 })).toThrow(/option "max"/);
    expect(() => concurrencyCap({ max: 1 } as never)).toThrow(/option "active"/);
  });
});
