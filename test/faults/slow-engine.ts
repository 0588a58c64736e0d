/**
 * A test double of the Engine for the fault tests, loaded in the runner's sampler threads
 * (also in a child process). Each step blocks its thread for `stepMs`, the way an
 * onnxruntime call does; the output is a real PNG of the requested size. It keeps no
 * state between jobs, so a job re-run after a crash produces the same bytes.
 */
import { encode } from 'fast-png';
import type { JobSpec, ModelInfo } from '../../shared/contract/index.ts';
import type { Engine, EngineResult, GenerateOptions } from '../../gpu-runner/engine/types.ts';

export function createEngine(options: { stepMs?: number } = {}): Engine {
  const stepMs = options.stepMs ?? 20;
  return {
    async catalog(): Promise<ModelInfo[]> {
      // the shapes family's three kinds of model (the double ignores their conditions)
      const model = (id: string, conditions: Partial<ModelInfo['conditions']> = {}): ModelInfo => ({
        id,
        description: 'test double',
        ecosystem: 'shapes-v1',
        latent: { channels: 4, vae_scale_factor: 4 },
        sizes: { default: [64, 64], min: 32, max: 128, multiple: 16 },
        conditions: { prompt: { max_tokens: 32 }, grounding: null, reference_image: null, ...conditions },
        schedulers: ['ddim', 'euler'],
      });
      return [model('shapes-base'), model('shapes-layout', { grounding: { max_objects: 4 } }), model('shapes-style', { reference_image: { width: 32, height: 32 } })];
    },
    async generate(spec: JobSpec, opts: GenerateOptions = {}): Promise<EngineResult> {
      const { steps, width, height, seed } = spec.sampler;
      const images = spec.outputs.images;
      const outputs: EngineResult['outputs'] = [];
      for (let j = 0; j < images; j++) {
        for (let i = 0; i < steps; i++) {
          if (opts.signal?.aborted) throw new DOMException('canceled', 'AbortError');
          const until = Date.now() + stepMs;
          while (Date.now() < until) {
            /* a blocking native call */
          }
          // yield like the real engine does between session runs
          await new Promise((r) => setImmediate(r));
          opts.onProgress?.({ image: j + 1, images, step: i + 1, total: steps, phase: 'base_only' });
        }
        const px = new Uint8Array(width * height * 3).map((_, k) => (k * 7 + seed + j) & 255);
        outputs.push({ source: 'aggregated', index: j, kind: 'image', contentType: 'image/png', bytes: encode({ width, height, data: px, channels: 3 }), width, height });
      }
      return { outputs, unetEvals: steps * images, timings: { loadMs: 0, totalMs: steps * images * stepMs, onnxMs: steps * images * stepMs, outsideOnnxMs: 0 } };
    },
    async dispose() {},
  };
}
