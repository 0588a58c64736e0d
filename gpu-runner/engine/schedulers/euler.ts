/**
 * Euler (Karras et al. 2022, Algorithm 2 without churn) with diffusers'
 * EulerDiscreteScheduler semantics, for single-model jobs. Its latents are sigma-scaled,
 * so AMDM's deviation step (defined on DDIM/VP latents) is never run on them; request
 * shaping rejects aggregation with this scheduler.
 */
import { noiseSchedule, type NoiseSchedule, type SchedulerConfig } from './config.ts';
import { roundHalfEven } from './ddim.ts';
import type { Scheduler, SchedulerOutput } from './scheduler.ts';

export class EulerDiscreteScheduler implements Scheduler {
  readonly schedule: NoiseSchedule;
  /** sigma of every training timestep */
  readonly trainSigmas: Float64Array;
  timesteps: number[] = [];
  sigmas: number[] = [];

  constructor(readonly config: SchedulerConfig) {
    this.schedule = noiseSchedule(config);
    const acp = this.schedule.alphasCumprod;
    this.trainSigmas = new Float64Array(acp.length);
    for (let i = 0; i < acp.length; i++) this.trainSigmas[i] = Math.fround(Math.sqrt((1 - acp[i]!) / acp[i]!));
  }

  setTimesteps(numInferenceSteps: number): number[] {
    const T = this.config.num_train_timesteps;
    if (!Number.isInteger(numInferenceSteps) || numInferenceSteps < 1 || numInferenceSteps > T) {
      throw new Error(`steps is ${numInferenceSteps}; allowed: an integer from 1 to ${T}`);
    }
    const S = numInferenceSteps;
    let ts: number[];
    switch (this.config.timestep_spacing) {
      case 'linspace':
        ts = Array.from({ length: S }, (_, i) => Math.fround(S === 1 ? 0 : ((T - 1) * i) / (S - 1))).reverse();
        break;
      case 'leading': {
        const ratio = Math.floor(T / S);
        ts = Array.from({ length: S }, (_, i) => roundHalfEven(i * ratio) + this.config.steps_offset).reverse();
        break;
      }
      case 'trailing': {
        const ratio = T / S;
        ts = Array.from({ length: S }, (_, i) => roundHalfEven(T - i * ratio) - 1);
        break;
      }
    }
    this.timesteps = ts;
    this.sigmas = [...ts.map((t) => Math.fround(this.interpSigma(t))), 0];
    return ts;
  }

  /** np.interp over the training sigmas */
  private interpSigma(t: number): number {
    const s = this.trainSigmas;
    if (t <= 0) return s[0]!;
    if (t >= s.length - 1) return s[s.length - 1]!;
    const lo = Math.floor(t);
    const f = t - lo;
    return s[lo]! * (1 - f) + s[lo + 1]! * f;
  }

  get initNoiseSigma(): number {
    const max = Math.max(...this.sigmas);
    return this.config.timestep_spacing === 'leading' ? Math.sqrt(max * max + 1) : max;
  }

  /** the UNet sees sample / sqrt(sigma^2 + 1) */
  scaleModelInput(sample: Float32Array, stepIndex: number): Float32Array {
    const sigma = this.sigmas[stepIndex]!;
    const c = 1 / Math.sqrt(sigma * sigma + 1);
    const out = new Float32Array(sample.length);
    for (let i = 0; i < sample.length; i++) out[i] = sample[i]! * c;
    return out;
  }

  /** Euler draws no noise (no churn), so it ignores eta and the noise stream */
  step(modelOutput: Float32Array, stepIndex: number, sample: Float32Array): SchedulerOutput {
    const sigma = this.sigmas[stepIndex]!;
    const next = this.sigmas[stepIndex + 1]!;
    const dt = next - sigma;
    const out = new Float32Array(sample.length);
    const predOriginalSample = new Float32Array(sample.length);
    for (let i = 0; i < sample.length; i++) {
      let x0: number;
      switch (this.config.prediction_type) {
        case 'epsilon':
          x0 = sample[i]! - sigma * modelOutput[i]!;
          break;
        case 'v_prediction':
          x0 = modelOutput[i]! * (-sigma / Math.sqrt(sigma * sigma + 1)) + sample[i]! / (sigma * sigma + 1);
          break;
        case 'sample':
          x0 = modelOutput[i]!;
          break;
      }
      // the derivative takes x0 unrounded; predOriginalSample is only its float32 copy
      predOriginalSample[i] = x0;
      const derivative = (sample[i]! - x0) / sigma;
      out[i] = sample[i]! + derivative * dt;
    }
    return { prevSample: out, predOriginalSample };
  }
}
