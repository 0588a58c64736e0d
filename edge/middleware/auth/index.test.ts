import { Hono } from 'hono';
import { describe, expect, it } from 'vitest';
import { problemOnError } from '../problem/index.ts';
import { auth, type AuthVariables } from './index.ts';

const silent = { error() {}, warn() {}, info() {} };

function appWith(opts: Partial<Parameters<typeof auth>[0]> = {}) {
  let calls = 0;
  let now = 0;
  const app = new Hono<{ Variables: AuthVariables }>();
  app.onError(problemOnError({ logger: silent }));
  app.use(
    auth({
      verify: async (key) => {
        calls++;
        return key === 'good' ? { tenant: 'acme', keyId: 'k1' } : null;
      },
      now: () => now,
      ...opts,
    }),
  );
  app.get('/', (c) => c.json({ tenant: c.get('tenant'), keyId: c.get('keyId') }));
  return { app, calls: () => calls, advance: (ms: number) => (now += ms) };
}

describe('auth middleware', () => {
  it('passes a good key and exposes the tenant', async () => {
    const { app } = appWith();
    const res = await app.request('/', { headers: { authorization: 'Bearer good' } });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ tenant: 'acme', keyId: 'k1' });
  });

  it('401 + challenge without a key', async () => {
    const { app } = appWith();
    const res = await app.request('/');
    expect(res.status).toBe(401);
    expect(res.headers.get('content-type')).toBe('application/problem+json');
    expect(res.headers.get('www-authenticate')).toBe('Bearer realm="amdm"');
    const body = await res.json();
    expect(body).toMatchObject({ status: 401, errors: [{ field: 'header Authorization' }] });
  });

  it('401 invalid_token for a bad key, invalid_request for another scheme', async () => {
    const { app } = appWith();
    const bad = await app.request('/', { headers: { authorization: 'Bearer nope' } });
    expect(bad.status).toBe(401);
    expect(bad.headers.get('www-authenticate')).toBe('Bearer realm="amdm", error="invalid_token"');
    const basic = await app.request('/', { headers: { authorization: 'Basic Zm9vOmJhcg==' } });
    expect(basic.status).toBe(401);
    expect(basic.headers.get('www-authenticate')).toContain('invalid_request');
  });

  it('caches verified keys for cacheSeconds, then asks again', async () => {
    const { app, calls, advance } = appWith({ cacheSeconds: 10 });
    const h = { headers: { authorization: 'Bearer good' } };
    await app.request('/', h);
    await app.request('/', h);
    expect(calls()).toBe(1);
    advance(10_001);
    await app.request('/', h);
    expect(calls()).toBe(2);
  });

  it('with a revision, a cached key is verified again as soon as the revision changes', async () => {
    let revision: string | null = null;
    let valid = true;
    const app = new Hono<{ Variables: AuthVariables }>();
    app.onError(problemOnError({ logger: silent }));
    let calls = 0;
    app.use(
      auth({
        verify: async () => (calls++, valid ? { tenant: 'acme', keyId: 'k1' } : null),
        cacheSeconds: 10,
        revision: async () => revision,
      }),
    );
    app.get('/', (c) => c.text('ok'));
    const h = { headers: { authorization: 'Bearer good' } };
    expect((await app.request('/', h)).status).toBe(200);
    expect((await app.request('/', h)).status).toBe(200);
    expect(calls).toBe(1);
    // revoked elsewhere: the store says so, and the revision moved with it
    valid = false;
    expect((await app.request('/', h)).status).toBe(200);
    revision = 'r1';
    expect((await app.request('/', h)).status).toBe(401);
    expect(calls).toBe(2);
  });

  it('with a revision, a key verified under an older one is not reused (a request that overlapped the change)', async () => {
    let revision = 'r0';
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let lookups = 0;
    const app = new Hono<{ Variables: AuthVariables }>();
    app.onError(problemOnError({ logger: silent }));
    app.use(
      auth({
        verify: async () => {
          // the first lookup read the key before the revocation and answers after it
          if (++lookups === 1) {
            await gate;
            return { tenant: 'acme', keyId: 'k1' };
          }
          return null;
        },
        cacheSeconds: 10,
        revision: async () => revision,
      }),
    );
    app.get('/', (c) => c.text('ok'));
    const h = { headers: { authorization: 'Bearer good' } };
    const first = app.request('/', h);
    await new Promise((r) => setTimeout(r, 10));
    revision = 'r1';
    // a request under the new revision empties the cache while the first one still looks up
    expect((await app.request('/', { headers: { authorization: 'Bearer other' } })).status).toBe(401);
    release();
    expect((await first).status).toBe(200);
    // the first request cached the key under r0 after the cache was emptied: not trusted under r1
    expect((await app.request('/', h)).status).toBe(401);
    expect(lookups).toBe(3);
  });

  it('never caches refusals (a key created a moment ago must work at once)', async () => {
    const { app, calls } = appWith();
    await app.request('/', { headers: { authorization: 'Bearer nope' } });
    await app.request('/', { headers: { authorization: 'Bearer nope' } });
    expect(calls()).toBe(2);
  });

  it('checks its options at construction', () => {
    expect(() => auth({} as never)).toThrow(/option "verify"/);
    expect(() => auth({ verify: async () => null, cacheSeconds: -1 })).toThrow(/option "cacheSeconds"/);
    expect(() => auth({ verify: async () => null, realm: 'a"b' })).toThrow(/option "realm"/);
  });
});
