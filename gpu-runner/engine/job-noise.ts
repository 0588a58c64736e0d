/**
 * Where a job's random numbers come from (sampler.noise): the initial latents of every model
 * and, for a scheduler that adds noise (DDIM with eta > 0), the variance noise of every step.
 *
 * - "amdm" (the default): the engine's own generator (noise.ts), an independent stream per
 *   (seed, image, model) and per (seed, image, step, model), so no model's numbers depend on
 *   which other models run or stop.
 * - "torch": what `torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed + j))`
 *   draws for image j (torch-generator.ts, bit for bit), one generator per image shared by the
 *   models, in the order diffusers pipelines and the official AMDM code draw: first the
 *   initial latents, randn([1, C, h, w]) once per model in request order; then, when the
 *   scheduler adds noise, at every step in timestep order one randn of the latent's shape per
 *   model in request order (DDIMScheduler.step draws after the model call, at every step).
 *   The official code runs every model to the last step, so the draws of a step are made for
 *   every model even when the engine has stopped the auxiliaries after the window: the base
 *   model gets the same numbers either way, and its image stays bit-identical.
 *
 * Solo runs (outputs.solo) replay the same stream on a second generator, so each model run
 * alone gets, step for step, the noise it had in the aggregated run.
 */
import type { JobSpec } from '../../shared/contract/index.ts';
import { etaNoise, gaussianNoise } from './noise.ts';
import { TorchCpuGenerator } from './torch-generator.ts';

export interface JobNoise {
  /** image j's initial latent of every model (spec order), standard normal */
  initial(image: number): Float32Array[];
  /**
   * the variance noise of model k (spec order) at step i of image j in the aggregated run;
   * asked in step order, each (step, model) at most once
   */
  eta(image: number, step: number, model: number): Float32Array;
  /** the same noise for the solo run of model k (outputs.solo), asked in step order */
  soloEta(image: number, step: number, model: number): Float32Array;
}

export function jobNoise(spec: JobSpec, latentShape: readonly [number, number, number]): JobNoise {
  const n = latentShape[0] * latentShape[1] * latentShape[2];
  const seed = spec.sampler.seed;
  const N = spec.models.length;
  if ((spec.sampler.noise ?? 'amdm') === 'amdm') {
    return {
      initial: (j) => spec.models.map((_, k) => gaussianNoise(seed, j, k, n)),
      eta: (j, i, k) => etaNoise(seed, j, i, k, n),
      soloEta: (j, i, k) => etaNoise(seed, j, i, k, n),
    };
  }
  // spec indices in the order the request listed the models
  const order = spec.models.map((m, k) => ({ k, r: m.request_index ?? k })).sort((a, b) => a.r - b.r).map((e) => e.k);
  const shape = [1, ...latentShape];
  /** one image's stream: the initial draws, then the steps' draws one step at a time */
  class Stream {
    private readonly gen: TorchCpuGenerator;
    private step = -1;
    private drawn: Float32Array[] = [];
    readonly initial: Float32Array[] = new Array(N);

    constructor(image: number) {
      this.gen = new TorchCpuGenerator(BigInt(seed) + BigInt(image));
      for (const k of order) this.initial[k] = this.gen.randn(shape);
    }

    at(i: number, k: number): Float32Array {
      if (i < this.step) throw new Error(`torch noise: step ${i} was asked after step ${this.step}; the stream only moves forward`);
      while (this.step < i) {
        this.step++;
        this.drawn = new Array(N);
        for (const kk of order) this.drawn[kk] = this.gen.randn(shape);
      }
      return this.drawn[k]!;
    }
  }
  let current: { image: number; stream: Stream } | null = null;
  // the solo runs go one model after another, each through its steps in order
  let solo: { key: string; stream: Stream } | null = null;
  return {
    initial(j) {
      current = { image: j, stream: new Stream(j) };
      return current.stream.initial;
    },
    eta(j, i, k) {
      if (current?.image !== j) current = { image: j, stream: new Stream(j) };
      return current.stream.at(i, k);
    },
    soloEta(j, i, k) {
      const key = `${j}/${k}`;
      if (solo?.key !== key) solo = { key, stream: new Stream(j) };
      return solo.stream.at(i, k);
    },
  };
}
