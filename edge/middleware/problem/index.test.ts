import { Hono } from 'hono';
import { HTTPException } from 'hono/http-exception';
import { describe, expect, it } from 'vitest';
import { StorageFullError } from '../../../shared/ports/store.ts';
import { ProblemError, problemNotFound, problemOnError } from './index.ts';

function collectingLogger() {
  const lines: string[] = [];
  return { lines, logger: { error: (m: string, f?: object) => lines.push(m + JSON.stringify(f)), warn() {}, info() {} } };
}

function app(thrower: () => never) {
  const { lines, logger } = collectingLogger();
  const a = new Hono();
  a.onError(problemOnError({ logger }));
  a.notFound(problemNotFound());
  a.get('/boom', () => thrower());
  return { a, lines };
}

describe('problem details', () => {
  it('ProblemError -> problem+json with headers and the request id as instance', async () => {
    const { a } = app(() => {
      throw new ProblemError(429, { type: 'rate-limited', title: 'Too many requests', headers: { 'retry-after': '3' } });
    });
    const res = await a.request('/boom');
    expect(res.status).toBe(429);
    expect(res.headers.get('content-type')).toBe('application/problem+json');
    expect(res.headers.get('retry-after')).toBe('3');
    expect(await res.json()).toEqual({ type: 'urn:amdm:problem:rate-limited', title: 'Too many requests', status: 429 });
  });

  it('unexpected errors -> 500 without internals; the stack goes to the log', async () => {
    const { a, lines } = app(() => {
      throw new Error('secret database password in /srv/app/db.ts');
    });
    const res = await a.request('/boom');
    expect(res.status).toBe(500);
    const text = await res.text();
    expect(text).not.toMatch(/secret|db\.ts|at /);
    expect(JSON.parse(text)).toMatchObject({ status: 500, title: 'Internal server error' });
    expect(lines.join()).toMatch(/secret database password/);
  });

  it("Hono's HTTPExceptions become problems too", async () => {
    const { a } = app(() => {
      throw new HTTPException(400, { message: 'Malformed JSON in request body' });
    });
    const res = await a.request('/boom');
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ type: 'urn:amdm:problem:malformed-json', errors: [{ field: 'body' }] });
  });

  it('StorageFullError -> 507 naming the cause with Retry-After, never the path; reported once per error', async () => {
    for (const code of ['ENOSPC', 'EDQUOT', 'SQLITE_FULL'] as const) {
      const told: StorageFullError[] = [];
      const a = new Hono();
      a.onError(problemOnError({ logger: { error() {}, warn() {}, info() {} }, onStorageFull: (err) => told.push(err) }));
      a.get('/boom', () => {
        throw new StorageFullError('/var/lib/amdm/queue/queues.sqlite', code);
      });
      const res = await a.request('/boom');
      expect(res.status, code).toBe(507);
      expect(res.headers.get('content-type')).toBe('application/problem+json');
      expect(res.headers.get('retry-after')).toBe('60');
      const body = await res.json();
      expect(body).toMatchObject({ type: 'urn:amdm:problem:insufficient-storage', title: 'Insufficient storage', status: 507 });
      expect(body.detail).toContain(code);
      expect(body.detail).toMatch(/full|space|quota/);
      expect(JSON.stringify(body)).not.toMatch(/var\/lib|queues\.sqlite/);
      expect(told.map((e) => e.code)).toEqual([code]);
    }
    // without a listener the 507 is logged here, with the path for the operator
    const { a, lines } = app(() => {
      throw new StorageFullError('/var/lib/amdm/store', 'ENOSPC');
    });
    expect((await a.request('/boom')).status).toBe(507);
    expect(lines.join()).toMatch(/storage full.*\/var\/lib\/amdm\/store/);
  });

  it('unknown routes are problem 404s', async () => {
    const { a } = app(() => {
      throw new Error();
    });
    const res = await a.request('/nope');
    expect(res.status).toBe(404);
    expect(res.headers.get('content-type')).toBe('application/problem+json');
  });

  it('checks its options', () => {
    expect(() => problemOnError({} as never)).toThrow(/option "logger"/);
    expect(() => problemOnError({ logger: { error() {}, warn() {}, info() {} }, onStorageFull: 1 as never })).toThrow(/option "onStorageFull"/);
  });
});
