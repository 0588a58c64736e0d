/**
 * Every committed model package loads in onnxruntime and its graphs match its manifest;
 * a plain optimum-style export (no manifest) loads too; and broken packages are refused
 * with a message naming the file and the field.
 */
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { LoadedModel, SessionCache } from '../gpu-runner/engine/loaded-model.ts';
import { checkOneEcosystem, readModelPackage } from '../gpu-runner/engine/model-package.ts';
import { createEngine } from '../gpu-runner/engine/index.ts';

const MODELS = fileURLToPath(new URL('../models/', import.meta.url));
const packages = readdirSync(MODELS, { withFileTypes: true })
  .filter((e) => e.isDirectory() && existsSync(join(MODELS, e.name, 'amdm.json')))
  .map((e) => e.name);
const cache = new SessionCache({ intraOpNumThreads: 1 });
const tmp = mkdtempSync(join(tmpdir(), 'amdm-packages-'));
afterAll(async () => {
  await cache.dispose();
  rmSync(tmp, { recursive: true, force: true });
});

/** A writable copy of the built-in models, so one package can be broken on purpose. */
function copyModels(name: string): string {
  const dir = join(tmp, name);
  cpSync(MODELS, dir, { recursive: true });
  return dir;
}

function editJson(path: string, edit: (j: Record<string, any>) => void): void {
  const j = JSON.parse(readFileSync(path, 'utf8')) as Record<string, any>;
  edit(j);
  writeFileSync(path, JSON.stringify(j));
}

describe('committed model packages', () => {
  it('there are at least three, of one ecosystem', async () => {
    expect(packages).toEqual(expect.arrayContaining(['shapes-base', 'shapes-layout', 'shapes-style']));
    checkOneEcosystem(await Promise.all(packages.map((p) => readModelPackage(join(MODELS, p)))));
  });

  it.each(packages)('%s: loads, and its graphs match its manifest (names, dtypes, shapes)', async (name) => {
    const pkg = await readModelPackage(join(MODELS, name));
    const m = await LoadedModel.load(pkg, cache);
    const manifest = JSON.parse(readFileSync(join(MODELS, name, 'amdm.json'), 'utf8')) as { unet_inputs: { name: string; dtype: string; shape: (number | string)[] }[] };
    const inputs = [...m.unet.inputs.keys()].sort();
    expect(inputs).toEqual(['encoder_hidden_states', 'sample', 'timestep', ...manifest.unet_inputs.map((i) => i.name)].sort());
    for (const d of manifest.unet_inputs) {
      const g = m.unet.input(d.name);
      expect(g.type).toBe(d.dtype);
      expect(g.shape.length).toBe(d.shape.length);
      d.shape.forEach((dim, i) => typeof dim === 'number' && expect(g.shape[i]).toBe(dim));
    }
    expect(m.unet.outputNames).toContain('out_sample');
    expect(m.textEncoder.outputNames).toEqual(expect.arrayContaining(['last_hidden_state', 'pooler_output']));
    expect(m.vaeDecoder.input('latent_sample').type).toBe('float32');
  });

  it('checksums.json lists every model file with its sha256', async () => {
    const { createHash } = await import('node:crypto');
    const sums = JSON.parse(readFileSync(join(MODELS, 'checksums.json'), 'utf8')) as Record<string, string>;
    expect(Object.keys(sums).length).toBeGreaterThan(10);
    for (const [rel, sha] of Object.entries(sums)) expect(createHash('sha256').update(readFileSync(join(MODELS, rel))).digest('hex'), rel).toBe(sha);
  });
});

