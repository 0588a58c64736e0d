import { describe, expect, it } from 'vitest';
import { etaNoise, gaussianNoise } from './noise.ts';

describe('seeded noise', () => {
  it('matches tools/shapes/noise.py bit for bit (values printed by it)', () => {
    // /usr/bin/python3 -c "from noise import gaussian; print(gaussian(42, 0, 0, 4))"
    expect(Array.from(gaussianNoise(42, 0, 0, 4))).toEqual([0.6362302303314209, 0.651442289352417, 0.8308019042015076, -1.9218767881393433]);
  });

  it('is standard normal and independent per (seed, image, model)', () => {
    const a = gaussianNoise(7, 0, 0, 200_000);
    const mean = a.reduce((s, v) => s + v, 0) / a.length;
    const variance = a.reduce((s, v) => s + (v - mean) ** 2, 0) / a.length;
    expect(Math.abs(mean)).toBeLessThan(0.01); // 4.5 standard errors
    expect(Math.abs(variance - 1)).toBeLessThan(0.015);
    const b = gaussianNoise(7, 0, 1, 1000);
    const c = gaussianNoise(7, 1, 0, 1000);
    let dot = 0;
    for (let i = 0; i < 1000; i++) dot += a[i]! * b[i]!;
    expect(Math.abs(dot / 1000)).toBeLessThan(0.15);
    expect(Array.from(b.slice(0, 8))).not.toEqual(Array.from(c.slice(0, 8)));
    expect(Array.from(gaussianNoise(7, 0, 1, 8))).toEqual(Array.from(b.slice(0, 8)));
  });

  it('the eta-noise stream stays where it was (seed ^ 0x5eed, image * 1000 + step), apart from the initial noise', () => {
    // values of the expression the pipeline used inline before the stream was named
    expect(Array.from(etaNoise(42, 2, 3, 1, 4))).toEqual([0.12872277200222015, -0.05953902006149292, 0.3051283359527588, -0.003538433462381363]);
    expect(Array.from(etaNoise(0xfffffff0, 0, 1, 0, 2))).toEqual([-0.5659483075141907, 2.119325637817383]);
    expect(Array.from(etaNoise(42, 0, 0, 0, 4))).not.toEqual(Array.from(gaussianNoise(42, 0, 0, 4)));
  });
});
