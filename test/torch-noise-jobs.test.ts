/**
 * sampler.noise "torch" against PyTorch (test/fixtures/torch-noise/jobs, made by
 * tools/torch-noise/make_job_fixtures.py): a job draws its initial latents and DDIM's eta
 * noise exactly as torch.randn does from torch.Generator("cpu").manual_seed(seed), models in
 * request order, and the PyTorch reference of AMDM run on those draws gives the engine's
 * latents. Stopping the auxiliaries after the window changes no draw of the base model.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JobSpec } from '../shared/contract/index.ts';
import { createEngine, type AmdmEngine } from '../gpu-runner/engine/index.ts';
import { jobNoise } from '../gpu-runner/engine/job-noise.ts';
import { gaussianNoise } from '../gpu-runner/engine/noise.ts';
import { TorchCpuGenerator } from '../gpu-runner/engine/torch-generator.ts';

const DIR = fileURLToPath(new URL('./fixtures/torch-noise/jobs/', import.meta.url));
const MODELS = fileURLToPath(new URL('../models/', import.meta.url));

interface Fixture {
  name: string;
  request_order: string[];
  spec: JobSpec;
  recorded_steps: number[];
  tensors: Record<string, { offset: number; shape: number[] }>;
  bin: Buffer;
}
const load = (name: string): Fixture => ({ ...(JSON.parse(readFileSync(`${DIR}${name}.json`, 'utf8')) as Omit<Fixture, 'bin'>), bin: readFileSync(`${DIR}${name}.bin`) });
const names = JSON.parse(readFileSync(`${DIR}index.json`, 'utf8')) as string[];

function tensor(f: Fixture, key: string): Float32Array {
  const t = f.tensors[key]!;
  const n = t.shape.reduce((a, b) => a * b, 1);
  return new Float32Array(f.bin.buffer.slice(f.bin.byteOffset + t.offset, f.bin.byteOffset + t.offset + n * 4));
}
const bits = (a: Float32Array) => Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length));
const maxAbs = (a: Float32Array, b: Float32Array) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0);

let engine: AmdmEngine;
beforeAll(async () => {
  engine = await createEngine({ modelsDirs: [MODELS], intraOpNumThreads: 1 });
});
afterAll(async () => engine.dispose());

describe('sampler.noise "torch" against PyTorch', () => {
  it.each(names)('%s: the initial latents are torch\'s draws, bit for bit, in request order', (name) => {
    const f = load(name);
    const initial = jobNoise(f.spec, [4, 8, 8]).initial(0);
    f.spec.models.forEach((_, k) => expect(bits(initial[k]!), `model ${k}`).toEqual(bits(tensor(f, `noise/${k}`))));
  });

  it.each(names)('%s: the engine\'s latents match the PyTorch reference run on those draws', async (name) => {
    const f = load(name);
    const recorded = new Map<number, Float32Array>();
    let finals: Float32Array[] = [];
    const r = await engine.generate(f.spec, {
      onStepLatents: (_, step, latents) => {
        if (f.recorded_steps.includes(step)) recorded.set(step, Float32Array.from(latents[0]!));
        if (step === f.spec.sampler.steps - 1) finals = latents.map((l) => Float32Array.from(l!));
      },
    });
    for (const step of f.recorded_steps) expect(maxAbs(recorded.get(step)!, tensor(f, `base_after_step/${step}`)), `base after step ${step}`).toBeLessThanOrEqual(1e-3);
    f.spec.models.forEach((_, k) => expect(maxAbs(finals[k]!, tensor(f, `final/${k}`)), `final latent of model ${k}`).toBeLessThanOrEqual(1e-3));
    expect(r.unetEvals).toBe(f.spec.models.length * f.spec.sampler.steps);
  });

  it('with eta > 0, the base image is bit-identical whether the auxiliaries stop after the window or not', async () => {
    const f = load('base-layout-eta');
    const pick = async (perModel: boolean) => {
      const r = await engine.generate({ ...f.spec, outputs: { images: 1, per_model: perModel, latents: true } });
      return { evals: r.unetEvals, latent: Buffer.from(r.outputs.find((o) => o.source === 'aggregated' && o.kind === 'latent')!.bytes) };
    };
    const all = await pick(true);
    const stopped = await pick(false);
    expect(stopped.evals).toBeLessThan(all.evals);
    expect(stopped.latent.equals(all.latent)).toBe(true);
  });
});

describe('the torch noise stream', () => {
  const spec = (noise: 'amdm' | 'torch', requestIndex = [0, 1, 2]) =>
    ({
      models: requestIndex.map((r, k) => ({ id: `m${k}`, request_index: r })),
      sampler: { seed: 99, noise },
    }) as unknown as JobSpec;

  it('draws the initial latents, then every step\'s noise for every model, in request order; image j is seed + j', () => {
    const s = jobNoise(spec('torch', [2, 0, 1]), [4, 2, 2]);
    const g = new TorchCpuGenerator(99);
    const want = { m1: g.randn([1, 4, 2, 2]), m2: g.randn([1, 4, 2, 2]), m0: g.randn([1, 4, 2, 2]) };
    const initial = s.initial(0);
    expect([0, 1, 2].map((k) => bits(initial[k]!))).toEqual([bits(want.m0), bits(want.m1), bits(want.m2)]);
    const step0 = { m1: g.randn([1, 4, 2, 2]), m2: g.randn([1, 4, 2, 2]), m0: g.randn([1, 4, 2, 2]) };
    const step1 = { m1: g.randn([1, 4, 2, 2]), m2: g.randn([1, 4, 2, 2]), m0: g.randn([1, 4, 2, 2]) };
    // asked in any model order within a step; a step asked by the base alone still draws for every model
    expect(bits(s.eta(0, 0, 2))).toEqual(bits(step0.m2));
    expect(bits(s.eta(0, 0, 0))).toEqual(bits(step0.m0));
    expect(bits(s.eta(0, 1, 0))).toEqual(bits(step1.m0));
    expect(() => s.eta(0, 0, 1)).toThrow(/only moves forward/);
    // a solo run replays the stream: model 1 alone gets its own step-1 noise
    expect(bits(s.soloEta(0, 1, 1))).toEqual(bits(step1.m1));
    // image 1: a generator of its own, seed + 1, first draw for the first model of the request
    expect(bits(s.initial(1)[1]!)).toEqual(bits(new TorchCpuGenerator(100).randn([1, 4, 2, 2])));
  });

  it('"amdm" (the default) is the engine\'s own generator, unchanged', () => {
    const s = jobNoise(spec('amdm'), [4, 2, 2]);
    expect(bits(s.initial(0)[1]!)).toEqual(bits(gaussianNoise(99, 0, 1, 16)));
    const old = jobNoise({ ...spec('amdm'), sampler: { seed: 99 } } as unknown as JobSpec, [4, 2, 2]);
    expect(bits(old.initial(0)[2]!)).toEqual(bits(gaussianNoise(99, 0, 2, 16)));
  });
});