describe('a plain optimum export (no manifest) of a built-in model', () => {
  it('loads with optimum model_index.json and generates; its ecosystem is inferred from its configs', async () => {
    const root = join(tmp, 'optimum');
    const dir = join(root, 'my-finetune');
    for (const c of ['unet', 'text_encoder', 'vae_decoder', 'vae_encoder', 'tokenizer', 'scheduler']) {
      const from = c === 'unet' ? join(MODELS, 'shapes-base', 'unet') : join(MODELS, 'shapes-base', c);
      cpSync(from, join(dir, c), { recursive: true });
    }
    // as optimum-cli writes it for an SD1.5 export
    writeFileSync(
      join(dir, 'model_index.json'),
      JSON.stringify({
        _class_name: 'ORTStableDiffusionPipeline',
        _diffusers_version: '0.30.0',
        feature_extractor: [null, null],
        requires_safety_checker: false,
        safety_checker: [null, null],
        scheduler: ['diffusers', 'DDIMScheduler'],
        text_encoder: ['optimum', 'ORTModelTextEncoder'],
        tokenizer: ['transformers', 'CLIPTokenizer'],
        unet: ['optimum', 'ORTModelUnet'],
        vae_decoder: ['optimum', 'ORTModelVaeDecoder'],
        vae_encoder: ['optimum', 'ORTModelVaeEncoder'],
      }),
    );
    const pkg = await readModelPackage(dir);
    expect(pkg.manifestPath).toBeNull();
    expect(pkg.id).toBe('my-finetune');
    // same latent channels, VAE scale and betas as the shapes family, so it joins it
    expect(pkg.ecosystem).toBe('shapes-v1');
    const engine = await createEngine({ modelsDirs: [root], intraOpNumThreads: 1 });
    try {
      const [info] = await engine.catalog();
      expect(info!.conditions.grounding).toBeNull();
      const r = await engine.generate({
        models: [{ id: 'my-finetune', role: 'base', prompt: 'a red circle', negative_prompt: '', guidance_scale: 7.5, grounding: [], reference_image: null, weight: 1, p: 0 }],
        aggregation: { window: [1, 3], clamp: false, weights: 'single' },
        sampler: { steps: 4, seed: 1, width: 32, height: 32, scheduler: 'ddim', eta: 0 },
        outputs: { images: 1, per_model: false, latents: false },
        estimate: { unet_evals: 4 },
      });
      expect(r.outputs[0]!.contentType).toBe('image/png');
    } finally {
      await engine.dispose();
    }
  });
});

describe('other exporters\' dtypes: fp16 graph, float scalar timestep, int64 input_ids', () => {
  it('shapes-base-fp16 declares them, and reproduces shapes-base within fp16 rounding', async () => {
    const m = await LoadedModel.load(await readModelPackage(join(MODELS, 'shapes-base-fp16')), cache);
    expect(m.unet.input('sample').type).toBe('float16');
    expect(m.unet.input('encoder_hidden_states').type).toBe('float16');
    expect(m.timestepInput).toMatchObject({ type: 'float32', shape: [] });
    expect(m.textEncoder.input('input_ids').type).toBe('int64');
    const engine = await createEngine({ modelsDirs: [MODELS], intraOpNumThreads: 1 });
    try {
      const spec = (id: string) => ({
        models: [{ id, role: 'base' as const, prompt: 'a red circle and a blue square', negative_prompt: '', guidance_scale: 7.5, grounding: [], reference_image: null, weight: 1, p: 0 }],
        aggregation: { window: [1, 3] as [number, number], clamp: false, weights: 'single' as const },
        sampler: { steps: 10, seed: 3, width: 32, height: 32, scheduler: 'ddim' as const, eta: 0 },
        outputs: { images: 1, per_model: false, latents: true },
        estimate: { unet_evals: 10 },
      });
      const latent = async (id: string) => {
        const r = await engine.generate(spec(id));
        const bytes = r.outputs.find((o) => o.kind === 'latent')!.bytes;
        return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
      };
      const a = await latent('shapes-base');
      const b = await latent('shapes-base-fp16');
      const rms = Math.sqrt(a.reduce((s, v, i) => s + (v - b[i]!) ** 2, 0) / a.length);
      const scale = Math.sqrt(a.reduce((s, v) => s + v * v, 0) / a.length);
      expect(rms / scale).toBeLessThan(0.02);
      expect(rms).toBeGreaterThan(0); // really ran in fp16
    } finally {
      await engine.dispose();
    }
  });
});

