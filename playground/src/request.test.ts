import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { JobRequest, ModelInfo, shapeJobRequest } from '../../shared/contract/index.ts';
import { type FormState, buildRequest, estimateUnetEvals, parseSeed } from './request.ts';

const CATALOG = (JSON.parse(readFileSync(new URL('../../models/catalog.json', import.meta.url), 'utf8')) as { models: unknown[] }).models.map((m) => ModelInfo.parse(m));

const form = (over: Partial<FormState> = {}): FormState => ({
  models: [
    { id: 'shapes-base', role: 'base', prompt: 'a red circle', negativePrompt: '', guidance: '', p: '', weight: '', grounding: null, reference: null },
    { id: 'shapes-layout', role: 'auxiliary', prompt: 'a circle', negativePrompt: 'blur', guidance: '5', p: '40', weight: '', grounding: [{ phrase: 'circle', box: [0.123456, 0.2, 0.5, 0.6] }], reference: null },
  ],
  weightMode: 'omega',
  omega: '',
  omega2: '',
  windowStart: '',
  windowEnd: '',
  clamp: false,
  steps: '',
  seed: '',
  width: '',
  height: '',
  scheduler: 'ddim',
  images: '',
  perModel: true,
  solo: false,
  schedule: '',
  ...over,
});

describe('the seed field', () => {
  it('takes digits for a uint32, blank for random, and refuses everything else without evaluating it', () => {
    expect(parseSeed('')).toEqual({ ok: true, value: undefined });
    expect(parseSeed(' 42 ')).toEqual({ ok: true, value: 42 });
    expect(parseSeed('4294967295')).toEqual({ ok: true, value: 4294967295 });
    for (const bad of ['4294967296', '-1', '1.5', '1e3', '0x10', '2**8', 'alert(1)', '99999999999']) {
      expect(parseSeed(bad).ok, bad).toBe(false);
    }
  });
});

describe('buildRequest', () => {
  it('leaves blank fields to the server defaults and produces a body the contract accepts', () => {
    const { request, errors } = buildRequest(form());
    expect(errors).toEqual([]);
    expect(request).toEqual({
      models: [
        { id: 'shapes-base', role: 'base', prompt: 'a red circle' },
        { id: 'shapes-layout', role: 'auxiliary', prompt: 'a circle', negative_prompt: 'blur', guidance_scale: 5, p: 40, grounding: [{ phrase: 'circle', box: [0.1235, 0.2, 0.5, 0.6] }] },
      ],
      aggregation: {},
      sampler: { scheduler: 'ddim' },
      outputs: { per_model: true },
    });
    expect(JobRequest.safeParse(request).success).toBe(true);
  });

  it('sends omega, the window, the seed and the sizes when given; weights replace omega in weight mode', () => {
    const a = buildRequest(form({ omega: '0.6', windowStart: '1', windowEnd: '4', steps: '10', seed: '7', width: '48', height: '48', images: '2', clamp: true })).request;
    expect(a.aggregation).toEqual({ omega: 0.6, window: [1, 4], clamp: true });
    expect(a.sampler).toEqual({ steps: 10, seed: 7, width: 48, height: 48, scheduler: 'ddim' });
    expect(a.outputs).toEqual({ images: 2, per_model: true });
    const f = form({ weightMode: 'weights', omega: '0.6' });
    f.models[0]!.weight = '2';
    f.models[1]!.weight = '1';
    const b = buildRequest(f).request;
    expect(b.aggregation).toEqual({});
    expect(b.models.map((m) => m.weight)).toEqual([2, 1]);
  });

  it('names the field of each input that does not hold what it must', () => {
    const f = form({ seed: '2**32', steps: '2.5', windowStart: '1', omega: 'NaN' });
    f.models[1]!.reference = { uploadId: null, data: null, scale: '' };
    f.models[0]!.guidance = 'abc';
    const { errors } = buildRequest(f);
    expect(errors.map((e) => e.field).sort()).toEqual(['aggregation.omega', 'aggregation.window', 'models[0].guidance_scale', 'models[1].reference_image', 'sampler.seed', 'sampler.steps'].sort());
  });
});

describe('outputs.solo', () => {
  it('is sent when asked for with two models or more, and left to the server default otherwise', () => {
    expect(buildRequest(form({ solo: true })).request.outputs).toEqual({ per_model: true, solo: true });
    expect(buildRequest(form({ solo: false })).request.outputs).toEqual({ per_model: true });
    const one = form({ solo: true });
    one.models.splice(1);
    // a job of one model is already that model alone (the server would warn solo_single_model)
    expect(buildRequest(one).request.outputs).toEqual({ per_model: false });
  });
});

describe('the cost shown before sending', () => {
  const third = { id: 'shapes-style', role: 'auxiliary' as const, prompt: 'x', negativePrompt: '', guidance: '', p: '', weight: '', grounding: null, reference: { uploadId: 'upl_AbCdEfGhIj0123', data: null, scale: '' } };
  const cases: [string, FormState][] = [
    ['defaults', form()],
    ['solo', form({ solo: true })],
    ['solo without per_model, a window, steps and two images', form({ solo: true, perModel: false, windowStart: '2', windowEnd: '5', steps: '12', images: '2' })],
    ['an empty window', form({ solo: true, windowStart: '0', windowEnd: '0', steps: '8' })],
    ['three models, solo', (() => { const f = form({ solo: true, steps: '10' }); f.models.push(third); return f; })()],
    ['one model, solo', (() => { const f = form({ solo: true }); f.models.splice(1); return f; })()],
  ];
  it.each(cases)('%s: is what the server estimates', (_, f) => {
    const shaped = shapeJobRequest(JobRequest.parse(buildRequest(f).request), CATALOG, { randomSeed: () => 1 });
    if (!shaped.ok) throw new Error(JSON.stringify(shaped.errors));
    expect(estimateUnetEvals(f)).toEqual({ total: shaped.spec.estimate.unet_evals, solo: shaped.spec.estimate.solo_unet_evals });
  });

  it('is unknown while a field it needs holds no whole number', () => {
    for (const over of [{ steps: '2.5' }, { images: 'not a number' }, { windowStart: '1' }, { steps: '0' }]) expect(estimateUnetEvals(form(over)), JSON.stringify(over)).toBeNull();
  });
});

describe('the per-step schedule (aggregation.schedule)', () => {
  it('is sent as given and passes the contract; blank sends none', () => {
    const rows = { weights: [[0, 1], [0.5, 0.5]], p: [[0, 0], [1, 2]] };
    const { request, errors } = buildRequest(form({ schedule: JSON.stringify(rows), windowStart: '1', windowEnd: '2', models: form().models.map((m) => ({ ...m, p: '' })) }));
    expect(errors).toEqual([]);
    expect(request.aggregation?.schedule).toEqual(rows);
    expect(JobRequest.safeParse(request).success).toBe(true);
    expect(buildRequest(form({ schedule: '  ' })).request.aggregation).not.toHaveProperty('schedule');
  });

  it('text that is not a JSON object is an error on the field, saying what is allowed', () => {
    for (const text of ['{"weights": [[0, 1]', '[[0, 1]]', 'null', '3']) {
      const { errors } = buildRequest(form({ schedule: text }));
      expect(errors).toEqual([{ field: 'aggregation.schedule', message: expect.stringMatching(/^must be a JSON object: \{"weights"/) }]);
    }
  });
});
