/**
 * Bad job requests are refused before any sampling, each with an error naming the field:
 * the contract (zod) checks what needs no catalog, shaping checks the rest against the
 * installed models, and the engine re-checks what reaches it directly.
 */
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JobRequest, shapeJobRequest, type FieldError, type ModelInfo } from '../shared/contract/index.ts';
import { zodFieldErrors } from '../shared/contract/field-errors.ts';
import { createEngine, EngineInputError, type AmdmEngine } from '../gpu-runner/engine/index.ts';

const MODELS = fileURLToPath(new URL('../models/', import.meta.url));
const boxes = [
  { phrase: 'circle', box: [0.1, 0.1, 0.4, 0.4] },
  { phrase: 'square', box: [0.5, 0.5, 0.9, 0.9] },
];
const valid = () => ({
  models: [
    { id: 'shapes-base', role: 'base', prompt: 'a red circle and a blue square' },
    { id: 'shapes-layout', role: 'auxiliary', prompt: 'a circle and a square', grounding: structuredClone(boxes) },
  ],
  aggregation: { window: [1, 3] },
  sampler: { steps: 20, seed: 1 },
});

let engine: AmdmEngine;
let catalog: ModelInfo[];
beforeAll(async () => {
  engine = await createEngine({ modelsDirs: [MODELS], intraOpNumThreads: 1 });
  catalog = await engine.catalog();
});
afterAll(async () => engine.dispose());

/** All errors for a body: schema first, then shaping against the real catalog. */
function errorsOf(body: unknown): FieldError[] {
  const parsed = JobRequest.safeParse(body);
  if (!parsed.success) return zodFieldErrors(parsed.error.issues, JobRequest, 'body');
  const shaped = shapeJobRequest(parsed.data, catalog, { randomSeed: () => 1 });
  return shaped.ok ? [] : shaped.errors;
}

function expectError(body: unknown, field: string, message: RegExp): void {
  const errs = errorsOf(body);
  expect(errs, JSON.stringify(errs)).toEqual(expect.arrayContaining([expect.objectContaining({ field, message: expect.stringMatching(message) })]));
}

