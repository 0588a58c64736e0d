/**
 * What the pipeline asks of a scheduler, in diffusers' shape (schedulers/scheduling_utils.py):
 * a config read once, set_timesteps, the initial noise sigma, scale_model_input, and a step
 * that returns the previous sample and the predicted x0. Every scheduler is called the
 * same way; a new one is a file implementing this plus one line in the registry (index.ts).
 *
 * Unlike diffusers, step and scaleModelInput take the step index (the position in the
 * timesteps setTimesteps returned) rather than keeping it as state: one scheduler steps
 * every model of an AMDM job in lockstep, so an internal step counter would advance once
 * per model.
 */
import type { NoiseSchedule, SchedulerConfig } from './config.ts';

/** diffusers' extra step kwargs (prepare_extra_step_kwargs): each scheduler reads what it uses. */
export interface SchedulerStepOptions {
  /** DDIM's eta: 0 is deterministic; schedulers without one ignore it */
  eta: number;
  /** this step's variance noise, the role of diffusers' generator; drawn only by a scheduler that adds noise */
  noise: () => Float32Array;
}

export interface SchedulerOutput {
  prevSample: Float32Array;
  predOriginalSample: Float32Array;
}

export interface Scheduler {
  readonly config: SchedulerConfig;
  /** the training noise schedule (betas, alphas, alphas_cumprod); AMDM's deviation step reads its alphas */
  readonly schedule: NoiseSchedule;
  /** the timesteps the UNet sees, one per inference step */
  setTimesteps(numInferenceSteps: number): number[];
  /** the initial latent is standard noise times this */
  readonly initNoiseSigma: number;
  /** what the UNet sees at step `stepIndex` */
  scaleModelInput(sample: Float32Array, stepIndex: number): Float32Array;
  step(modelOutput: Float32Array, stepIndex: number, sample: Float32Array, options: SchedulerStepOptions): SchedulerOutput;
}

export type SchedulerFactory = (config: SchedulerConfig) => Scheduler;
