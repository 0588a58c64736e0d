import { afterEach, describe, expect, it } from 'vitest';
import type { JobSpec } from '../shared/contract/index.ts';
import { EngineInputError, type EngineProgress } from './engine/types.ts';
import { SamplerCrashedError, SamplerPool, SamplerThread } from './sampler-thread.ts';

const FIXTURE = new URL('./sampler-thread.fixture.ts', import.meta.url).href;
const spec = (prompt: string, steps: number): JobSpec => ({
  models: [{ id: 'fixture', role: 'base', prompt, negative_prompt: '', guidance_scale: 7.5, grounding: [], reference_image: null, weight: 1, p: 1 }],
  aggregation: { window: [1, 3], clamp: false, weights: 'single' },
  sampler: { steps, seed: 1, width: 64, height: 64, scheduler: 'ddim', eta: 0 },
  outputs: { images: 1, per_model: false, latents: false },
  estimate: { unet_evals: steps },
});

const engines: { dispose(): Promise<void> }[] = [];
afterEach(async () => {
  await Promise.allSettled(engines.splice(0).map((e) => e.dispose()));
});

function thread(stepMs = 20) {
  const t = new SamplerThread({ engine: { module: FIXTURE, options: { stepMs } } });
  engines.push(t);
  return t;
}

describe('SamplerThread', () => {
  it('runs the engine in a thread while the main event loop stays free', async () => {
    const t = thread(30);
    expect((await t.catalog()).map((m) => m.id)).toEqual(['fixture']);
    let ticks = 0;
    const timer = setInterval(() => ticks++, 10);
    const progress: EngineProgress[] = [];
    const result = await t.generate(spec('ok', 10), { onProgress: (p) => progress.push(p), referenceImages: [new Uint8Array([9, 9])] });
    clearInterval(timer);
    expect(result.outputs[0]!.bytes).toEqual(new Uint8Array([9, 9]));
    expect(progress.map((p) => p.step)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    // ~300 ms of blocked sampling: a blocked main thread would have ticked about never
    expect(ticks).toBeGreaterThan(5);
  });

  it('cancels a step loop that never yields, through the shared flag', async () => {
    const t = thread(20);
    const ctl = new AbortController();
    const steps: number[] = [];
    const run = t.generate(spec('ok', 500), { signal: ctl.signal, onProgress: (p) => { steps.push(p.step); if (p.step === 3) ctl.abort('canceled'); } });
    await expect(run).rejects.toMatchObject({ name: 'AbortError' });
    expect(Math.max(...steps)).toBeLessThan(20);
  });

  it('carries EngineInputError across with its field', async () => {
    const t = thread();
    const err = await t.generate(spec('input', 1)).catch((e) => e);
    expect(err).toBeInstanceOf(EngineInputError);
    expect(err).toMatchObject({ message: 'prompt is not allowed', field: 'models[0].prompt' });
  });

  it('a crashed thread fails the call as SamplerCrashedError, and the next call gets a new thread', async () => {
    const t = thread();
    await expect(t.generate(spec('crash', 1))).rejects.toBeInstanceOf(SamplerCrashedError);
    const ok = await t.generate(spec('ok', 2));
    expect(ok.unetEvals).toBe(2);
  });

  it('a generate that ignores the abort is ended by terminating its thread after the grace time', async () => {
    const t = new SamplerThread({ engine: { module: FIXTURE, options: { stepMs: 5 } }, abortGraceMs: 300 });
    engines.push(t);
    await t.catalog();
    const ctl = new AbortController();
    const run = t.generate(spec('hang', 1), { signal: ctl.signal });
    setTimeout(() => ctl.abort('canceled'), 100);
    await expect(run).rejects.toThrow(/did not stop within 300 ms/);
    expect((await t.generate(spec('ok', 2))).unetEvals).toBe(2); // a fresh thread
  });

  it('dispose ends the thread; later calls are refused', async () => {
    const t = thread();
    await t.catalog();
    expect(t.alive).toBe(true);
    await t.dispose();
    expect(t.alive).toBe(false);
    await expect(t.generate(spec('ok', 1))).rejects.toThrow(/disposed/);
  });

  it('SamplerPool runs jobs on separate threads at once', async () => {
    const meeting = new SharedArrayBuffer(4);
    const pool = new SamplerPool({ engine: { module: FIXTURE, options: { stepMs: 1, meeting } }, threads: 2 });
    engines.push(pool);
    // each job waits (up to 30 s) for the other to have started: a pool that ran them one
    // after the other fails them, however loaded the machine is
    const results = await Promise.all(['a', 'b'].map(() => pool.generate(spec('meet', 2))));
    expect(results.map((r) => r.unetEvals)).toEqual([2, 2]);
    expect(new Int32Array(meeting)[0]).toBe(2);
    expect(() => new SamplerPool({ engine: { module: FIXTURE }, threads: 0 })).toThrow(/option "threads"/);
  });
});
