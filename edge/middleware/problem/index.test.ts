import { Hono } from 'hono';
import { HTTPException } from 'hono/http-exception';
import { describe, expect, it } from 'vitest';
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
  });
});
