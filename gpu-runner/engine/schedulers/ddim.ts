/**
 * DDIM (Song et al. 2021) with diffusers' exact semantics (schedulers/scheduling_ddim.py):
 * timestep spacing, steps_offset, set_alpha_to_one, clip_sample, prediction types and eta.
 * Note that, as in diffusers, the previous timestep is always t - T // S, whatever the
 * spacing; AMDM's official code samples with "leading" spacing, where that is exact.
 */
import { noiseSchedule, type NoiseSchedule, type SchedulerConfig } from './config.ts';
import type { Scheduler, SchedulerOutput, SchedulerStepOptions } from './scheduler.ts';

/** diffusers' default: eta 0, so no variance noise is ever drawn */
const DETERMINISTIC: SchedulerStepOptions = { eta: 0, noise: () => new Float32Array(0) };

export class DDIMScheduler implements Scheduler {
  readonly schedule: NoiseSchedule;
  readonly finalAlphaCumprod: number;
  /** DDIM latents start as standard noise */
  readonly initNoiseSigma = 1;
  timesteps: number[] = [];
  numInferenceSteps = 0;

  constructor(readonly config: SchedulerConfig) {
    this.schedule = noiseSchedule(config);
    this.finalAlphaCumprod = config.set_alpha_to_one ? 1 : this.schedule.alphasCumprod[0]!;
  }

  /** diffusers DDIMScheduler.set_timesteps */
  setTimesteps(numInferenceSteps: number): number[] {
    const T = this.config.num_train_timesteps;
    if (!Number.isInteger(numInferenceSteps) || numInferenceSteps < 1 || numInferenceSteps > T) {
      throw new Error(`steps is ${numInferenceSteps}; allowed: an integer from 1 to ${T}`);
    }
    const S = numInferenceSteps;
    let ts: number[];
    switch (this.config.timestep_spacing) {
      case 'linspace':
        // np.linspace(0, T - 1, S).round()[::-1]
        ts = Array.from({ length: S }, (_, i) => roundHalfEven(S === 1 ? 0 : ((T - 1) * i) / (S - 1))).reverse();
        break;
      case 'leading': {
        const ratio = Math.floor(T / S);
        ts = Array.from({ length: S }, (_, i) => i * ratio + this.config.steps_offset).reverse();
        break;
      }
      case 'trailing': {
        // np.round(np.arange(T, 0, -T / S)).astype(int64) - 1
        const ratio = T / S;
        ts = Array.from({ length: S }, (_, i) => roundHalfEven(T - i * ratio) - 1);
        break;
      }
    }
    this.timesteps = ts;
    this.numInferenceSteps = S;
    return ts;
  }

  /** DDIM's UNet sees the latent itself */
  scaleModelInput(sample: Float32Array): Float32Array {
    return sample;
  }

  /** the timestep the step from t lands on (diffusers: t - T // S) */
  prevTimestep(t: number): number {
    return t - Math.floor(this.config.num_train_timesteps / this.numInferenceSteps);
  }

  alphaProdPrev(prevT: number): number {
    return prevT >= 0 ? this.schedule.alphasCumprod[prevT]! : this.finalAlphaCumprod;
  }

  /** diffusers DDIMScheduler._get_variance */
  variance(t: number, prevT: number): number {
    const aT = this.schedule.alphasCumprod[t]!;
    const aPrev = this.alphaProdPrev(prevT);
    return ((1 - aPrev) / (1 - aT)) * (1 - aT / aPrev);
  }

  /**
   * One DDIM step from timesteps[stepIndex]. When eta > 0 it draws `noise` (same length as
   * sample): the variance noise diffusers would draw.
   */
  step(modelOutput: Float32Array, stepIndex: number, sample: Float32Array, { eta, noise }: SchedulerStepOptions = DETERMINISTIC): SchedulerOutput {
    if (this.numInferenceSteps === 0) throw new Error('call setTimesteps before step');
    const t = this.timesteps[stepIndex];
    if (t === undefined) throw new Error(`step index ${stepIndex} is outside the ${this.numInferenceSteps} timesteps`);
    const n = sample.length;
    const prevT = this.prevTimestep(t);
    const aT = this.schedule.alphasCumprod[t]!;
    const aPrev = this.alphaProdPrev(prevT);
    const bT = 1 - aT;
    const sqrtAT = Math.sqrt(aT);
    const sqrtBT = Math.sqrt(bT);
    const x0 = new Float32Array(n);
    const eps = new Float32Array(n);
    // 1. predicted x0 and epsilon (formula (12) of the DDIM paper)
    switch (this.config.prediction_type) {
      case 'epsilon':
        for (let i = 0; i < n; i++) {
          x0[i] = (sample[i]! - sqrtBT * modelOutput[i]!) / sqrtAT;
          eps[i] = modelOutput[i]!;
        }
        break;
      case 'sample':
        for (let i = 0; i < n; i++) {
          x0[i] = modelOutput[i]!;
          eps[i] = (sample[i]! - sqrtAT * x0[i]!) / sqrtBT;
        }
        break;
      case 'v_prediction':
        for (let i = 0; i < n; i++) {
          x0[i] = sqrtAT * sample[i]! - sqrtBT * modelOutput[i]!;
          eps[i] = sqrtAT * modelOutput[i]! + sqrtBT * sample[i]!;
        }
        break;
    }
    // 2. clip x0 (pixel-space models)
    if (this.config.clip_sample) {
      const r = this.config.clip_sample_range;
      for (let i = 0; i < n; i++) x0[i] = Math.min(Math.max(x0[i]!, -r), r);
    }
    // 3. sigma_t (formula (16))
    const std = eta * Math.sqrt(this.variance(t, prevT));
    // 4. direction pointing to x_t (formula (12)) and x_{t-1}
    const dirCoef = Math.sqrt(1 - aPrev - std * std);
    const sqrtAPrev = Math.sqrt(aPrev);
    const prev = new Float32Array(n);
    for (let i = 0; i < n; i++) prev[i] = sqrtAPrev * x0[i]! + dirCoef * eps[i]!;
    if (eta > 0) {
      const z = noise();
      if (z.length !== n) throw new Error('eta > 0 needs variance noise of the sample size');
      for (let i = 0; i < n; i++) prev[i] = prev[i]! + std * z[i]!;
    }
    return { prevSample: prev, predOriginalSample: x0 };
  }
}

/** numpy's round(): half to even */
export function roundHalfEven(v: number): number {
  const r = Math.round(v);
  return Math.abs(v % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}
