/**
 * What the engine adds around the aggregated image, on the built-in models: solo runs
 * (every model alone from the noise it had in the aggregated run), the warning for a prompt
 * cut to the token limit, and live preview frames.
 */
import { fileURLToPath } from 'node:url';
import { decode } from 'fast-png';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JobRequest, shapeJobRequest, type JobRequestInput, type JobSpec, type ModelInfo } from '../../shared/contract/index.ts';
import { createEngine, type AmdmEngine, type PreviewFrame } from './index.ts';
import { gaussianNoise } from './noise.ts';

const MODELS = fileURLToPath(new URL('../../models/', import.meta.url));
let engine: AmdmEngine;
let catalog: ModelInfo[];
beforeAll(async () => {
  engine = await createEngine({ modelsDirs: [MODELS], intraOpNumThreads: 1 });
  catalog = await engine.catalog();
});
afterAll(() => engine?.dispose());

function shape(body: JobRequestInput): JobSpec {
  const r = shapeJobRequest(JobRequest.parse(body), catalog, { randomSeed: () => 1 });
  if (!r.ok) throw new Error(JSON.stringify(r.errors));
  return r.spec;
}

type ModelInput = JobRequestInput['models'][number];
const layout: ModelInput = { id: 'shapes-layout', role: 'auxiliary', prompt: 'a circle and a square', grounding: [{ phrase: 'circle', box: [0.06, 0.1, 0.44, 0.48] }] };
const base: ModelInput = { id: 'shapes-base', role: 'base', prompt: 'a red circle and a blue square' };

describe('outputs.solo', () => {
  it('each model alone from its own initial noise, bit for bit; the aggregated images unchanged; every UNet call metered', async () => {
    const body = { models: [base, layout], aggregation: { window: [2, 4] as [number, number] }, sampler: { steps: 8, seed: 11 }, outputs: { per_model: true } };
    const withSolo = shape({ ...body, outputs: { per_model: true, solo: true } });
    const plain = await engine.generate(shape(body));
    const res = await engine.generate(withSolo);

    // solo runs are extra: the aggregated run's images do not change
    const pick = (r: typeof res, source: string, model?: string) => r.outputs.find((o) => o.source === source && (model === undefined || o.model === model))!.bytes;
    expect(pick(res, 'aggregated')).toEqual(pick(plain, 'aggregated'));
    expect(pick(res, 'shapes-layout')).toEqual(pick(plain, 'shapes-layout'));
    expect(res.outputs.map((o) => `${o.source}:${o.model}`)).toEqual(['aggregated:shapes-base', 'shapes-layout:shapes-layout', 'solo:shapes-base', 'solo:shapes-layout']);

    // each solo image is what that model makes alone from the noise it had in the aggregated run
    const latentSize = 4 * 8 * 8;
    for (const [k, m] of [base, layout].entries()) {
      const alone = await engine.generate(shape({ models: [{ ...m, role: 'base' }], sampler: { steps: 8, seed: 11 } }), { initialLatents: [[gaussianNoise(11, 0, k, latentSize)]] });
      expect(pick(res, 'solo', m.id), m.id).toEqual(pick(alone, 'aggregated'));
      // ...and not what it makes inside the aggregated run (per_model), for the auxiliary
      if (k === 1) expect(pick(res, 'solo', m.id)).not.toEqual(pick(res, 'shapes-layout'));
    }
    // 2 models × 8 steps (per_model keeps both running), plus 2 × (8 − 2): the solo runs fork at the window's start
    expect(res.unetEvals).toBe(16 + 12);
    expect(withSolo.estimate).toEqual({ unet_evals: 28, solo_unet_evals: 12 });
  });
});

describe('warnings', () => {
  it('a prompt longer than the model reads: kept and dropped token counts, naming the field', async () => {
    const long = 'a red circle and a blue square and a green triangle on a yellow background with a purple border';
    const seen: unknown[] = [];
    const res = await engine.generate(shape({ models: [{ ...base, prompt: long, negative_prompt: 'blurry' }], sampler: { steps: 2, seed: 1 } }), { onWarning: (w) => seen.push(w) });
    expect(res.warnings).toEqual([
      { code: 'prompt_truncated', field: 'models[0].prompt', message: expect.stringMatching(/^the prompt has \d+ tokens but model "shapes-base" reads 14: the first 14 of \d+ were kept, the last \d+ dropped$/) },
    ]);
    expect(seen).toEqual(res.warnings);
    const short = await engine.generate(shape({ models: [base], sampler: { steps: 2, seed: 1 } }));
    expect(short.warnings).toEqual([]);
  });
});

describe('previews', () => {
  it('frames of every model: the first step, the end of the window (the pulled latents), small PNGs', async () => {
    const frames: PreviewFrame[] = [];
    // everyMs large: only the frames that are always made
    await engine.generate(shape({ models: [base, layout], aggregation: { window: [1, 3] }, sampler: { steps: 10, seed: 3 } }), { preview: { everyMs: 1e9, onFrame: (f) => frames.push(f) } });
    expect(frames.map((f) => [f.step, f.phase, f.windowEnd, f.models.map((m) => m.id)])).toEqual([
      [1, 'aggregating', false, ['shapes-base', 'shapes-layout']],
      [4, 'aggregating', true, ['shapes-base', 'shapes-layout']],
    ]);
    for (const m of frames[1]!.models) {
      const img = decode(m.png);
      expect([img.width, img.height, m.width, m.height]).toEqual([32, 32, 32, 32]);
      expect(m.png.byteLength).toBeLessThan(8192);
    }
    // with a short interval, every step gets one (none at the last: the image itself comes next)
    const all: PreviewFrame[] = [];
    await engine.generate(shape({ models: [base, layout], sampler: { steps: 6, seed: 3 }, outputs: { solo: true } }), { preview: { everyMs: 0, onFrame: (f) => all.push(f) } });
    expect(all.filter((f) => f.phase !== 'solo').map((f) => f.step)).toEqual([1, 2, 3, 4, 5]);
    expect(new Set(all.filter((f) => f.phase === 'solo').flatMap((f) => f.models.map((m) => `${m.run}:${m.id}`)))).toEqual(new Set(['solo:shapes-base', 'solo:shapes-layout']));
  });
});