describe('bad requests name the field and what is allowed', () => {
  it('a valid request has no errors', () => {
    expect(errorsOf(valid())).toEqual([]);
  });

  it('an unknown model', () => {
    const b = valid();
    b.models[1]!.id = 'shapes-nope';
    expectError(b, 'models[1].id', /unknown model "shapes-nope"; installed: .*shapes-layout/);
  });

  it('mixed ecosystems', () => {
    const foreign: ModelInfo = { ...catalog.find((m) => m.id === 'shapes-layout')!, id: 'sd-layout', ecosystem: 'sd15' };
    const parsed = JobRequest.parse({ ...valid(), models: [valid().models[0], { ...valid().models[1], id: 'sd-layout' }] });
    const r = shapeJobRequest(parsed, [...catalog, foreign], { randomSeed: () => 1 });
    expect(r.ok).toBe(false);
    expect(!r.ok && r.errors[0]).toMatchObject({ field: 'models[1].id', message: expect.stringMatching(/ecosystem "sd15" but the base "shapes-base" is of "shapes-v1"/) });
  });

  it('boxes outside [0, 1] or inverted', () => {
    const out = valid();
    out.models[1]!.grounding![0]!.box = [-0.1, 0.1, 0.4, 0.4];
    expectError(out, 'models[1].grounding[0].box', /must lie in \[0, 1\]/);
    const inverted = valid();
    inverted.models[1]!.grounding![1]!.box = [0.9, 0.5, 0.5, 0.9];
    expectError(inverted, 'models[1].grounding[1].box', /x0 < x1 and y0 < y1/);
  });

  it('too many objects for the model', () => {
    const b = valid();
    b.models[1]!.grounding = Array.from({ length: 4 }, (_, i) => ({ phrase: 'circle', box: [0.1 * i, 0.1, 0.1 * i + 0.05, 0.2] }));
    expectError(b, 'models[1].grounding', /takes at most 3 objects \(got 4\)/);
  });

  it('grounding on a model that takes none', () => {
    const b = valid();
    (b.models[0] as Record<string, unknown>).grounding = structuredClone(boxes);
    expectError(b, 'models[0].grounding', /takes no grounding boxes/);
  });

  it('steps out of range', () => {
    expectError({ ...valid(), sampler: { steps: 0 } }, 'sampler.steps', /.+/);
    expectError({ ...valid(), sampler: { steps: 101 } }, 'sampler.steps', /100/);
    expectError({ ...valid(), sampler: { steps: 2.5 } }, 'sampler.steps', /int/i);
  });

  it('a window outside [0, steps)', () => {
    expectError({ ...valid(), aggregation: { window: [1, 20] } }, 'aggregation.window', /\[0, steps\) = \[0, 20\)/);
    expectError({ ...valid(), aggregation: { window: [3, 1] } }, 'aggregation.window', /start <= end/);
    expectError({ ...valid(), aggregation: { window: [-1, 2] } }, 'aggregation.window[0]', /.+/);
  });

  it('weights that are negative or all zero', () => {
    const neg = valid();
    neg.models.forEach((m, i) => ((m as Record<string, unknown>).weight = i === 0 ? 1 : -1));
    expectError(neg, 'models[1].weight', /.+/);
    const zero = valid();
    zero.models.forEach((m) => ((m as Record<string, unknown>).weight = 0));
    expectError(zero, 'models[0].weight', /must not all be zero/);
    const some = valid();
    (some.models[0] as Record<string, unknown>).weight = 1;
    expectError(some, 'models', /on every model or on none/);
  });

  it('p < 0', () => {
    const b = valid();
    (b.models[1] as Record<string, unknown>).p = -3;
    expectError(b, 'models[1].p', /.+/);
  });

  it('a width/height the model cannot do; sizes it can do are rounded to its multiple', () => {
    expectError({ ...valid(), sampler: { steps: 20, width: 512 } }, 'sampler.width', /renders width from 32 to 64 pixels \(got 512\)/);
    const ok = shapeJobRequest(JobRequest.parse({ ...valid(), sampler: { steps: 20, width: 45, height: 60 } }), catalog, { randomSeed: () => 1 });
    expect(ok.ok && [ok.spec.sampler.width, ok.spec.sampler.height]).toEqual([48, 64]);
  });

  it('aggregation with a scheduler other than DDIM', () => {
    expectError({ ...valid(), sampler: { steps: 20, scheduler: 'euler' } }, 'sampler.scheduler', /needs scheduler "ddim"/);
  });

  it('unknown fields, with the allowed ones', () => {
    expectError({ ...valid(), sampler: { steps: 20, cfg: 3 } }, 'sampler.cfg', /unknown field "cfg"; allowed: steps, seed/);
  });

  it('the engine refuses what reaches it without shaping, naming the field', async () => {
    const parsed = JobRequest.parse(valid());
    const shaped = shapeJobRequest(parsed, catalog, { randomSeed: () => 1 });
    if (!shaped.ok) throw new Error('expected a valid spec');
    const spec = shaped.spec;
    await expect(engine.generate({ ...spec, models: [{ ...spec.models[0]!, id: 'nope' }] })).rejects.toMatchObject({ name: 'EngineInputError', field: 'models[0].id' });
    await expect(engine.generate({ ...spec, sampler: { ...spec.sampler, width: 30 } })).rejects.toBeInstanceOf(EngineInputError);
    await expect(engine.generate({ ...spec, aggregation: { ...spec.aggregation, window: [1, 25] } })).rejects.toMatchObject({ field: 'aggregation.window' });
    // a per-step schedule with a row short of the window's three steps, or of the two models
    await expect(engine.generate({ ...spec, aggregation: { ...spec.aggregation, schedule: { weights: [[0.5, 0.5], [0.5, 0.5]] } } })).rejects.toMatchObject({ field: 'aggregation.schedule.weights' });
    await expect(engine.generate({ ...spec, aggregation: { ...spec.aggregation, schedule: { p: [[1, 1], [1], [1, 1]] } } })).rejects.toMatchObject({ field: 'aggregation.schedule.p' });
    const style = { ...spec.models[1]!, id: 'shapes-style', grounding: [], reference_image: { data: Buffer.from('not an image').toString('base64'), scale: 0.8 } };
    await expect(engine.generate({ ...spec, models: [spec.models[0]!, style] })).rejects.toMatchObject({ field: 'models[1].reference_image', message: expect.stringMatching(/not a PNG or JPEG/) });
  });
});

