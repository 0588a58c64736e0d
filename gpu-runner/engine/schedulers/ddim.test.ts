/**
 * DDIM against the values diffusers publishes in its own test suite
 * (tests/schedulers/test_scheduler_ddim.py): the same dummy sample, dummy model and
 * configs, so a matching sum means matching step arithmetic.
 */
import { describe, expect, it } from 'vitest';
import { parseSchedulerConfig } from './config.ts';
import { DDIMScheduler } from './ddim.ts';
import { EulerDiscreteScheduler } from './euler.ts';

const TEST_CONFIG = { num_train_timesteps: 1000, beta_start: 0.0001, beta_end: 0.02, beta_schedule: 'linear', clip_sample: true };

/** diffusers' dummy_sample_deter: arange(768) laid out (C, H, W, B), /768, permuted to (B, C, H, W) */
function dummySampleDeter(): Float32Array {
  const [B, C, H, W] = [4, 3, 8, 8];
  const out = new Float32Array(B * C * H * W);
  for (let b = 0; b < B; b++)
    for (let c = 0; c < C; c++)
      for (let h = 0; h < H; h++)
        for (let w = 0; w < W; w++) out[((b * C + c) * H + h) * W + w] = (((c * H + h) * W + w) * B + b) / 768;
  return out;
}

function fullLoop(overrides: Record<string, unknown> = {}): Float32Array {
  const s = new DDIMScheduler(parseSchedulerConfig({ ...TEST_CONFIG, ...overrides }));
  let sample = dummySampleDeter();
  s.setTimesteps(10).forEach((t, i) => {
    const residual = sample.map((v) => (v * t) / (t + 1)); // diffusers' dummy_model
    sample = s.step(residual, i, sample, { eta: 0, noise: () => new Float32Array(0) }).prevSample;
  });
  return sample;
}

const sumAbs = (a: Float32Array) => a.reduce((s, v) => s + Math.abs(v), 0);

