/**
 * `npm run bench:engine`: the engine against the official schedule and the PyTorch
 * reference, measured side by side in one run (never a timed test).
 *
 * For N = 1, 2, 3 models and 20 and 50 steps it prints UNet evaluations, ms per image,
 * ms per image with the official schedule (every model runs every step), and the share of
 * wall time spent outside onnxruntime. Where /usr/bin/python3 has torch it also times the
 * PyTorch reference (tools/shapes/bench_torch.py) on the same inputs and thread count.
 * Then the cost of live previews (a frame after every step, against none; per picture against
 * one UNet call). The last line is one JSON object for the most models and steps, window 1-3.
 *
 *   npm run bench:engine -- [--threads 1] [--repeats 5]
 *   npm run bench:engine -- --models DIR --request JOB.json [--steps 10] [--repeats 1] [--warmup 0] [--no-previews] [--no-torch] [--no-arena]
 *
 * --models and --request run it on other packages (the full-size ones of
 * `npm run models:fullsize`): the request's first 1, 2, ... models at its size. --warmup 0
 * skips the untimed first run (sessions are built before timing either way).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { JobRequest, shapeJobRequest, type JobSpec } from '../shared/contract/index.ts';
import { createEngine } from '../gpu-runner/engine/index.ts';

const { values } = parseArgs({
  options: {
    threads: { type: 'string', default: '1' },
    repeats: { type: 'string', default: '5' },
    warmup: { type: 'string', default: '1' },
    steps: { type: 'string', default: '20,50' },
    'no-torch': { type: 'boolean' },
    'no-previews': { type: 'boolean' },
    'no-arena': { type: 'boolean' },
    models: { type: 'string' },
    request: { type: 'string' },
  },
});
const threads = Number(values.threads);
const repeats = Number(values.repeats);
const warmups = Number(values.warmup);
const stepCounts = values.steps!.split(',').map(Number);
const ROOT = fileURLToPath(new URL('../', import.meta.url));

const engine = await createEngine({ modelsDirs: [values.models ?? `${ROOT}models`], intraOpNumThreads: threads, interOpNumThreads: 1, ...(values['no-arena'] ? { cpuMemArena: false } : {}) });
const tLoad = performance.now();
await engine.warmUp();
const loadMs = performance.now() - tLoad;
const catalog = await engine.catalog();
const example = JSON.parse(readFileSync(values.request ?? `${ROOT}examples/base-layout-style.json`, 'utf8')) as { models: unknown[]; sampler?: Record<string, unknown> };
console.log(`models loaded in ${round(loadMs)} ms: ${catalog.map((m) => m.id).join(', ')}`);

function spec(n: number, steps: number): JobSpec {
  const { seed: _, steps: __, ...sampler } = example.sampler ?? {};
  const body = { models: example.models.slice(0, n), aggregation: { window: [1, 3] }, sampler: { ...sampler, steps, seed: 7 } };
  const shaped = shapeJobRequest(JobRequest.parse(body), catalog, { randomSeed: () => 7 });
  if (!shaped.ok) throw new Error(JSON.stringify(shaped.errors));
  return shaped.spec;
}

async function time(s: JobSpec, officialSchedule: boolean): Promise<{ ms: number; evals: number; outside: number; msPerEval: number }> {
  for (let w = 0; w < warmups; w++) await engine.generate(s, { officialSchedule }); // caches hot
  const runs: { ms: number; evals: number; outside: number; msPerEval: number }[] = [];
  for (let r = 0; r < repeats; r++) {
    const res = await engine.generate(s, { officialSchedule });
    runs.push({ ms: res.timings.totalMs, evals: res.unetEvals, outside: res.timings.outsideOnnxMs / res.timings.totalMs, msPerEval: (res.timings.unetMs ?? NaN) / res.unetEvals });
  }
  runs.sort((a, b) => a.ms - b.ms);
  return runs[Math.floor(runs.length / 2)]!; // median
}

function torchAvailable(): boolean {
  if (values['no-torch']) return false;
  try {
    execFileSync('/usr/bin/python3', ['-c', 'import torch, onnx'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

function torchMs(n: number, steps: number): number {
  const out = execFileSync('/usr/bin/python3', [`${ROOT}tools/shapes/bench_torch.py`, '--models', String(n), '--steps', String(steps), '--threads', String(threads), '--repeats', String(Math.max(3, Math.min(repeats, 5)))], {
    encoding: 'utf8',
    env: { ...process.env, OMP_NUM_THREADS: String(threads), OPENBLAS_NUM_THREADS: '1' },
  });
  return (JSON.parse(out.trim().split('\n').at(-1)!) as { ms_per_image: number }).ms_per_image;
}

const withTorch = torchAvailable();
console.log(`engine benchmark: ${threads} intra-op thread(s), median of ${repeats} runs; PyTorch reference ${withTorch && !values.request ? 'timed' : values['no-torch'] ? 'skipped (--no-torch)' : values.request ? 'skipped (only the shapes family has one)' : 'skipped (no torch in /usr/bin/python3)'}`);
console.log('models steps | unet_evals official_evals | ms/image official_ms/image speedup | outside_ort ms/unet_eval | torch_ms/image speedup_vs_torch');
let last: Record<string, unknown> = {};
for (let n = 1; n <= Math.min(3, example.models.length); n++) {
  for (const steps of stepCounts) {
    const ours = await time(spec(n, steps), false);
    const official = await time(spec(n, steps), true);
    const torch = withTorch && !values.request ? torchMs(n, steps) : null;
    const row = {
      models: n,
      steps,
      unet_evals: ours.evals,
      official_unet_evals: official.evals,
      ms_per_unet_eval: round(ours.msPerEval),
      ms_per_image: round(ours.ms),
      official_ms_per_image: round(official.ms),
      speedup_vs_official: round(official.ms / ours.ms, 2),
      outside_ort_fraction: round(ours.outside, 4),
      torch_ms_per_image: torch === null ? null : round(torch),
      speedup_vs_torch: torch === null ? null : round(torch / ours.ms, 2),
    };
    console.log(
      `${n} ${steps} | ${ours.evals} ${official.evals} | ${row.ms_per_image} ${row.official_ms_per_image} ${row.speedup_vs_official}x | ${row.outside_ort_fraction} ${row.ms_per_unet_eval} | ${row.torch_ms_per_image ?? '-'} ${row.speedup_vs_torch ?? '-'}`,
    );
    last = row;
  }
}
// live previews: a VAE decode of every active model's x0 estimate per frame. Measured with a
// frame after every step (the worst case; the runner asks for one every 500 ms at most)
// against the same job without previews, and per frame against one UNet call.
for (const size of values['no-previews'] ? [] : [32, 64]) {
  const s = { ...spec(3, 20), sampler: { ...spec(3, 20).sampler, width: size, height: size } };
  await engine.generate(s, { preview: { everyMs: 0, onFrame: () => {} } });
  const plain: number[] = [];
  const framed: number[] = [];
  let frames = 0;
  let pictures = 0;
  let evals = 0;
  for (let r = 0; r < repeats; r++) {
    const a = await engine.generate(s);
    plain.push(a.timings.totalMs);
    evals = a.unetEvals;
    frames = 0;
    pictures = 0;
    const b = await engine.generate(s, { preview: { everyMs: 0, onFrame: (f) => { frames++; pictures += f.models.length; } } });
    framed.push(b.timings.totalMs);
  }
  const median = (v: number[]) => [...v].sort((x, y) => x - y)[Math.floor(v.length / 2)]!;
  const perEval = median(plain) / evals;
  const perPicture = (median(framed) - median(plain)) / pictures;
  console.log(
    `previews ${size}x${size}, 3 models, 20 steps: ${round(median(plain))} ms without, ${round(median(framed))} ms with a frame every step (${frames} frames, ${pictures} pictures); ` +
      `${round(perPicture, 2)} ms per picture = ${round(perPicture / perEval, 3)} of a UNet call (${round(perEval, 2)} ms)`,
  );
}

await engine.dispose();
console.log(JSON.stringify(last));

function round(v: number, digits = 1): number {
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}
