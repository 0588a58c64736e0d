/**
 * The per-step extension (aggregation.schedule): one row per window step and one value per
 * model, refused with the field named otherwise; shaped into the spec in base-first order;
 * absent, the spec is exactly what it was before the extension existed.
 */
import { describe, expect, it } from 'vitest';
import { scheduledAt } from '../amdm/math.ts';
import { zodFieldErrors, type FieldError } from './field-errors.ts';
import { JobRequest } from './job-request.ts';
import { shapeJobRequest, type JobSpec } from './job-spec.ts';
import type { ModelInfo } from './models.ts';

const model = (id: string, conditions: Partial<ModelInfo['conditions']> = {}): ModelInfo => ({
  id,
  description: '',
  ecosystem: 'shapes-v1',
  latent: { channels: 4, vae_scale_factor: 4 },
  sizes: { default: [32, 32], min: 32, max: 32, multiple: 4 },
  conditions: { prompt: { max_tokens: 14 }, grounding: null, reference_image: null, ...conditions },
  schedulers: ['ddim', 'euler'],
});
const CATALOG = [model('shapes-base'), model('shapes-layout', { grounding: { max_objects: 3 } })];

/** The base is listed second, so shaping must reorder the schedule's columns. */
const request = (aggregation: object, extra: { weight?: boolean; p?: boolean } = {}) => ({
  models: [
    { id: 'shapes-base', role: 'auxiliary', prompt: 'a red circle', ...(extra.weight ? { weight: 1 } : {}), ...(extra.p ? { p: 2 } : {}) },
    { id: 'shapes-layout', role: 'base', prompt: 'a circle', grounding: [{ phrase: 'circle', box: [0.1, 0.1, 0.5, 0.5] }], ...(extra.weight ? { weight: 1 } : {}) },
  ],
  aggregation,
  sampler: { steps: 10, seed: 1 },
});

function shape(body: unknown): { spec?: JobSpec; errors: FieldError[] } {
  const parsed = JobRequest.safeParse(body);
  if (!parsed.success) return { errors: zodFieldErrors(parsed.error.issues, JobRequest, 'body') };
  const r = shapeJobRequest(parsed.data, CATALOG, { randomSeed: () => 1 });
  return r.ok ? { spec: r.spec, errors: [] } : { errors: r.errors };
}

const fieldsOf = (body: unknown) => shape(body).errors.map((e) => `${e.field}: ${e.message}`);

describe('aggregation.schedule', () => {
  it('is shaped into the spec with the base first, and sets the record weights and p from its first row', () => {
    const { spec, errors } = shape(request({ window: [1, 3], schedule: { weights: [[0.8, 0.6], [0.6, 0.4], [0.5, 0.5]], p: [[1, 2], [3, 4], [5, 6]] } }));
    expect(errors).toEqual([]);
    expect(spec!.models.map((m) => m.id)).toEqual(['shapes-layout', 'shapes-base']);
    expect(spec!.aggregation.schedule).toEqual({ weights: [[0.6, 0.8], [0.4, 0.6], [0.5, 0.5]], p: [[2, 1], [4, 3], [6, 5]] });
    expect(spec!.aggregation.weights).toBe('schedule');
    expect(spec!.models.map((m) => [m.weight, m.p])).toEqual([[0.6, 2], [0.8, 1]]);
  });

  it('absent, the spec carries no schedule (the official algorithm, as before)', () => {
    const { spec } = shape(request({ window: [1, 3] }));
    expect(spec!.aggregation).toEqual({ window: [1, 3], clamp: false, weights: 'official' });
    const p = shape(request({ window: [1, 3], schedule: { p: [[1, 2], [1, 2], [1, 2]] } })).spec!;
    expect(p.aggregation.weights).toBe('official');
    expect(p.aggregation.schedule).toEqual({ p: [[2, 1], [2, 1], [2, 1]] });
  });

  it('needs one row per window step and one value per model', () => {
    expect(fieldsOf(request({ window: [1, 3], schedule: { weights: [[1, 1], [1, 1]] } }))).toEqual([
      'aggregation.schedule.weights: needs one row per window step: 3 rows for window [1, 3] (got 2)',
    ]);
    expect(fieldsOf(request({ window: [1, 2], schedule: { p: [[1, 1], [1, 1, 1]] } }))).toEqual(['aggregation.schedule.p[1]: needs one value per model: 2 (got 3)']);
  });

  it('refuses a row of zero weights, negative values and p over the limit', () => {
    expect(fieldsOf(request({ window: [1, 2], schedule: { weights: [[1, 1], [0, 0]] } }))).toEqual(['aggregation.schedule.weights[1]: weights must not all be zero']);
    expect(fieldsOf(request({ window: [1, 1], schedule: { weights: [[1, -1]] } }))[0]).toMatch(/^aggregation\.schedule\.weights\[0\]\[1\]: /);
    expect(fieldsOf(request({ window: [1, 1], schedule: { p: [[1, 1e5]] } }))[0]).toMatch(/^aggregation\.schedule\.p\[0\]\[1\]: /);
  });

  it('refuses a window from step 0, a single model, and weights or p given twice', () => {
    expect(fieldsOf(request({ window: [0, 1], schedule: { weights: [[1, 1], [1, 1]] } }))).toEqual([
      'aggregation.window: with a schedule the window must start at step 1 or later (step 0 is never aggregated)',
    ]);
    const single = { models: [request({}).models[1]], aggregation: { window: [1, 1], schedule: { p: [[1]] } }, sampler: { steps: 10 } };
    expect(fieldsOf({ ...single, models: [{ ...single.models[0], role: 'base' }] })).toEqual(['aggregation.schedule: a schedule applies to two or more models']);
    expect(fieldsOf(request({ window: [1, 1], omega: 0.5, schedule: { weights: [[1, 1]] } }))).toEqual([
      'aggregation.schedule.weights: give either schedule.weights or the weights (omega, or weight on every model), not both',
    ]);
    expect(fieldsOf(request({ window: [1, 1], schedule: { weights: [[1, 1]] } }, { weight: true }))).toHaveLength(1);
    expect(fieldsOf(request({ window: [1, 1], schedule: { p: [[1, 1]] } }, { p: true }))).toEqual(['aggregation.schedule.p: give either schedule.p or p on the models, not both']);
  });

  it('scheduledAt: the row of the step inside the window, the constants without a schedule', () => {
    const constant = { weights: [0.5, 0.5], p: [1, 1] };
    const schedule = { weights: [[1, 0], [0, 1]] };
    expect(scheduledAt(1, [1, 2], constant, schedule)).toEqual({ weights: [1, 0], p: [1, 1] });
    expect(scheduledAt(2, [1, 2], constant, schedule)).toEqual({ weights: [0, 1], p: [1, 1] });
    expect(scheduledAt(2, [1, 2], constant)).toEqual(constant);
  });
});
