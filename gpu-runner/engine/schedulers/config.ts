/**
 * A diffusers scheduler_config.json, read once, checked, with diffusers' defaults. Betas
 * and their cumulative products are computed in float32 as diffusers does (torch float32
 * linspace and cumprod), so schedules agree with `DDIMScheduler.from_pretrained(...)`.
 */
export type BetaSchedule = 'linear' | 'scaled_linear' | 'squaredcos_cap_v2';
export type TimestepSpacing = 'leading' | 'trailing' | 'linspace';
export type PredictionType = 'epsilon' | 'v_prediction' | 'sample';

export interface SchedulerConfig {
  num_train_timesteps: number;
  beta_start: number;
  beta_end: number;
  beta_schedule: BetaSchedule;
  trained_betas: number[] | null;
  clip_sample: boolean;
  clip_sample_range: number;
  set_alpha_to_one: boolean;
  steps_offset: number;
  prediction_type: PredictionType;
  timestep_spacing: TimestepSpacing;
  rescale_betas_zero_snr: boolean;
}

/** diffusers' DDIMScheduler defaults. */
export const DEFAULT_SCHEDULER_CONFIG: SchedulerConfig = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: 'linear',
  trained_betas: null,
  clip_sample: true,
  clip_sample_range: 1.0,
  set_alpha_to_one: true,
  steps_offset: 0,
  prediction_type: 'epsilon',
  timestep_spacing: 'leading',
  rescale_betas_zero_snr: false,
};

const ONE_OF = {
  beta_schedule: ['linear', 'scaled_linear', 'squaredcos_cap_v2'],
  timestep_spacing: ['leading', 'trailing', 'linspace'],
  prediction_type: ['epsilon', 'v_prediction', 'sample'],
} as const;

/** Parse a scheduler_config.json object; unknown keys are ignored as diffusers does. */
export function parseSchedulerConfig(raw: Record<string, unknown>, source = 'scheduler_config.json'): SchedulerConfig {
  const cfg: SchedulerConfig = { ...DEFAULT_SCHEDULER_CONFIG };
  const fail = (key: string, allowed: string): never => {
    throw new Error(`${source}: "${key}" is ${JSON.stringify(raw[key])}; allowed: ${allowed}`);
  };
  for (const key of ['num_train_timesteps', 'beta_start', 'beta_end', 'clip_sample_range', 'steps_offset'] as const) {
    if (raw[key] === undefined) continue;
    const v = raw[key];
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) fail(key, 'a finite number >= 0');
    cfg[key] = v as number;
  }
  for (const key of ['clip_sample', 'set_alpha_to_one', 'rescale_betas_zero_snr'] as const) {
    if (raw[key] === undefined) continue;
    if (typeof raw[key] !== 'boolean') fail(key, 'true or false');
    cfg[key] = raw[key] as boolean;
  }
  for (const key of ['beta_schedule', 'timestep_spacing', 'prediction_type'] as const) {
    if (raw[key] === undefined) continue;
    const allowed = ONE_OF[key] as readonly string[];
    if (typeof raw[key] !== 'string' || !allowed.includes(raw[key] as string)) fail(key, allowed.join(', '));
    (cfg as unknown as Record<string, unknown>)[key] = raw[key];
  }
  if (raw.trained_betas !== undefined && raw.trained_betas !== null) {
    const tb = raw.trained_betas;
    if (!Array.isArray(tb) || tb.some((b) => typeof b !== 'number')) fail('trained_betas', 'null or an array of numbers');
    cfg.trained_betas = tb as number[];
  }
  if (raw.thresholding === true) fail('thresholding', 'false (dynamic thresholding is for pixel-space models)');
  if (!Number.isInteger(cfg.num_train_timesteps) || cfg.num_train_timesteps < 2) fail('num_train_timesteps', 'an integer >= 2');
  return cfg;
}

/** The training noise schedule: betas, alphas and alphas_cumprod, float32 like diffusers. */
export interface NoiseSchedule {
  betas: Float32Array;
  alphas: Float32Array;
  alphasCumprod: Float32Array;
}

export function noiseSchedule(cfg: SchedulerConfig): NoiseSchedule {
  const T = cfg.num_train_timesteps;
  let betas: Float32Array = new Float32Array(T);
  if (cfg.trained_betas) {
    if (cfg.trained_betas.length !== T) {
      throw new Error(`trained_betas has ${cfg.trained_betas.length} values; num_train_timesteps is ${T}`);
    }
    betas.set(cfg.trained_betas);
  } else if (cfg.beta_schedule === 'linear') {
    for (let i = 0; i < T; i++) betas[i] = linspaceAt(cfg.beta_start, cfg.beta_end, T, i);
  } else if (cfg.beta_schedule === 'scaled_linear') {
    // torch.linspace(beta_start**0.5, beta_end**0.5, T, dtype=float32) ** 2
    const a = Math.fround(Math.sqrt(cfg.beta_start));
    const b = Math.fround(Math.sqrt(cfg.beta_end));
    for (let i = 0; i < T; i++) {
      const v = linspaceAt(a, b, T, i);
      betas[i] = v * v;
    }
  } else {
    // Glide cosine schedule (betas_for_alpha_bar, max_beta 0.999), computed in float64 then cast
    const alphaBar = (t: number): number => Math.cos(((t + 0.008) / 1.008) * Math.PI * 0.5) ** 2;
    for (let i = 0; i < T; i++) betas[i] = Math.min(1 - alphaBar((i + 1) / T) / alphaBar(i / T), 0.999);
  }
  if (cfg.rescale_betas_zero_snr) betas = rescaleZeroTerminalSnr(betas);
  const alphas = new Float32Array(T);
  const alphasCumprod = new Float32Array(T);
  let prod = 1;
  for (let i = 0; i < T; i++) {
    alphas[i] = 1 - betas[i]!;
    prod = Math.fround(prod * alphas[i]!);
    alphasCumprod[i] = prod;
  }
  if (cfg.rescale_betas_zero_snr) alphasCumprod[T - 1] = 2 ** -24; // diffusers avoids an infinite sigma
  return { betas, alphas, alphasCumprod };
}

/** torch.linspace's float32 value at index i: float32 arithmetic, filled from both ends. */
function linspaceAt(start: number, end: number, steps: number, i: number): number {
  const f = Math.fround;
  const s = f(start);
  const e = f(end);
  const step = f(f(e - s) / (steps - 1));
  const half = Math.floor(steps / 2);
  return i < half ? f(s + f(step * i)) : f(e - f(step * (steps - 1 - i)));
}

/** Lin et al. 2023, "Common Diffusion Noise Schedules and Sample Steps are Flawed", Alg. 1. */
function rescaleZeroTerminalSnr(betas: Float32Array): Float32Array {
  const T = betas.length;
  const sqrtAbar = new Float64Array(T);
  let prod = 1;
  for (let i = 0; i < T; i++) {
    prod *= 1 - betas[i]!;
    sqrtAbar[i] = Math.sqrt(prod);
  }
  const first = sqrtAbar[0]!;
  const last = sqrtAbar[T - 1]!;
  for (let i = 0; i < T; i++) sqrtAbar[i] = ((sqrtAbar[i]! - last) * first) / (first - last);
  const out = new Float32Array(T);
  let prev = 1;
  for (let i = 0; i < T; i++) {
    const abar = sqrtAbar[i]! ** 2;
    out[i] = 1 - abar / prev;
    prev = abar;
  }
  return out;
}
