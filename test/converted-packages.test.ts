/**
 * The converter's packages in the engine: test/fixtures/packages holds tiny random-weight
 * packages of every kind tools/convert writes (tools/convert/make_tiny.py: an SD1.x base, a
 * GLIGEN, an InteractDiffusion and an IP-Adapter sharing its text encoder and VAE). They
 * load, their conditions reach the UNet as the reference pipelines lay them out (grounding
 * and interactions with mask 0 in the unconditional half, scheduled sampling's gate,
 * CLIP-preprocessed reference images), and a three-model AMDM job runs end to end.
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { decode as decodePng, encode as encodePng } from 'fast-png';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JobRequest, shapeJobRequest, type JobSpec, type ModelInfo, type SpecModel } from '../shared/contract/index.ts';
import { createEngine, type AmdmEngine } from '../gpu-runner/engine/index.ts';
import { clipResizeCrop } from '../gpu-runner/engine/clip-preprocess.ts';
import { encodeConditions } from '../gpu-runner/engine/conditions/index.ts';
import { decodeImage } from '../gpu-runner/engine/image.ts';
import { LoadedModel, SessionCache } from '../gpu-runner/engine/loaded-model.ts';
import { checkOneEcosystem, readModelPackage } from '../gpu-runner/engine/model-package.ts';
import { OrtClock } from '../gpu-runner/engine/onnx.ts';

const PACKAGES = fileURLToPath(new URL('./fixtures/packages/', import.meta.url));
const KINDS = ['tiny-sd15', 'tiny-gligen', 'tiny-interactdiffusion', 'tiny-ip-adapter'];
const REFERENCE = readFileSync(new URL('./fixtures/clip-preprocess/landscape-upscale-300x200-rgb.png', import.meta.url));

type Box = [number, number, number, number];
const interaction = (subject: string, action: string, object: string, s: Box, o: Box) => ({ subject, subject_box: s, action, object, object_box: o });
const THREE = () => ({
  models: [
    { id: 'tiny-sd15', role: 'base', prompt: 'a red circle and a blue square' },
    {
      id: 'tiny-interactdiffusion',
      role: 'auxiliary',
      prompt: 'a circle near a square',
      interactions: [interaction('circle', 'near', 'square', [0.1, 0.1, 0.4, 0.4], [0.5, 0.5, 0.9, 0.9])],
    },
    { id: 'tiny-ip-adapter', role: 'auxiliary', prompt: 'a circle and a square', reference_image: { data: REFERENCE.toString('base64'), scale: 0.8 } },
  ],
  aggregation: { omega: 0.47, omega2: 0.5, window: [1, 3] },
  sampler: { steps: 6, seed: 11 },
});

let engine: AmdmEngine;
let catalog: ModelInfo[];
const cache = new SessionCache({ intraOpNumThreads: 1 });
const tmp = mkdtempSync(join(tmpdir(), 'amdm-converted-'));
beforeAll(async () => {
  engine = await createEngine({ modelsDirs: [PACKAGES], intraOpNumThreads: 1 });
  catalog = await engine.catalog();
});
afterAll(async () => {
  await engine.dispose();
  await cache.dispose();
  rmSync(tmp, { recursive: true, force: true });
});

function shape(body: unknown): JobSpec {
  const shaped = shapeJobRequest(JobRequest.parse(body), catalog, { randomSeed: () => 1 });
  if (!shaped.ok) throw new Error(JSON.stringify(shaped.errors));
  return shaped.spec;
}

const specModel = (id: string, extra: Partial<SpecModel> = {}): SpecModel => ({
  id,
  role: 'base',
  prompt: 'a circle',
  negative_prompt: '',
  guidance_scale: 7.5,
  grounding: [],
  reference_image: null,
  weight: 1,
  p: 0,
  ...extra,
});

describe('packages written by tools/convert', () => {
  it('load as one sd15 ecosystem, with the conditions their manifests declare', async () => {
    const pkgs = await Promise.all(KINDS.map((k) => readModelPackage(join(PACKAGES, k))));
    expect(pkgs.map((p) => p.ecosystem)).toEqual(['sd15', 'sd15', 'sd15', 'sd15']);
    checkOneEcosystem(pkgs);
    for (const p of pkgs) await LoadedModel.load(p, cache); // graphs checked against the manifests
    const byId = Object.fromEntries(catalog.map((m) => [m.id, m.conditions]));
    expect(byId['tiny-sd15']).toMatchObject({ grounding: null, interactions: null, reference_image: null, scheduled_sampling: null });
    expect(byId['tiny-gligen']).toMatchObject({ grounding: { max_objects: 30 }, interactions: null, scheduled_sampling: { beta: 0.3 } });
    expect(byId['tiny-interactdiffusion']).toMatchObject({ grounding: null, interactions: { max_interactions: 30 }, scheduled_sampling: { beta: 1 } });
    expect(byId['tiny-ip-adapter']).toMatchObject({ reference_image: { width: 32, height: 32 }, scheduled_sampling: null });
  });

  it('a three-model AMDM job (base, InteractDiffusion, IP-Adapter) runs, every model its own image', async () => {
    const spec = shape({ ...THREE(), outputs: { per_model: true } });
    expect(spec.models.map((m) => m.scheduled_sampling ?? null)).toEqual([null, { beta: 1 }, null]);
    const r = await engine.generate(spec);
    expect(r.unetEvals).toBe(spec.estimate.unet_evals);
    expect(r.outputs.map((o) => [o.source, o.width, o.height])).toEqual([
      ['aggregated', 64, 64],
      ['tiny-interactdiffusion', 64, 64],
      ['tiny-ip-adapter', 64, 64],
    ]);
    for (const o of r.outputs) expect(decodePng(o.bytes).width).toBe(64);
    expect(r.timings.unetMs).toBeGreaterThan(0);
    expect(r.timings.unetMs).toBeLessThanOrEqual(r.timings.onnxMs);
  });

  it('GLIGEN takes 30 objects', async () => {
    const grounding = Array.from({ length: 30 }, (_, j) => ({ phrase: j % 2 ? 'circle' : 'square', box: [0.01 * j, 0.01 * j, 0.01 * j + 0.3, 0.01 * j + 0.3] }));
    const spec = shape({ models: [{ id: 'tiny-sd15', role: 'base', prompt: 'shapes' }, { id: 'tiny-gligen', role: 'auxiliary', prompt: 'shapes', grounding }], sampler: { steps: 4, seed: 1 } });
    const r = await engine.generate(spec);
    expect(r.outputs[0]!.kind).toBe('image');
  });
});

describe('conditions as the reference pipelines lay them out', () => {
  it('interactions: rows in both CFG halves, mask 1 only in the conditional half, each phrase its pooled output', async () => {
    const m = await LoadedModel.load(await readModelPackage(join(PACKAGES, 'tiny-interactdiffusion')), cache);
    const given = [interaction('a dog', 'chasing', 'a ball', [0.1, 0.2, 0.3, 0.4], [0.5, 0.6, 0.7, 0.8]), interaction('a cat', 'chasing', 'a dog', [0.2, 0.2, 0.4, 0.4], [0.1, 0.1, 0.9, 0.9])];
    const { inputs, stepInputs } = await encodeConditions(m, specModel('tiny-interactdiffusion', { interactions: given, scheduled_sampling: { beta: 0.5 } }), 'models[0]', null, 10, new OrtClock());
    const K = 30;
    const get = (s: string) => inputs.get(`interactions.${s}`)!;
    expect(get('mask').dims).toEqual([2, K]);
    const mask = Array.from(get('mask').data);
    expect(mask.slice(0, K).every((v) => v === 0)).toBe(true);
    expect(mask.slice(K)).toEqual([1, 1, ...Array<number>(K - 2).fill(0)]);
    const boxes = Array.from(get('subject_boxes').data, (v) => Math.fround(v));
    for (const half of [0, 1]) {
      expect(boxes.slice((half * K) * 4, (half * K + 2) * 4)).toEqual([0.1, 0.2, 0.3, 0.4, 0.2, 0.2, 0.4, 0.4].map(Math.fround));
      expect(boxes.slice((half * K + 2) * 4, (half * K + 3) * 4)).toEqual([0, 0, 0, 0]);
    }
    expect(Array.from(get('object_boxes').data.slice(K * 4, K * 4 + 4), (v) => Math.fround(v))).toEqual([0.5, 0.6, 0.7, 0.8].map(Math.fround));
    // each phrase alone through the text encoder's pooled output
    const D = get('subject_phrase_embeds').dims[2]!;
    const pooled = async (p: string) => (await m.textEncoder.run({ input_ids: { data: m.tokenizer.encode(p).ids, dims: [1, m.tokenizer.maxLength] } })).pooler_output!.data;
    const row = (s: string, half: number, j: number) => Array.from(get(s).data.slice((half * K + j) * D, (half * K + j + 1) * D));
    const close = (a: number[], b: Float32Array) => a.every((v, i) => Math.abs(v - b[i]!) <= 1e-3 * Math.max(1, Math.abs(b[i]!)));
    for (const half of [0, 1]) {
      expect(close(row('subject_phrase_embeds', half, 0), await pooled('a dog'))).toBe(true);
      expect(close(row('object_phrase_embeds', half, 1), await pooled('a dog'))).toBe(true);
      expect(close(row('action_phrase_embeds', half, 1), await pooled('chasing'))).toBe(true);
      expect(close(row('subject_phrase_embeds', half, 1), await pooled('a cat'))).toBe(true);
      expect(row('subject_phrase_embeds', half, 2).every((v) => v === 0)).toBe(true);
    }
    // scheduled sampling: int(0.5 * 10) = 5 steps with the fusers on
    const gate = stepInputs.get('scheduled_sampling.gate')!;
    expect(Array.from({ length: 10 }, (_, i) => gate(i).data[0])).toEqual([1, 1, 1, 1, 1, 0, 0, 0, 0, 0]);
  });

  it('scheduled sampling: the fusers are on at step i iff i < int(beta × steps), the request\'s beta over the manifest\'s', async () => {
    const grounding = [{ phrase: 'circle', box: [0.1, 0.1, 0.5, 0.5] }];
    const latents = async (beta?: number) => {
      const body = { models: [{ id: 'tiny-gligen', role: 'base', prompt: 'a circle', grounding, ...(beta === undefined ? {} : { scheduled_sampling: { beta } }) }], sampler: { steps: 4, seed: 5 } };
      const spec = shape(body);
      const steps: Float32Array[] = [];
      await engine.generate(spec, { onStepLatents: (_, __, x) => steps.push(Float32Array.from(x[0]!)) });
      return { beta: spec.models[0]!.scheduled_sampling, steps };
    };
    const same = (a: Float32Array, b: Float32Array) => Buffer.from(a.buffer).equals(Buffer.from(b.buffer));
    const half = await latents(0.5); // on for steps 0, 1
    const all = await latents(1); // on for 0..3
    const quarter = await latents(0.25); // on for step 0
    const manifest = await latents(); // 0.3: int(1.2) = 1, as 0.25
    expect([half.beta, manifest.beta]).toEqual([{ beta: 0.5 }, { beta: 0.3 }]);
    expect([0, 1, 2, 3].map((i) => same(half.steps[i]!, all.steps[i]!))).toEqual([true, true, false, false]);
    expect([0, 1, 2, 3].map((i) => same(half.steps[i]!, quarter.steps[i]!))).toEqual([true, false, false, false]);
    expect([0, 1, 2, 3].map((i) => same(manifest.steps[i]!, quarter.steps[i]!))).toEqual([true, true, true, true]);
  });

  it('reference image: CLIP preprocessing (shorter side, bicubic, center crop) before the image encoder', async () => {
    const m = await LoadedModel.load(await readModelPackage(join(PACKAGES, 'tiny-ip-adapter')), cache);
    const ehs = async (png: Uint8Array) =>
      (await encodeConditions(m, specModel('tiny-ip-adapter', { reference_image: { data: Buffer.from(png).toString('base64'), scale: 1 } }), 'models[0]', null, 4, new OrtClock())).encoderHiddenStates;
    // the 32×32 crop the preprocessing makes of the 300×200 image gives the same tokens as the image
    const crop = clipResizeCrop(decodeImage(REFERENCE, 'r', { alpha: 'drop' }), { width: 32, height: 32 });
    const a = await ehs(REFERENCE);
    const b = await ehs(encodePng({ width: 32, height: 32, data: crop.data, channels: 3, depth: 8 }));
    expect(a.dims).toEqual([2, m.tokenizer.maxLength + 4, 32]);
    expect(Buffer.from(a.data.buffer).equals(Buffer.from(b.data.buffer))).toBe(true);
    // alpha is dropped, not composited: a transparent copy gives the same tokens
    const rgba = new Uint8Array(32 * 32 * 4);
    for (let i = 0; i < 32 * 32; i++) rgba.set([...crop.data.subarray(i * 3, i * 3 + 3), 0], i * 4);
    const c = await ehs(encodePng({ width: 32, height: 32, data: rgba, channels: 4, depth: 8 }));
    expect(Buffer.from(c.data.buffer).equals(Buffer.from(a.data.buffer))).toBe(true);
  });
});

describe('one ecosystem across VAE variants', () => {
  it('an optimum export with the ft-MSE VAE config (no scaling_factor, sample_size 256) is sd15 and aggregates with the converted ones', async () => {
    const root = join(tmp, 'ftmse');
    const dir = join(root, 'my-sd15-ftmse');
    for (const c of ['unet', 'text_encoder', 'vae_decoder', 'vae_encoder', 'tokenizer', 'scheduler']) cpSync(join(PACKAGES, 'tiny-sd15', c), join(dir, c), { recursive: true });
    for (const c of ['vae_decoder', 'vae_encoder']) {
      const cfgPath = join(dir, c, 'config.json');
      const cfg = JSON.parse(readFileSync(cfgPath, 'utf8')) as Record<string, unknown>;
      delete cfg.scaling_factor; // stabilityai/sd-vae-ft-mse's config predates the field
      writeFileSync(cfgPath, JSON.stringify({ ...cfg, _name_or_path: 'stabilityai/sd-vae-ft-mse', sample_size: 256 }));
    }
    writeFileSync(join(dir, 'model_index.json'), JSON.stringify({ _class_name: 'ORTStableDiffusionPipeline', unet: ['optimum', 'ORTModelUnet'] }));
    cpSync(join(PACKAGES, 'tiny-interactdiffusion'), join(root, 'tiny-interactdiffusion'), { recursive: true });
    cpSync(join(PACKAGES, 'tiny-sd15'), join(root, 'tiny-sd15'), { recursive: true });
    const pkg = await readModelPackage(dir);
    expect(pkg.manifestPath).toBeNull();
    expect(pkg.ecosystem).toBe('sd15');
    expect(pkg.vae.scalingFactor).toBe(0.18215);
    const e = await createEngine({ modelsDirs: [root], intraOpNumThreads: 1 });
    try {
      const cat = await e.catalog();
      const shaped = shapeJobRequest(
        JobRequest.parse({ models: [{ id: 'my-sd15-ftmse', role: 'base', prompt: 'a circle' }, { id: 'tiny-interactdiffusion', role: 'auxiliary', prompt: 'a circle' }], sampler: { steps: 4, seed: 2 } }),
        cat,
        { randomSeed: () => 1 },
      );
      expect(shaped.ok).toBe(true);
      if (shaped.ok) expect((await e.generate(shaped.spec)).outputs[0]!.kind).toBe('image');
    } finally {
      await e.dispose();
    }
  });
});
