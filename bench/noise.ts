/**
 * `npx tsx bench/noise.ts`: one SD-sized latent (1x4x64x64) of initial noise, torch-compatible
 * (TorchCpuGenerator.randn) beside the default generator (gaussianNoise), in ms per draw. Prints
 * the fastest and the median of 40 batches of 10 draws after 50 warm-up draws: on a shared
 * machine the minimum is the cost, the median shows the contention.
 */
import { gaussianNoise } from '../gpu-runner/engine/noise.ts';
import { TorchCpuGenerator } from '../gpu-runner/engine/torch-generator.ts';

function time(draw: () => void): { min: number; median: number } {
  for (let i = 0; i < 50; i++) draw();
  const perDraw: number[] = [];
  for (let b = 0; b < 40; b++) {
    const t0 = performance.now();
    for (let i = 0; i < 10; i++) draw();
    perDraw.push((performance.now() - t0) / 10);
  }
  perDraw.sort((a, b) => a - b);
  return { min: perDraw[0]!, median: perDraw[20]! };
}

const g = new TorchCpuGenerator(0);
let seed = 0;
const rows = {
  'torch (TorchCpuGenerator.randn)': time(() => g.randn([1, 4, 64, 64])),
  'default (gaussianNoise)': time(() => gaussianNoise(seed++, 0, 0, 4 * 64 * 64)),
};
for (const [name, t] of Object.entries(rows)) console.log(`${name}: min ${t.min.toFixed(3)} ms, median ${t.median.toFixed(3)} ms per 1x4x64x64 draw`);
