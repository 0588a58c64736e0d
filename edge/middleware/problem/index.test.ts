import { Hono } from 'hono';
import { HTTPException } from 'hono/http-exception';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { JobRequest } from '../../../shared/contract/index.ts';
import { ProblemError, allowedKeysAt, fieldPath, problemNotFound, problemOnError, zodFieldErrors } from './index.ts';

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
  it('formats field paths as JSON paths', () => {
    expect(fieldPath(['models', 1, 'grounding', 0, 'box'])).toBe('models[1].grounding[0].box');
    expect(fieldPath([])).toBe('body');
  });

  it('names unknown fields and what is allowed there', () => {
    const r = JobRequest.safeParse({ models: [{ id: 'a', role: 'base', prompt: 'x', colour: 1 }], extra: true });
    expect(r.success).toBe(false);
    const errors = zodFieldErrors(r.error!.issues, JobRequest);
    expect(errors).toContainEqual({ field: 'extra', message: 'unknown field "extra"; allowed: models, aggregation, sampler, outputs, webhook' });
    expect(errors.find((e) => e.field === 'models[0].colour')!.message).toMatch(/allowed: id, role, prompt/);
  });

  it('allowedKeysAt walks defaults, arrays and optionals', () => {
    expect(allowedKeysAt(JobRequest, ['sampler'])).toContain('steps');
    expect(allowedKeysAt(JobRequest, ['models', 0, 'grounding', 0])).toEqual(['phrase', 'box']);
    expect(allowedKeysAt(JobRequest, ['models', 0, 'prompt'])).toBeNull();
    expect(allowedKeysAt(z.string(), [])).toBeNull();
  });

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
