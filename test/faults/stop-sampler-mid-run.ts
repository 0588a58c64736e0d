/**
 * A process that stops a sampler thread of the real engine (onnxruntime) in the middle of a
 * UNet call, the way a runner shuts down, then exits 0. Run by shutdown-mid-job.test.ts in a
 * child process: ending a worker thread while onnxruntime's native run() is in flight aborts
 * the whole process ("terminate called after throwing an instance of 'Napi::Error'", exit 134),
 * which would take a test worker with it.
 *
 *   node --import tsx test/faults/stop-sampler-mid-run.ts terminate|dispose
 */
import { fileURLToPath } from 'node:url';
import type { JobSpec } from '../../shared/contract/index.ts';
import { SamplerThread } from '../../gpu-runner/sampler-thread.ts';

const how = process.argv[2];
if (how !== 'terminate' && how !== 'dispose') throw new Error('usage: stop-sampler-mid-run.ts terminate|dispose');
const thread = new SamplerThread({
  engine: {
    module: new URL('../../gpu-runner/engine/index.ts', import.meta.url).href,
    options: { modelsDirs: [fileURLToPath(new URL('../../models', import.meta.url))], provider: 'cpu' },
  },
});
await thread.warmUp();
// 64×64: most of each step's wall time is inside the native UNet call
const spec: JobSpec = {
  models: [{ id: 'shapes-base', role: 'base', prompt: 'a red circle', negative_prompt: '', guidance_scale: 7.5, grounding: [], reference_image: null, weight: 1, p: 1 }],
  aggregation: { window: [1, 3], clamp: false, weights: 'single' },
  sampler: { steps: 100, seed: 1, width: 64, height: 64, scheduler: 'ddim', eta: 0 },
  outputs: { images: 1, per_model: false, latents: false },
  estimate: { unet_evals: 100 },
};
const controller = new AbortController();
let steps = 0;
let midway!: () => void;
const reached = new Promise<void>((r) => (midway = r));
const run = thread.generate(spec, { signal: controller.signal, onProgress: () => ++steps === 5 && midway() }).then(
  () => 'finished',
  (err: Error) => err.name,
);
await reached;
if (how === 'terminate') {
  // the runner's forced stop: abort the job, end the thread at once
  controller.abort('shutdown');
  await thread.terminate();
} else {
  // the runner's cleanup when a job is still in the thread
  await thread.dispose();
}
console.log(JSON.stringify({ stopped_after_steps: steps, generate: await run }));
process.exit(0);
