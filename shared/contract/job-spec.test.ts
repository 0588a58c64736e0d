/** Weight normalisation: any finite weights, and the same bits as before for ordinary ones. */
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { unitNormWeights } from '../amdm/math.ts';

/** The normalisation as it was before large and tiny weights were handled. */
const plain = (w: number[]) => {
  const norm = Math.sqrt(w.reduce((s, v) => s + v * v, 0));
  return w.map((v) => v / norm);
};

const weight = fc.oneof(
  fc.double({ min: 0, max: Number.MAX_VALUE, noNaN: true }),
  fc.constantFrom(0, 5e-324, 2 ** -1022, 1e-200, 1e-154, 1e154, 1e200, Number.MAX_VALUE),
);

describe('unitNormWeights', () => {
  it('any finite weights, not all zero, give finite unit-norm weights in the same ratio', () => {
    fc.assert(
      fc.property(fc.array(weight, { minLength: 1, maxLength: 4 }).filter((w) => w.some((v) => v > 0)), (w) => {
        const out = unitNormWeights(w);
        expect(out.every(Number.isFinite)).toBe(true);
        // the largest weight keeps at least 1/sqrt(4) of the norm
        expect(Math.max(...out)).toBeGreaterThanOrEqual(0.5);
        expect(Math.hypot(...out)).toBeCloseTo(1, 14);
        const iMax = w.indexOf(Math.max(...w));
        w.forEach((v, i) => {
          if (v / w[iMax]! > 1e-300) expect(out[i]! / out[iMax]!).toBeCloseTo(v / w[iMax]!, 12);
        });
      }),
      { numRuns: 2000, seed: 11 },
    );
  });

  it('ordinary weights normalise to exactly the bits they did before', () => {
    fc.assert(
      fc.property(fc.array(fc.double({ min: 1e-100, max: 1e100, noNaN: true }), { minLength: 1, maxLength: 4 }), (w) => {
        expect(unitNormWeights(w)).toEqual(plain(w));
      }),
      { numRuns: 5000, seed: 12 },
    );
    // the golden fixture with explicit weights: [1, 2] as the reference computed it
    const fixture = JSON.parse(readFileSync(new URL('../../test/fixtures/amdm/base-layout-explicit-weights.json', import.meta.url), 'utf8')) as { spec: { models: { weight: number }[] } };
    expect(unitNormWeights([1, 2])).toEqual(fixture.spec.models.map((m) => m.weight));
  });

  it('refuses what no normalisation can serve', () => {
    expect(() => unitNormWeights([0, 0])).toThrow(/all zero|all be zero/);
    expect(() => unitNormWeights([1, Infinity])).toThrow(/finite/);
    expect(() => unitNormWeights([1, Number.NaN])).toThrow(/finite/);
    expect(() => unitNormWeights([1, -1])).toThrow(/>= 0/);
  });
});
