import { readdirSync, readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { officialWeights as contractWeights } from '../../shared/amdm/math.ts';
import { type JobRequestInput, type JobSpec, JobRequest, ModelInfo, shapeJobRequest } from '../../shared/contract/index.ts';
import { defaultP, formFromRequest, formFromSpec, officialWeights, omegasFromWeights } from './form-load.ts';
import { buildRequest } from './request.ts';

const CATALOG = (JSON.parse(readFileSync(new URL('../../models/catalog.json', import.meta.url), 'utf8')) as { models: unknown[] }).models.map((m) => ModelInfo.parse(m));
const EXAMPLES_DIR = new URL('../../examples/', import.meta.url);
const EXAMPLES = readdirSync(EXAMPLES_DIR)
  .filter((f) => f.endsWith('.json'))
  .map((f) => ({ name: f, request: JSON.parse(readFileSync(new URL(f, EXAMPLES_DIR), 'utf8')) as JobRequestInput }));
const STYLE_PNG = (EXAMPLES.find((e) => e.name === 'base-layout-style.json')!.request.models[2]!.reference_image as { data: string }).data;

/** What POST /v1/jobs stores: the shaped spec, with every reference image moved to an upload key. */
function accept(request: unknown): JobSpec {
  const shaped = shapeJobRequest(JobRequest.parse(request), CATALOG, { randomSeed: () => 12345 });
  if (!shaped.ok) throw new Error(JSON.stringify(shaped.errors));
  for (const m of shaped.spec.models) {
    if (m.reference_image) m.reference_image = { key: `tenants/alpha/uploads/${m.reference_image.upload_id ?? 'upl_FromInlineData01'}`, scale: m.reference_image.scale };
  }
  return shaped.spec;
}

function reload(spec: JobSpec) {
  const loaded = formFromSpec(spec, CATALOG);
  if (!loaded.ok) throw new Error(loaded.message);
  const { request, errors } = buildRequest(loaded.state);
  expect(errors).toEqual([]);
  return { loaded, request };
}

describe('presets: the example files load into the form', () => {
  it('finds the four examples', () => {
    expect(EXAMPLES.map((e) => e.name).sort()).toEqual(['base-layout-style.json', 'base-layout.json', 'layout-caption-style.json', 'single.json']);
  });

  it.each(EXAMPLES)('$name: the form sends the example again, boxes and reference image included', ({ request }) => {
    const loaded = formFromRequest(request, CATALOG);
    if (!loaded.ok) throw new Error(loaded.message);
    expect(loaded.notes).toEqual([]);
    const built = buildRequest(loaded.state);
    expect(built.errors).toEqual([]);
    expect(JobRequest.parse(built.request)).toEqual(JobRequest.parse(request));
  });

  it('puts the base first and keeps the boxes and the inline image', () => {
    const r = EXAMPLES.find((e) => e.name === 'base-layout-style.json')!.request;
    const swapped = { ...r, models: [r.models[1]!, r.models[0]!, r.models[2]!] };
    const loaded = formFromRequest(swapped, CATALOG);
    if (!loaded.ok) throw new Error(loaded.message);
    expect(loaded.state.models.map((m) => [m.id, m.role])).toEqual([['shapes-base', 'base'], ['shapes-layout', 'auxiliary'], ['shapes-style', 'auxiliary']]);
    expect(loaded.state.models[1]!.grounding).toEqual([{ phrase: 'circle', box: [0.06, 0.1, 0.44, 0.48] }, { phrase: 'square', box: [0.55, 0.52, 0.94, 0.9] }]);
    expect(loaded.state.models[2]!.reference).toEqual({ uploadId: null, data: STYLE_PNG, scale: '0.8' });
    expect(loaded.state.models[0]!.grounding).toBeNull();
    expect(loaded.state.models[0]!.reference).toBeNull();
  });

  it('refuses an example whose models are not installed, naming them, and says what it leaves out', () => {
    const r = formFromRequest({ models: [{ id: 'sd15-base', role: 'base', prompt: 'x' }, { id: 'shapes-layout', role: 'auxiliary', prompt: 'y' }] }, CATALOG);
    expect(r).toEqual({ ok: false, message: expect.stringMatching(/^needs sd15-base, which this server does not have \(installed: shapes-base, /) });
    expect(formFromRequest({ models: [{ id: 'shapes-base', role: 'auxiliary', prompt: 'x' }] }, CATALOG)).toMatchObject({ ok: false, message: /exactly one/ });
    const extra = formFromRequest({ models: [{ id: 'shapes-base', role: 'base', prompt: 'x', grounding: [{ phrase: 'a', box: [0, 0, 1, 1] }] }], sampler: { eta: 0.5 }, webhook: { url: 'https://hooks.example.test/' } }, CATALOG);
    expect(extra.ok && extra.notes).toEqual([expect.stringMatching(/shapes-base takes no grounding boxes/), expect.stringMatching(/sampler\.eta/), expect.stringMatching(/webhook\.url/)]);
  });
});

describe('history: a past job fills the form with what submits it again', () => {
  const cases: [string, unknown][] = [
    ...EXAMPLES.map((e) => [e.name, e.request] as [string, unknown]),
    ['an uploaded image, omega2, p, guidance, a window, clamp, a size and two images', {
      models: [
        { id: 'shapes-base', role: 'base', prompt: 'a red circle', negative_prompt: 'blur', guidance_scale: 6 },
        { id: 'shapes-layout', role: 'auxiliary', prompt: 'a circle', p: 12.5, grounding: [{ phrase: 'circle', box: [0.1, 0.1, 0.5, 0.5] }] },
        { id: 'shapes-style', role: 'auxiliary', prompt: 'x', reference_image: { upload_id: 'upl_AbCdEfGhIj0123', scale: 1.1 } },
      ],
      aggregation: { omega: 0.61, omega2: 0.33, window: [2, 5], clamp: true },
      sampler: { steps: 14, seed: 0, width: 48, height: 40 },
      outputs: { images: 2, per_model: true },
    }],
    ['each model alone beside the aggregated image', { models: [{ id: 'shapes-base', role: 'base', prompt: 'a' }, { id: 'shapes-layout', role: 'auxiliary', prompt: 'b' }], outputs: { solo: true, per_model: false } }],
    ['the default omega with three models', { models: [{ id: 'shapes-base', role: 'base', prompt: 'a' }, { id: 'shapes-layout', role: 'auxiliary', prompt: 'b' }, { id: 'shapes-base-fp16', role: 'auxiliary', prompt: 'c' }] }],
    ['omega with two models', { models: [{ id: 'shapes-base', role: 'base', prompt: 'a' }, { id: 'shapes-layout', role: 'auxiliary', prompt: 'b' }], aggregation: { omega: 0.9 } }],
    ['euler, one model', { models: [{ id: 'shapes-base-fp16', role: 'base', prompt: 'a' }], sampler: { scheduler: 'euler', steps: 3, seed: 4294967295 } }],
    ['four models, equal weights', { models: [{ id: 'shapes-base', role: 'base', prompt: 'a' }, { id: 'shapes-layout', role: 'auxiliary', prompt: 'b' }, { id: 'shapes-style', role: 'auxiliary', prompt: 'c', reference_image: { data: STYLE_PNG } }, { id: 'shapes-base-fp16', role: 'auxiliary', prompt: 'd' }] }],
  ];

  it.each(cases)('%s: the same spec again', (_, request) => {
    const spec = accept(request);
    const { request: again } = reload(spec);
    expect(accept(again)).toEqual(spec);
  });

  it('explicit weights come back as weights (equal up to the last bit of the renormalization)', () => {
    const spec = accept({ models: [{ id: 'shapes-base', role: 'base', prompt: 'a', weight: 3 }, { id: 'shapes-layout', role: 'auxiliary', prompt: 'b', weight: 1 }] });
    const { loaded, request } = reload(spec);
    expect(loaded.ok && loaded.state.weightMode).toBe('weights');
    const again = accept(request);
    again.models.forEach((m, i) => expect(m.weight).toBeCloseTo(spec.models[i]!.weight, 15));
    expect({ ...again, models: again.models.map((m) => ({ ...m, weight: 0 })) }).toEqual({ ...spec, models: spec.models.map((m) => ({ ...m, weight: 0 })) });
  });

  it('leaves the server defaults blank and fills what the job chose: the seed, the boxes, the stored image', () => {
    const spec = accept(EXAMPLES.find((e) => e.name === 'base-layout-style.json')!.request);
    const { loaded } = reload(spec);
    if (!loaded.ok) throw new Error('not loaded');
    const s = loaded.state;
    expect(s.models.map((m) => [m.id, m.guidance, m.p, m.weight])).toEqual([['shapes-base', '', '', ''], ['shapes-layout', '', '', ''], ['shapes-style', '', '', '']]);
    expect(s.models[1]!.grounding!.map((g) => g.phrase)).toEqual(['circle', 'square']);
    // the inline image was stored as an upload: the form reuses it by id
    expect(s.models[2]!.reference).toEqual({ uploadId: 'upl_FromInlineData01', data: null, scale: '' });
    expect([s.omega, s.omega2, s.windowStart, s.windowEnd, s.steps, s.seed, s.width, s.height, s.images, s.perModel]).toEqual(['', '', '', '', '10', '7', '', '', '', true]);
  });

  it('keeps outputs.solo, and says it leaves it out of a job of one model', () => {
    const two = reload(accept({ models: [{ id: 'shapes-base', role: 'base', prompt: 'a' }, { id: 'shapes-layout', role: 'auxiliary', prompt: 'b' }], outputs: { solo: true } }));
    expect(two.loaded.ok && two.loaded.state.solo).toBe(true);
    expect(two.request.outputs).toMatchObject({ solo: true });
    const one = { models: [{ id: 'shapes-base', role: 'base' as const, prompt: 'a' }], outputs: { solo: true } };
    const fromSpec = reload(accept(one));
    const fromRequest = formFromRequest(one, CATALOG);
    for (const loaded of [fromSpec.loaded, fromRequest]) {
      expect(loaded.ok && [loaded.state.solo, loaded.notes]).toEqual([false, [expect.stringMatching(/^outputs\.solo adds nothing to a job of one model/)]]);
    }
    // a past job stored before outputs.solo existed
    const old = accept({ models: [{ id: 'shapes-base', role: 'base', prompt: 'a' }, { id: 'shapes-layout', role: 'auxiliary', prompt: 'b' }] });
    delete (old.outputs as { solo?: boolean }).solo;
    expect(reload(old).loaded.ok && reload(old).loaded.state.solo).toBe(false);
  });

  it('names a model the server no longer has', () => {
    const spec = accept({ models: [{ id: 'shapes-base', role: 'base', prompt: 'a' }] });
    expect(formFromSpec(spec, CATALOG.filter((m) => m.id !== 'shapes-base'))).toMatchObject({ ok: false, message: /^needs shapes-base, which this server does not have/ });
  });
});

describe('the numbers the page recomputes', () => {
  it('officialWeights and defaultP are the contract’s, bit for bit', () => {
    fc.assert(
      fc.property(fc.double({ min: 0, max: 1, noNaN: true }), fc.double({ min: 0, max: 1, noNaN: true }), (o, o2) => {
        expect(officialWeights(2, o)).toEqual(contractWeights(2, o));
        expect(officialWeights(3, o, o2)).toEqual(contractWeights(3, o, o2));
      }),
    );
    for (const [w, h] of [[32, 32], [48, 40], [64, 32]] as const) {
      const spec = accept({ models: [{ id: 'shapes-base', role: 'base', prompt: 'a' }, { id: 'shapes-layout', role: 'auxiliary', prompt: 'b' }], sampler: { width: w, height: h } });
      expect(spec.models.map((m, k) => defaultP(k, w, h, CATALOG[0]!) === m.p)).toEqual([true, true]);
    }
  });

  it('finds back any omega and omega2 typed with up to three decimals, exactly', () => {
    const typed = fc.integer({ min: 0, max: 1000 }).map((k) => k / 1000);
    fc.assert(
      fc.property(typed, typed, (omega, omega2) => {
        fc.pre(!(omega === 1 && omega2 === 0));
        expect(omegasFromWeights(officialWeights(3, omega, omega2))).toEqual({ omega, omega2, exact: true });
      }),
      { numRuns: 2000 },
    );
  });
});
