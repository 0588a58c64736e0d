import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { aggregate, deviationMu, guide, inWindow, officialP, officialWeights, pullToward, unetEvalsPerImage, unitNormWeights } from './math.ts';

const norm = (a: Float32Array) => Math.sqrt(a.reduce((s, v) => s + v * v, 0));

describe('AMDM math (AMDM.md steps 3-4, official defaults, cost)', () => {
  it('official weights: two models are unit-norm, three are as coded (not unit-norm)', () => {
    const [a, b] = officialWeights(2, 0.5);
    expect(a! ** 2 + b! ** 2).toBeCloseTo(1, 12);
    const w = officialWeights(3, 0.47, 0.5);
    expect(w[0]).toBeCloseTo(0.47 * 0.5, 12);
    expect(w[1]).toBeCloseTo(Math.sqrt(1 - 0.47 ** 2) * 0.5, 12);
    expect(w[2]).toBeCloseTo(Math.sqrt(1 - 0.47 ** 2) * Math.sqrt(1 - 0.25), 12);
    expect(w.reduce((s, v) => s + v * v, 0)).toBeCloseTo(1 - 0.47 ** 2 * (1 - 0.5 ** 2), 12);
  });

  it('omega defaults to the official omega (two models) and omega1, omega2 (three)', () => {
    expect(officialWeights(2)).toEqual(officialWeights(2, 0.5));
    expect(officialWeights(3)).toEqual(officialWeights(3, 0.47, 0.5));
    expect(officialWeights(1)).toEqual([1]);
  });

  it('p defaults: 55 for the base, 45 for auxiliaries at 4x64x64, scaled by the latent norm', () => {
    expect(officialP('base', { channels: 4, width: 64, height: 64 })).toBe(55);
    expect(officialP('auxiliary', { channels: 4, width: 64, height: 64 })).toBe(45);
    expect(officialP('auxiliary', { channels: 4, width: 8, height: 8 })).toBe(45 / 8); // the shapes family: norm 16
  });

  it('explicit weights are normalized to unit L2 norm for any N; all-zero is refused', () => {
    const w = unitNormWeights([1, 2, 2, 4]);
    expect(w.reduce((s, v) => s + v * v, 0)).toBeCloseTo(1, 12);
    expect(w[3]! / w[0]!).toBeCloseTo(4, 12);
    expect(() => unitNormWeights([0, 0])).toThrow(/zero/);
  });

  it('the window is inclusive and never includes step 0', () => {
    expect([0, 1, 2, 3, 4].map((i) => inWindow(i, [1, 3]))).toEqual([false, true, true, true, false]);
    expect(inWindow(0, [0, 5])).toBe(false);
  });

  it('aggregation keeps unit variance for independent Gaussians when Σw² = 1', () => {
    const n = 100_000;
    let seed = 1;
    const rnd = () => ((seed = (seed * 16807) % 2147483647) / 2147483647);
    const g = () => Float32Array.from({ length: n }, () => Math.sqrt(-2 * Math.log(rnd())) * Math.cos(2 * Math.PI * rnd()));
    const xbar = aggregate([g(), g()], officialWeights(2, 0.45));
    const v = xbar.reduce((s, x) => s + x * x, 0) / n;
    expect(Math.abs(v - 1)).toBeLessThan(0.02);
  });

  it('mu uses the per-step alpha and the stale prediction', () => {
    const x = new Float32Array([1, -2]);
    const eps = new Float32Array([0.5, 0.25]);
    const mu = deviationMu(x, eps, 0.99, 0.5);
    const c = 0.01 / Math.sqrt(0.5);
    expect(mu[0]).toBeCloseTo((1 - c * 0.5) / Math.sqrt(0.99), 6);
    expect(mu[1]).toBeCloseTo((-2 - c * 0.25) / Math.sqrt(0.99), 6);
  });

  it('the pull moves exactly p toward mu and overshoots unless clamped', () => {
    const xbar = new Float32Array([3, 4, 0]);
    const mu = new Float32Array([0, 0, 0]); // ||xbar - mu|| = 5
    const near = pullToward(xbar, mu, 2, false);
    expect(norm(near)).toBeCloseTo(3, 5);
    const over = pullToward(xbar, mu, 8, false);
    expect(Array.from(over)).toEqual([3 - 8 * 0.6, 4 - 8 * 0.8, 0].map(Math.fround)); // past mu, as the official code does
    const clamped = pullToward(xbar, mu, 8, true);
    expect(Array.from(clamped)).toEqual([0, 0, 0]);
    expect(Array.from(pullToward(mu, mu, 3, false))).toEqual([0, 0, 0]); // no direction: stays
  });

  it('guidance combines the halves of one batched call', () => {
    const out = guide(new Float32Array([1, 2, 3, 6]), 7.5);
    expect(Array.from(out)).toEqual([1 + 7.5 * 2, 2 + 7.5 * 4]);
  });

  it('early stop cost: N·(end+1) + (S-end-1) UNet calls', () => {
    expect(unetEvalsPerImage(3, 50, 3, false)).toBe(3 * 4 + 46);
    expect(unetEvalsPerImage(3, 50, 3, true)).toBe(150);
    expect(unetEvalsPerImage(1, 20, 3, false)).toBe(20);
  });

  it('imports nothing, so the contract (and the edge bundle) can carry it', () => {
    expect(readFileSync(new URL('./math.ts', import.meta.url), 'utf8')).not.toMatch(/^\s*(import|export .* from)\b/m);
  });
});
