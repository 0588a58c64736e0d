/**
 * The registry implements exactly the contract's scheduler names, and the pipeline calls
 * every scheduler through the Scheduler interface alone: a throwaway scheduler given to
 * the engine (no other file knows its name) runs a job, and copies of DDIM and Euler under
 * other names give the same bytes as the originals.
 */
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AGGREGATING_SCHEDULERS, JobRequest, SCHEDULER_NAMES, shapeJobRequest, type JobSpec } from '../../../shared/contract/index.ts';
import { createEngine, type AmdmEngine } from '../pipeline.ts';
import { EngineInputError, type EngineResult } from '../types.ts';
import { parseSchedulerConfig, type SchedulerConfig } from './config.ts';
import { DDIMScheduler } from './ddim.ts';
import { EulerDiscreteScheduler } from './euler.ts';
import { SCHEDULER_REGISTRY, type Scheduler, type SchedulerOutput, type SchedulerStepOptions } from './index.ts';

const MODELS = fileURLToPath(new URL('../../../models/', import.meta.url));

/** A scheduler no other file knows: DDIM's arithmetic, with every call it gets recorded. */
class ThrowawayScheduler implements Scheduler {
  static calls: string[] = [];
  private readonly ddim: DDIMScheduler;
  constructor(readonly config: SchedulerConfig) {
    this.ddim = new DDIMScheduler(config);
  }
  get schedule() {
    return this.ddim.schedule;
  }
  get initNoiseSigma(): number {
    ThrowawayScheduler.calls.push('initNoiseSigma');
    return 1;
  }
  setTimesteps(n: number): number[] {
    ThrowawayScheduler.calls.push(`setTimesteps ${n}`);
    return this.ddim.setTimesteps(n);
  }
  scaleModelInput(sample: Float32Array, stepIndex: number): Float32Array {
    ThrowawayScheduler.calls.push(`scaleModelInput ${stepIndex}`);
    return sample;
  }
  step(modelOutput: Float32Array, stepIndex: number, sample: Float32Array, options: SchedulerStepOptions): SchedulerOutput {
    ThrowawayScheduler.calls.push(`step ${stepIndex}`);
    return this.ddim.step(modelOutput, stepIndex, sample, options);
  }
}

describe('the scheduler registry', () => {
  it('implements exactly the names the contract accepts', () => {
    expect(Object.keys(SCHEDULER_REGISTRY).sort()).toEqual([...SCHEDULER_NAMES].sort());
  });

  it('every registered scheduler sets its timesteps and steps through the same interface', () => {
    const config = parseSchedulerConfig({}); // diffusers' defaults
    for (const name of SCHEDULER_NAMES) {
      const s = SCHEDULER_REGISTRY[name](config);
      const ts = s.setTimesteps(4);
      expect(ts, name).toHaveLength(4);
      const x = new Float32Array(8).fill(s.initNoiseSigma);
      const out = s.step(new Float32Array(8).fill(0.1), 0, s.scaleModelInput(x, 0), { eta: 0, noise: () => new Float32Array(8) });
      expect(out.prevSample, name).toHaveLength(8);
      expect(out.predOriginalSample, name).toHaveLength(8);
    }
  });
});

describe('the pipeline calls every scheduler the same way', () => {
  let engine: AmdmEngine;
  let spec: JobSpec;
  beforeAll(async () => {
    engine = await createEngine({
      modelsDirs: [MODELS],
      intraOpNumThreads: 1,
      schedulers: {
        ...SCHEDULER_REGISTRY,
        throwaway: (config) => new ThrowawayScheduler(config),
        'ddim-copy': (config) => new DDIMScheduler(config),
        'euler-copy': (config) => new EulerDiscreteScheduler(config),
      },
    });
    const body = { models: [{ id: 'shapes-base', role: 'base', prompt: 'a red circle' }], sampler: { steps: 4, seed: 3 }, outputs: { latents: true } };
    const shaped = shapeJobRequest(JobRequest.parse(body), await engine.catalog(), { randomSeed: () => 0 });
    if (!shaped.ok) throw new Error(JSON.stringify(shaped.errors));
    spec = shaped.spec;
  });
  afterAll(async () => engine.dispose());

  const withScheduler = (name: string, over: Partial<JobSpec['sampler']> = {}): JobSpec => ({ ...spec, sampler: { ...spec.sampler, ...over, scheduler: name as JobSpec['sampler']['scheduler'] } });
  const bytes = (r: EngineResult) => r.outputs.map((o) => Buffer.from(o.bytes).toString('base64'));

  it('a throwaway scheduler runs a job: set once, then scaled and stepped at every step', async () => {
    ThrowawayScheduler.calls = [];
    const r = await engine.generate(withScheduler('throwaway'));
    expect(r.unetEvals).toBe(4);
    expect(r.outputs.map((o) => o.kind)).toEqual(['image', 'latent']);
    expect(ThrowawayScheduler.calls).toEqual(['setTimesteps 4', 'initNoiseSigma', ...[0, 1, 2, 3].flatMap((i) => [`scaleModelInput ${i}`, `step ${i}`])]);
    // it is DDIM underneath, so it gives DDIM's bytes
    expect(bytes(r)).toEqual(bytes(await engine.generate(withScheduler('ddim'))));
  });

  it('copies of DDIM (with eta noise) and Euler under other names give the same bytes', async () => {
    expect(bytes(await engine.generate(withScheduler('ddim-copy', { eta: 0.5 })))).toEqual(bytes(await engine.generate(withScheduler('ddim', { eta: 0.5 }))));
    const euler = bytes(await engine.generate(withScheduler('euler')));
    expect(bytes(await engine.generate(withScheduler('euler-copy')))).toEqual(euler);
    expect(euler).not.toEqual(bytes(await engine.generate(withScheduler('ddim'))));
  });

  it('refuses a name it does not have, and aggregation with a scheduler the contract does not call VP', async () => {
    const allowed = [...SCHEDULER_NAMES, 'throwaway', 'ddim-copy', 'euler-copy'].join(', ');
    await expect(engine.generate(withScheduler('dpm'))).rejects.toThrow(`unknown scheduler "dpm"; allowed: ${allowed}`);
    const two: JobSpec = { ...withScheduler('ddim-copy'), models: [spec.models[0]!, { ...spec.models[0]!, role: 'auxiliary' }] };
    const err = await engine.generate(two).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EngineInputError);
    expect(err).toMatchObject({ field: 'sampler.scheduler', message: `aggregation needs the ${AGGREGATING_SCHEDULERS.join(' or ')} scheduler` });
  });
});
