/**
 * Every number the schema accepts, at its bounds and at the extremes of float64, shapes to
 * a JobSpec whose numbers are all finite, with weights that are not all zero. The numeric
 * fields and their bounds are read from the schema (schemaFields), so a field added later
 * is covered without editing this test.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { JobRequest, shapeJobRequest, type JobSpec, type ModelInfo } from '../../shared/contract/index.ts';
import { type FieldInfo, fieldName, locate, schemaFields, setAt, validRequests } from './mutations.ts';

const model = (id: string, conditions: Partial<ModelInfo['conditions']> = {}): ModelInfo => ({
  id,
  description: '',
  ecosystem: 'shapes-v1',
  latent: { channels: 4, vae_scale_factor: 4 },
  sizes: { default: [64, 64], min: 32, max: 128, multiple: 16 },
  conditions: { prompt: { max_tokens: 32 }, grounding: null, reference_image: null, ...conditions },
  schedulers: ['ddim', 'euler'],
});
const CATALOG = [model('shapes-base'), model('shapes-layout', { grounding: { max_objects: 4 } }), model('shapes-style', { reference_image: { width: 32, height: 32 } })];

const numeric = schemaFields().filter((f) => f.kind === 'number' || f.kind === 'int');

/** Values the field's own bounds accept, weighted towards the bounds and float64's extremes. */
function acceptedValue(f: FieldInfo): fc.Arbitrary<number> {
  const min = f.min ?? -Number.MAX_VALUE;
  const max = f.max ?? Number.MAX_VALUE;
  if (f.kind === 'int') {
    const lo = Math.max(min, Number.MIN_SAFE_INTEGER);
    const hi = Math.min(max, Number.MAX_SAFE_INTEGER);
    return fc.oneof(fc.constantFrom(lo, hi, Math.min(lo + 1, hi)), fc.integer({ min: Math.max(lo, -(2 ** 31)), max: Math.min(hi, 2 ** 31 - 1) }), fc.maxSafeInteger().filter((v) => v >= lo && v <= hi));
  }
  const extremes = [min, max, 0, 5e-324, 2 ** -1022, 1e-200, 1e-154, 1e154, 1e200, Number.MAX_VALUE, 1 - 2 ** -53, 1 + 2 ** -52].filter((v) => v >= min && v <= max);
  return fc.oneof(fc.constantFrom(...extremes), fc.double({ min, max, noNaN: true }));
}

/** A valid request with some numeric fields set (or all weights, or omega and omega2). */
const requests = fc
  .tuple(
    validRequests,
    fc.array(fc.tuple(fc.nat(numeric.length - 1), fc.nat(), fc.nat()), { maxLength: 6 }),
    fc.option(fc.array(acceptedValue(numeric.find((f) => fieldName(f.path) === 'models.*.weight')!), { minLength: 4, maxLength: 4 }), { nil: undefined }),
    fc.option(fc.tuple(acceptedValue(numeric.find((f) => fieldName(f.path) === 'aggregation.omega')!), fc.option(acceptedValue(numeric.find((f) => fieldName(f.path) === 'aggregation.omega2')!), { nil: undefined })), { nil: undefined }),
  )
  .chain(([base, picks, weights, omegas]) => {
    let req: unknown = base;
    const reqModels = (req as { models: object[] }).models;
    if (weights) req = { ...(req as object), models: reqModels.map((m, i) => ({ ...m, weight: weights[i] })) };
    else if (omegas) req = { ...(req as object), aggregation: { omega: omegas[0], ...(omegas[1] !== undefined ? { omega2: omegas[1] } : {}) } };
    const edits = picks.map(([fi, spot]) => {
      const f = numeric[fi]!;
      const spots = locate(req, f.path);
      return spots.length === 0 ? fc.constant(null) : acceptedValue(f).map((v) => [spots[spot % spots.length]!, v] as const);
    });
    return fc.tuple(...edits).map((sets) => {
      let out = req;
      for (const s of sets) if (s) out = setAt(out, [...s[0]], s[1]);
      return out;
    });
  });

/** Every number in the spec with its path. */
function numbersIn(value: unknown, path = 'spec'): [string, number][] {
  if (typeof value === 'number') return [[path, value]];
  if (Array.isArray(value)) return value.flatMap((v, i) => numbersIn(v, `${path}[${i}]`));
  if (value !== null && typeof value === 'object') return Object.entries(value).flatMap(([k, v]) => numbersIn(v, `${path}.${k}`));
  return [];
}

describe('shaping the numbers the schema accepts', () => {
  it('covers every numeric field of the request', () => {
    expect(numeric.map((f) => fieldName(f.path)).sort()).toEqual(
      expect.arrayContaining(['aggregation.omega', 'aggregation.omega2', 'models.*.weight', 'models.*.p', 'models.*.guidance_scale', 'models.*.reference_image.scale', 'sampler.steps', 'sampler.seed', 'sampler.width', 'sampler.height', 'sampler.eta', 'outputs.images', 'aggregation.window[0]', 'models.*.grounding.*.box[3]']),
    );
  });

  it('any accepted request shapes (never throws) to finite numbers and weights not all zero', () => {
    let accepted = 0;
    let explicit = 0;
    fc.assert(
      fc.property(requests, (body) => {
        const parsed = JobRequest.safeParse(body);
        if (!parsed.success) return;
        const shaped = shapeJobRequest(parsed.data, CATALOG, { randomSeed: () => 7 });
        if (!shaped.ok) {
          for (const e of shaped.errors) expect(e.field.length).toBeGreaterThan(0);
          return;
        }
        accepted++;
        const spec: JobSpec = shaped.spec;
        for (const [path, v] of numbersIn(spec)) expect(Number.isFinite(v), `${path} = ${v} from ${JSON.stringify(body).slice(0, 400)}`).toBe(true);
        const w = spec.models.map((m) => m.weight);
        expect(w.some((v) => v > 0), `weights ${JSON.stringify(w)}`).toBe(true);
        if (spec.aggregation.weights === 'explicit') {
          explicit++;
          expect(Math.hypot(...w)).toBeCloseTo(1, 12);
        }
      }),
      { numRuns: 5000, seed: 20_250_311 },
    );
    // the property must not hold only vacuously
    expect(accepted).toBeGreaterThan(1000);
    expect(explicit).toBeGreaterThan(200);
  });
});
