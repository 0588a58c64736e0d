/**
 * The engine against the PyTorch reference (tools/shapes/fixtures.py): every golden
 * fixture, from the same stored initial noise, must give the same latents and images.
 * Tolerances from the engine issue: final latent max abs difference <= 1e-3, decoded
 * image mean abs difference <= 1/255.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { decode as decodePng } from 'fast-png';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JobSpec } from '../shared/contract/index.ts';
import { createEngine, type AmdmEngine } from '../gpu-runner/engine/index.ts';
import { gaussianNoise } from '../gpu-runner/engine/noise.ts';
import { ClipTokenizer } from '../gpu-runner/engine/tokenizer.ts';

const FIXTURES = fileURLToPath(new URL('./fixtures/amdm/', import.meta.url));
const MODELS = fileURLToPath(new URL('../models/', import.meta.url));

interface Fixture {
  name: string;
  spec: JobSpec;
  tokens: Record<string, number[]>;
  recorded_steps: number[];
  tensors: Record<string, { offset: number; shape: number[] }>;
  bin: Buffer;
}

function loadFixture(name: string): Fixture {
  const header = JSON.parse(readFileSync(`${FIXTURES}${name}.json`, 'utf8')) as Omit<Fixture, 'bin'>;
  return { ...header, bin: readFileSync(`${FIXTURES}${name}.bin`) };
}

function tensor(f: Fixture, key: string): Float32Array {
  const t = f.tensors[key];
  if (!t) throw new Error(`${f.name}: no tensor ${key}`);
  const n = t.shape.reduce((a, b) => a * b, 1);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = f.bin.readFloatLE(t.offset + i * 4);
  return out;
}

const maxAbs = (a: Float32Array, b: Float32Array) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0);

const names = JSON.parse(readFileSync(`${FIXTURES}index.json`, 'utf8')) as string[];

describe('parity with the PyTorch reference (golden fixtures)', () => {
  let engine: AmdmEngine;
  beforeAll(async () => {
    engine = await createEngine({ modelsDirs: [MODELS], intraOpNumThreads: 1 });
  });
  afterAll(async () => engine.dispose());

  it('the tokenizer gives the reference ids on the shapes vocabulary', async () => {
    const tok = await ClipTokenizer.fromDir(`${MODELS}shapes-base/tokenizer`);
    for (const name of names) {
      for (const [text, ids] of Object.entries(loadFixture(name).tokens)) expect(tok.encode(text).ids, `${name}: "${text}"`).toEqual(ids);
    }
  });

  it.each(names)('%s', async (name) => {
    const f = loadFixture(name);
    const N = f.spec.models.length;
    // the engine's own seeded noise is the reference's noise
    const noise = f.spec.models.map((_, k) => tensor(f, `noise/${k}`));
    noise.forEach((n, k) => expect(maxAbs(gaussianNoise(f.spec.sampler.seed, 0, k, n.length), n), `noise ${k}`).toBeLessThanOrEqual(1e-6));

    const recorded = new Map<number, Float32Array>();
    let finals: Float32Array[] = [];
    const result = await engine.generate(f.spec, {
      initialLatents: [noise],
      onStepLatents: (_, step, latents) => {
        if (f.recorded_steps.includes(step)) recorded.set(step, Float32Array.from(latents[0]!));
        if (step === f.spec.sampler.steps - 1) finals = latents.map((l) => Float32Array.from(l!));
      },
    });
    for (const step of f.recorded_steps) {
      expect(maxAbs(recorded.get(step)!, tensor(f, `base_after_step/${step}`)), `base latent after step ${step}`).toBeLessThanOrEqual(1e-3);
    }
    for (let k = 0; k < N; k++) expect(maxAbs(finals[k]!, tensor(f, `final/${k}`)), `final latent of model ${k}`).toBeLessThanOrEqual(1e-3);

    // decoded images: the aggregated (base) image and each auxiliary's own image
    const images = result.outputs.filter((o) => o.kind === 'image');
    expect(images).toHaveLength(N);
    for (let k = 0; k < N; k++) {
      const png = decodePng(images[k]!.bytes);
      const ref = tensor(f, `image/${k}`); // [3, H, W] in [0, 1]
      const hw = png.width * png.height;
      let sum = 0;
      for (let i = 0; i < hw; i++) for (let c = 0; c < 3; c++) sum += Math.abs(png.data[i * 3 + c]! / 255 - ref[c * hw + i]!);
      expect(sum / (3 * hw), `image of model ${k}`).toBeLessThanOrEqual(1 / 255);
    }
    expect(result.unetEvals).toBe(N * f.spec.sampler.steps);
  });
});

describe('early stop of the auxiliary models', () => {
  let engine: AmdmEngine;
  beforeAll(async () => {
    engine = await createEngine({ modelsDirs: [MODELS], intraOpNumThreads: 1 });
  });
  afterAll(async () => engine.dispose());

  it.each(names.filter((n) => !n.endsWith('-alone')))('%s: bit-identical base output, fewer UNet calls', async (name) => {
    const f = loadFixture(name);
    const N = f.spec.models.length;
    const S = f.spec.sampler.steps;
    const end = f.spec.aggregation.window[1];
    const all = await engine.generate({ ...f.spec, outputs: { images: 1, per_model: true, latents: true } });
    const stopped = await engine.generate({ ...f.spec, outputs: { images: 1, per_model: false, latents: true } });
    const pick = (r: typeof all, kind: string) => r.outputs.find((o) => o.source === 'aggregated' && o.kind === kind)!.bytes;
    expect(Buffer.from(pick(stopped, 'latent')).equals(Buffer.from(pick(all, 'latent')))).toBe(true);
    expect(Buffer.from(pick(stopped, 'image')).equals(Buffer.from(pick(all, 'image')))).toBe(true);
    expect(all.unetEvals).toBe(N * S);
    expect(stopped.unetEvals).toBe(N * (end + 1) + (S - end - 1));
  });

  it('the same request and seed give a byte-identical PNG on every run', async () => {
    const f = loadFixture('base-layout-style');
    const a = await engine.generate(f.spec);
    const b = await engine.generate(f.spec);
    expect(Buffer.from(a.outputs[0]!.bytes).equals(Buffer.from(b.outputs[0]!.bytes))).toBe(true);
    const other = await engine.generate({ ...f.spec, sampler: { ...f.spec.sampler, seed: f.spec.sampler.seed + 1 } });
    expect(Buffer.from(a.outputs[0]!.bytes).equals(Buffer.from(other.outputs[0]!.bytes))).toBe(false);
  });
});