describe('the converted models\' fields name the field and what is allowed', () => {
  const PACKAGES = fileURLToPath(new URL('./fixtures/packages/', import.meta.url));
  let converted: ModelInfo[];
  let tiny: AmdmEngine;
  beforeAll(async () => {
    tiny = await createEngine({ modelsDirs: [PACKAGES], intraOpNumThreads: 1 });
    converted = await tiny.catalog();
  });
  afterAll(async () => tiny.dispose());

  const triplet = () => ({ subject: 'a person', subject_box: [0.1, 0.1, 0.5, 0.9], action: 'riding', object: 'a horse', object_box: [0.2, 0.4, 0.9, 0.95] });
  const three = () => ({
    models: [
      { id: 'tiny-sd15', role: 'base', prompt: 'a person riding a horse' },
      { id: 'tiny-interactdiffusion', role: 'auxiliary', prompt: 'a person riding a horse', interactions: [triplet()] as Record<string, unknown>[] },
      { id: 'tiny-gligen', role: 'auxiliary', prompt: 'a person and a horse', grounding: [{ phrase: 'a horse', box: [0.2, 0.4, 0.9, 0.95] }] as unknown[] },
    ],
    sampler: { steps: 10, seed: 1 },
  });
  const errors = (body: unknown): FieldError[] => {
    const parsed = JobRequest.safeParse(body);
    if (!parsed.success) return zodFieldErrors(parsed.error.issues, JobRequest, 'body');
    const shaped = shapeJobRequest(parsed.data, converted, { randomSeed: () => 1 });
    return shaped.ok ? [] : shaped.errors;
  };
  const expectConverted = (body: unknown, field: string, message: RegExp) => {
    const errs = errors(body);
    expect(errs, JSON.stringify(errs)).toEqual(expect.arrayContaining([expect.objectContaining({ field, message: expect.stringMatching(message) })]));
  };

  it('a valid request has no errors', () => {
    expect(errors(three())).toEqual([]);
  });

  it('more than 30 objects', () => {
    const b = three();
    b.models[2]!.grounding = Array.from({ length: 31 }, () => ({ phrase: 'a horse', box: [0.2, 0.4, 0.9, 0.95] }));
    expectConverted(b, 'models[2].grounding', /at most 30/);
  });

  it('more than 30 interactions', () => {
    const b = three();
    b.models[1]!.interactions = Array.from({ length: 31 }, triplet);
    expectConverted(b, 'models[1].interactions', /at most 30/);
  });

  it('a triplet with a missing box, phrase or a box out of range', () => {
    const noBox = three();
    delete noBox.models[1]!.interactions![0]!.object_box;
    expectConverted(noBox, 'models[1].interactions[0].object_box', /required: a box \[x0, y0, x1, y1\] normalized to \[0, 1\]/);
    const noSubjectBox = three();
    delete noSubjectBox.models[1]!.interactions![0]!.subject_box;
    expectConverted(noSubjectBox, 'models[1].interactions[0].subject_box', /required: a box/);
    const shortBox = three();
    shortBox.models[1]!.interactions![0]!.object_box = [0.2, 0.4];
    expectConverted(shortBox, 'models[1].interactions[0].object_box', /must be a box \[x0, y0, x1, y1\]: four numbers/);
    const noAction = three();
    noAction.models[1]!.interactions![0]!.action = ' ';
    expectConverted(noAction, 'models[1].interactions[0].action', />=1 characters/);
    const outside = three();
    outside.models[1]!.interactions![0]!.subject_box = [0.1, 0.1, 1.5, 0.9];
    expectConverted(outside, 'models[1].interactions[0].subject_box', /must lie in \[0, 1\]/);
    const extra = three();
    extra.models[1]!.interactions![0]!.verb = 'riding';
    expectConverted(extra, 'models[1].interactions[0].verb', /unknown field "verb"; allowed: subject, subject_box, action, object, object_box/);
  });

  it('interactions or a scheduled-sampling beta on a model that takes none', () => {
    const b = three();
    (b.models[0] as Record<string, unknown>).interactions = [triplet()];
    expectConverted(b, 'models[0].interactions', /takes no interactions/);
    const s = three();
    (s.models[0] as Record<string, unknown>).scheduled_sampling = { beta: 0.5 };
    expectConverted(s, 'models[0].scheduled_sampling', /has no scheduled sampling/);
  });

  it('a scheduled-sampling beta outside [0, 1]', () => {
    const b = three();
    (b.models[2] as Record<string, unknown>).scheduled_sampling = { beta: 1.5 };
    expectConverted(b, 'models[2].scheduled_sampling.beta', /<=1/);
  });

  it('an IP scale out of range', () => {
    const png = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC';
    const b = { ...three(), models: [three().models[0], { id: 'tiny-ip-adapter', role: 'auxiliary', prompt: 'a horse', reference_image: { data: png, scale: 2.5 } }] };
    expectConverted(b, 'models[1].reference_image.scale', /<=2/);
    const neg = { ...b, models: [b.models[0], { ...b.models[1], reference_image: { data: png, scale: -0.1 } }] };
    expectConverted(neg, 'models[1].reference_image.scale', />=0/);
  });

  it('an unknown noise generator', () => {
    expectConverted({ ...three(), sampler: { steps: 10, noise: 'philox' } }, 'sampler.noise', /amdm.*torch/);
  });
});