describe('DDIM matches diffusers published values', () => {
  it('full loop, no noise: sum 172.0067, mean 0.223967', () => {
    const s = fullLoop();
    expect(Math.abs(sumAbs(s) - 172.0067)).toBeLessThan(1e-2);
    expect(Math.abs(sumAbs(s) / s.length - 0.223967)).toBeLessThan(1e-3);
  });

  it('set_alpha_to_one true / false with beta_start 0.01: 149.8295 / 149.0784', () => {
    const one = fullLoop({ set_alpha_to_one: true, beta_start: 0.01 });
    const notOne = fullLoop({ set_alpha_to_one: false, beta_start: 0.01 });
    expect(Math.abs(sumAbs(one) - 149.8295)).toBeLessThan(1e-2);
    expect(Math.abs(sumAbs(one) / one.length - 0.1951)).toBeLessThan(1e-3);
    expect(Math.abs(sumAbs(notOne) - 149.0784)).toBeLessThan(1e-2);
    expect(Math.abs(sumAbs(notOne) / notOne.length - 0.1941)).toBeLessThan(1e-3);
  });

  it('v_prediction full loop: sum 52.5302, mean 0.0684', () => {
    const s = fullLoop({ prediction_type: 'v_prediction' });
    expect(Math.abs(sumAbs(s) - 52.5302)).toBeLessThan(1e-2);
    expect(Math.abs(sumAbs(s) / s.length - 0.0684)).toBeLessThan(1e-3);
  });

  it('variance values', () => {
    const s = new DDIMScheduler(parseSchedulerConfig(TEST_CONFIG));
    expect(s.variance(0, 0)).toBeCloseTo(0, 5);
    expect(Math.abs(s.variance(420, 400) - 0.14771)).toBeLessThan(1e-5);
    expect(Math.abs(s.variance(980, 960) - 0.3246)).toBeLessThan(1e-5);
    expect(Math.abs(s.variance(487, 486) - 0.00979)).toBeLessThan(1e-5);
    expect(Math.abs(s.variance(999, 998) - 0.02)).toBeLessThan(1e-5);
  });

  it('steps_offset 1 with 5 steps gives 801 601 401 201 1', () => {
    const s = new DDIMScheduler(parseSchedulerConfig({ ...TEST_CONFIG, steps_offset: 1 }));
    expect(s.setTimesteps(5)).toEqual([801, 601, 401, 201, 1]);
  });

  it('timestep spacings (Lin et al. 2023, Table 2, 0-indexed as diffusers)', () => {
    const mk = (spacing: string, offset = 0) => new DDIMScheduler(parseSchedulerConfig({ ...TEST_CONFIG, timestep_spacing: spacing, steps_offset: offset })).setTimesteps(10);
    expect(mk('linspace')).toEqual([999, 888, 777, 666, 555, 444, 333, 222, 111, 0]);
    expect(mk('leading', 1)).toEqual([901, 801, 701, 601, 501, 401, 301, 201, 101, 1]);
    expect(mk('trailing')).toEqual([999, 899, 799, 699, 599, 499, 399, 299, 199, 99]);
  });

  it('the AMDM schedule: S = 20 gives 951, 901, ..., 1 (AMDM.md)', () => {
    const s = new DDIMScheduler(parseSchedulerConfig({ beta_start: 0.00085, beta_end: 0.012, beta_schedule: 'scaled_linear', steps_offset: 1, set_alpha_to_one: false, clip_sample: false }));
    const ts = s.setTimesteps(20);
    expect(ts[0]).toBe(951);
    expect(ts.at(-1)).toBe(1);
    expect(ts.every((t, i) => i === 0 || ts[i - 1]! - t === 50)).toBe(true);
    // set_alpha_to_one false: the last step lands on alphas_cumprod[0], not 1
    expect(s.alphaProdPrev(-49)).toBe(s.schedule.alphasCumprod[0]);
  });

  it('eta > 0 adds the variance noise, and needs it', () => {
    const s = new DDIMScheduler(parseSchedulerConfig(TEST_CONFIG));
    const ts = s.setTimesteps(10);
    const x = dummySampleDeter();
    const eps = x.map((v) => v * 0.1);
    expect(() => s.step(eps, 2, x, { eta: 0.5, noise: () => new Float32Array(0) })).toThrow(/variance noise/);
    expect(() => s.step(eps, 10, x)).toThrow(/step index 10 is outside the 10 timesteps/);
    const a = s.step(eps, 2, x, { eta: 0.5, noise: () => new Float32Array(x.length) }).prevSample;
    const b = s.step(eps, 2, x, { eta: 0.5, noise: () => new Float32Array(x.length).fill(1) }).prevSample;
    const std = 0.5 * Math.sqrt(s.variance(ts[2]!, ts[3]!));
    expect(b[0]! - a[0]!).toBeCloseTo(std, 5);
  });

  it('rejects bad configs naming the field', () => {
    expect(() => parseSchedulerConfig({ beta_schedule: 'cosine' })).toThrow(/"beta_schedule".*allowed: linear, scaled_linear, squaredcos_cap_v2/);
    expect(() => parseSchedulerConfig({ timestep_spacing: 'middle' })).toThrow(/"timestep_spacing"/);
    expect(() => parseSchedulerConfig({ thresholding: true })).toThrow(/"thresholding"/);
    expect(() => new DDIMScheduler(parseSchedulerConfig(TEST_CONFIG)).setTimesteps(0)).toThrow(/steps is 0/);
  });
});

describe('Euler discrete (single-model jobs)', () => {
  const sd15 = { beta_start: 0.00085, beta_end: 0.012, beta_schedule: 'scaled_linear', steps_offset: 1, set_alpha_to_one: false, clip_sample: false };

  it('has the SD1.5 sigma range k-diffusion publishes: 14.6146 .. 0.0292', () => {
    const e = new EulerDiscreteScheduler(parseSchedulerConfig(sd15));
    expect(e.trainSigmas.at(-1)!).toBeCloseTo(14.6146, 3);
    expect(e.trainSigmas[0]!).toBeCloseTo(0.0292, 3);
  });

  it('ends at sigma 0, and its step is x + (x - x0)/sigma * dt', () => {
    const e = new EulerDiscreteScheduler(parseSchedulerConfig(sd15));
    e.setTimesteps(20);
    expect(e.sigmas).toHaveLength(21);
    expect(e.sigmas.at(-1)).toBe(0);
    expect(e.initNoiseSigma).toBeCloseTo(Math.sqrt(e.sigmas[0]! ** 2 + 1), 6);
    const x = new Float32Array([1, 2]);
    const eps = new Float32Array([0.5, -0.5]);
    const out = e.step(eps, 19, x); // last step: sigma -> 0, so the result is x0 = x - sigma * eps
    expect(out.prevSample[0]).toBeCloseTo(1 - e.sigmas[19]! * 0.5, 5);
    expect(out.predOriginalSample[0]).toBeCloseTo(1 - e.sigmas[19]! * 0.5, 5);
  });
});
