/**
 * A test double of the engine for sampler-thread.test.ts, loaded inside the worker thread
 * (it must be a module file: the thread imports it by URL). Each step busy-waits, blocking
 * the thread the way onnxruntime's run() does.
 */
import type { JobSpec, ModelInfo } from '../shared/contract/index.ts';
import { EngineInputError, type Engine, type EngineResult, type GenerateOptions } from './engine/types.ts';

export function createEngine(options: { stepMs: number; meeting?: SharedArrayBuffer }): Engine {
  let disposed = false;
  return {
    async catalog(): Promise<ModelInfo[]> {
      return [{ id: 'fixture', description: 'in a thread', ecosystem: 'x', latent: { channels: 4, vae_scale_factor: 4 }, sizes: { default: [64, 64], min: 32, max: 64, multiple: 16 }, conditions: { prompt: { max_tokens: 8 }, grounding: null, reference_image: null }, schedulers: ['ddim'] }];
    },
    async generate(spec: JobSpec, opts: GenerateOptions = {}): Promise<EngineResult> {
      if (disposed) throw new Error('disposed');
      const prompt = spec.models[0]!.prompt;
      if (prompt === 'input') throw new EngineInputError('prompt is not allowed', 'models[0].prompt');
      if (prompt === 'crash') process.exit(3); // in a worker thread this ends only the thread
      if (prompt === 'hang') for (;;) {} // a native call that never returns, deaf to any abort
      if (prompt === 'meet') {
        // every thread of the pool shares `meeting` (workerData): a job returns only once the
        // other has started, so the pool passes this only when it runs both at the same time
        const met = new Int32Array(options.meeting!);
        Atomics.add(met, 0, 1);
        Atomics.notify(met, 0);
        const deadline = Date.now() + 30_000;
        while (Atomics.load(met, 0) < 2) {
          if (Date.now() > deadline) throw new Error('the other job never started while this one ran');
          Atomics.wait(met, 0, 1, 100);
        }
      }
      const steps = spec.sampler.steps;
      // fully synchronous between steps: only the shared flag can stop it
      for (let i = 0; i < steps; i++) {
        if (opts.signal?.aborted) throw new DOMException('canceled', 'AbortError');
        const until = Date.now() + options.stepMs;
        while (Date.now() < until) {
          /* blocking, like a native call */
        }
        opts.onProgress?.({ image: 1, images: 1, step: i + 1, total: steps, phase: 'base_only' });
      }
      const ref = opts.referenceImages?.[0];
      return {
        outputs: [{ source: 'aggregated', index: 0, kind: 'image', contentType: 'image/png', bytes: ref ?? new Uint8Array([1, 2, 3]), width: 64, height: 64 }],
        unetEvals: steps,
        timings: { loadMs: 0, totalMs: 1, onnxMs: 1, outsideOnnxMs: 0 },
      };
    },
    async dispose() {
      disposed = true;
    },
  };
}
