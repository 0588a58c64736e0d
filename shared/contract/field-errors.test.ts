import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { allowedKeysAt, fieldPath, zodFieldErrors } from './field-errors.ts';
import { JobRequest } from './job-request.ts';

describe('field errors', () => {
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

  it('names the root when the whole body is at fault, with the root the caller chose', () => {
    const r = JobRequest.safeParse('not an object');
    expect(zodFieldErrors(r.error!.issues, JobRequest, '(body)')).toEqual([{ field: '(body)', message: expect.any(String) }]);
  });
});

describe('the order of field errors', () => {
  it('puts unknown fields first: a typo also leaves the real field missing, and the typo is the useful line', () => {
    const r = JobRequest.safeParse({ models: [{ id: 'a', role: 'base', promt: 'x' }] });
    const errors = zodFieldErrors(r.error!.issues, JobRequest);
    expect(errors.map((e) => e.field)).toEqual(['models[0].promt', 'models[0].prompt']);
    expect(errors[0]!.message).toMatch(/^unknown field "promt"; allowed: id, role, prompt,/);
  });
});
