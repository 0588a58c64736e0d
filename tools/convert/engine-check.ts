/**
 * Loads one converted package through the engine (the runner's own code path: package
 * checks, session checks, a short DDIM run) and prints what it saw as one JSON line.
 * The converter tests call it on a converted plain SD package.
 *
 *   npx tsx tools/convert/engine-check.ts MODELS_DIR PACKAGE_FOLDER [STEPS]
 *
 * MODELS_DIR is scanned as the runner scans it (every subfolder must be a package).
 */
import { basename, join, resolve } from 'node:path';
import { createEngine, readModelPackage } from '../../gpu-runner/engine/index.ts';

const [root, folder] = process.argv.slice(2);
if (!root || !folder) {
  console.error('usage: tsx tools/convert/engine-check.ts MODELS_DIR PACKAGE_FOLDER [STEPS]');
  process.exit(2);
}
const steps = Number(process.argv[4] ?? 2);
const pkg = await readModelPackage(join(resolve(root), folder));
const engine = await createEngine({ modelsDirs: [resolve(root)], intraOpNumThreads: 1 });
try {
  const [w, h] = pkg.sizes.default;
  const r = await engine.generate({
    models: [{ id: pkg.id, role: 'base', prompt: 'a red circle', negative_prompt: '', guidance_scale: 7.5, grounding: [], reference_image: null, weight: 1, p: 0 }],
    aggregation: { window: [1, 3], clamp: false, weights: 'single' },
    sampler: { steps, seed: 1, width: w, height: h, scheduler: 'ddim', eta: 0 },
    outputs: { images: 1, per_model: false, latents: true },
    estimate: { unet_evals: steps },
  });
  const latent = r.outputs.find((o) => o.kind === 'latent')!.bytes;
  const values = new Float32Array(latent.buffer, latent.byteOffset, latent.byteLength / 4);
  const image = r.outputs.find((o) => o.kind === 'image')!;
  console.log(
    JSON.stringify({
      id: pkg.id,
      folder: basename(pkg.dir),
      ecosystem: pkg.ecosystem,
      sizes: pkg.sizes,
      unet_evals: r.unetEvals,
      image: { contentType: image.contentType, width: image.width, height: image.height, bytes: image.bytes.length },
      latent_finite: values.every((v) => Number.isFinite(v)),
      latent_abs_mean: values.reduce((a, v) => a + Math.abs(v), 0) / values.length,
    }),
  );
} finally {
  await engine.dispose();
}