describe('broken packages are refused, naming the file and the field', () => {
  it('a missing ONNX file', async () => {
    const root = copyModels('missing-file');
    rmSync(join(root, 'shapes-layout', 'unet', 'model.onnx'));
    await expect(readModelPackage(join(root, 'shapes-layout'))).rejects.toThrow(/shapes-layout\/unet\/model\.onnx: missing/);
  });

  it('an unknown ecosystem id', async () => {
    const root = copyModels('bad-ecosystem');
    editJson(join(root, 'shapes-style', 'amdm.json'), (j) => (j.ecosystem = 'sdxl-ish'));
    await expect(readModelPackage(join(root, 'shapes-style'))).rejects.toThrow(/amdm\.json: field "ecosystem": unknown ecosystem id "sdxl-ish"/);
  });

  it('a declared input whose shape does not match the graph', async () => {
    const root = copyModels('bad-shape');
    editJson(join(root, 'shapes-layout', 'amdm.json'), (j) => (j.unet_inputs[0].shape = ['batch', 5, 4]));
    const pkg = await readModelPackage(join(root, 'shapes-layout'));
    const c = new SessionCache({ intraOpNumThreads: 1 });
    await expect(LoadedModel.load(pkg, c)).rejects.toThrow(/amdm\.json: field "unet_inputs\.boxes\.shape"/);
    await c.dispose();
  });

  it('a graph input the manifest does not declare', async () => {
    const root = copyModels('undeclared');
    // a plain-SD manifest on a grounding UNet
    editJson(join(root, 'shapes-layout', 'amdm.json'), (j) => {
      j.unet_inputs = [];
      delete j.grounding;
    });
    const pkg = await readModelPackage(join(root, 'shapes-layout'));
    const c = new SessionCache({ intraOpNumThreads: 1 });
    await expect(LoadedModel.load(pkg, c)).rejects.toThrow(/field "unet_inputs": the UNet graph input "(boxes|phrase_embeds|mask)" is not declared/);
    await c.dispose();
  });

  it("an input whose condition section is missing (it would never be fed)", async () => {
    const root = copyModels('no-section');
    editJson(join(root, 'shapes-layout', 'amdm.json'), (j) => delete j.grounding);
    await expect(readModelPackage(join(root, 'shapes-layout'))).rejects.toThrow(
      /amdm\.json: field "unet_inputs\.boxes\.source": is "grounding\.boxes", but the manifest has no "grounding" section/,
    );
  });

  it('a manifest field of the wrong type', async () => {
    const root = copyModels('bad-field');
    editJson(join(root, 'shapes-base', 'amdm.json'), (j) => (j.sizes.multiple = 'eight'));
    await expect(readModelPackage(join(root, 'shapes-base'))).rejects.toThrow(/amdm\.json: field "sizes\.multiple"/);
  });

  it('a package whose configs contradict its ecosystem, and a mix of ecosystems', async () => {
    const root = copyModels('mixed');
    editJson(join(root, 'shapes-base', 'scheduler', 'scheduler_config.json'), (j) => (j.beta_end = 0.02));
    await expect(readModelPackage(join(root, 'shapes-base'))).rejects.toThrow(/scheduler_config\.json: field "beta_end": is 0\.02 but ecosystem "shapes-v1"/);
    const a = await readModelPackage(join(MODELS, 'shapes-base'));
    const b = { ...(await readModelPackage(join(MODELS, 'shapes-layout'))), ecosystem: 'sd15' };
    expect(() => checkOneEcosystem([a, b])).toThrow(/not of one ecosystem: ecosystem "sd15" vs "shapes-v1"/);
  });
});
