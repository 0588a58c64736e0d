/**
 * A job request (an example from examples/) or a past job's spec -> the form's state, the
 * inverse of buildRequest (request.ts). Pure, so presets and history are tested without a
 * browser: buildRequest(formFromRequest(r)) is r again, and a past job's spec, reshaped
 * from buildRequest(formFromSpec(spec)), is that spec again.
 *
 * A job record carries the resolved spec, not the request as sent: defaults filled in,
 * weights computed from omega, p scaled to the size, the reference image moved to the
 * store. formFromSpec undoes what it can exactly: it leaves a field blank where the spec
 * holds the default the server would fill in anyway, finds omega and omega2 back from the
 * official weights, and reuses the stored reference image by its upload id.
 */
import type { JobRecord, JobRequestInput, ModelInfo } from '../../shared/client/client.ts';
// math.ts imports nothing, so the page shares the formulas without bundling zod
import { officialP, officialWeights as mathWeights } from '../../shared/amdm/math.ts';
import { UI_DEFAULTS, UI_OFFICIAL } from './limits.ts';
import type { Box, FormModel, FormState } from './request.ts';

type JobSpec = JobRecord['spec'];

export type LoadResult = { ok: true; state: FormState; notes: string[] } | { ok: false; message: string };

const text = (v: number | undefined): string => (v === undefined ? '' : String(v));
/** blank when the value is the default the server fills in */
const unlessDefault = (v: number, def: number): string => (v === def ? '' : String(v));
const UPLOAD_ID = /^upl_[A-Za-z0-9]{10,40}$/;

function missingModels(ids: readonly string[], catalog: readonly ModelInfo[]): LoadResult | null {
  const missing = ids.filter((id) => !catalog.some((m) => m.id === id));
  if (missing.length === 0) return null;
  const installed = catalog.map((m) => m.id).join(', ') || 'none';
  return { ok: false, message: `needs ${missing.join(', ')}, which this server does not have (installed: ${installed})` };
}

/** An example file or any request body -> the form, base first. */
export function formFromRequest(req: JobRequestInput, catalog: readonly ModelInfo[]): LoadResult {
  const bases = req.models.filter((m) => m.role === 'base');
  if (bases.length !== 1) return { ok: false, message: `has ${bases.length} models with role "base"; a job needs exactly one` };
  const missing = missingModels(req.models.map((m) => m.id), catalog);
  if (missing) return missing;
  const notes: string[] = [];
  const ordered = [bases[0]!, ...req.models.filter((m) => m.role !== 'base')];
  const models = ordered.map((m): FormModel => {
    const info = catalog.find((c) => c.id === m.id)!;
    if (m.grounding?.length && !info.conditions.grounding) notes.push(`${m.id} takes no grounding boxes: its boxes were left out`);
    if (m.reference_image && !info.conditions.reference_image) notes.push(`${m.id} takes no reference image: it was left out`);
    const ref = m.reference_image;
    return {
      id: m.id,
      role: m.role,
      prompt: m.prompt,
      negativePrompt: m.negative_prompt ?? '',
      guidance: text(m.guidance_scale),
      p: text(m.p),
      weight: text(m.weight),
      grounding: info.conditions.grounding ? (m.grounding ?? []).map((g) => ({ phrase: g.phrase, box: [...g.box] as Box })) : null,
      reference: info.conditions.reference_image ? { uploadId: ref?.upload_id ?? null, data: ref?.upload_id === undefined ? (ref?.data ?? null) : null, scale: text(ref?.scale) } : null,
    };
  });
  if (req.sampler?.eta !== undefined && req.sampler.eta !== 0) notes.push(`the page has no input for sampler.eta: ${req.sampler.eta} was left out (the default 0 applies)`);
  if (req.outputs?.latents) notes.push('the page has no input for outputs.latents: it was left out');
  if (req.webhook) notes.push('the page sends no webhook: webhook.url was left out');
  if (req.outputs?.solo && models.length === 1) notes.push('outputs.solo adds nothing to a job of one model (it is already the model alone): it was left out');
  const a = req.aggregation ?? {};
  const s = req.sampler ?? {};
  const o = req.outputs ?? {};
  // the schedule's columns follow the request's model order; the form's is base first
  const order = ordered.map((m) => req.models.indexOf(m));
  const reorder = (rows: number[][] | undefined) => rows?.map((row) => order.map((k) => row[k]!));
  const schedule = a.schedule ? { ...(a.schedule.weights ? { weights: reorder(a.schedule.weights) } : {}), ...(a.schedule.p ? { p: reorder(a.schedule.p) } : {}) } : null;
  return {
    ok: true,
    notes,
    state: {
      models,
      weightMode: req.models.some((m) => m.weight !== undefined) ? 'weights' : 'omega',
      omega: text(a.omega),
      omega2: text(a.omega2),
      windowStart: text(a.window?.[0]),
      windowEnd: text(a.window?.[1]),
      clamp: a.clamp ?? false,
      steps: text(s.steps),
      seed: text(s.seed),
      width: text(s.width),
      height: text(s.height),
      scheduler: s.scheduler ?? 'ddim',
      images: text(o.images),
      perModel: o.per_model ?? false,
      solo: (o.solo ?? false) && models.length > 1,
      schedule: schedule ? JSON.stringify(schedule) : '',
    },
  };
}

/** The weights of the official parameterization, as shaping computes them. */
export function officialWeights(n: number, omega: number, omega2?: number): number[] {
  return mathWeights(n, omega, omega2);
}

/** The default p of the model at `index` (0: the base), as shapeJobRequest computes it. */
export function defaultP(index: number, width: number, height: number, base: Pick<ModelInfo, 'latent'>): number {
  const f = base.latent.vae_scale_factor;
  return officialP(index === 0 ? 'base' : 'auxiliary', { channels: base.latent.channels, width: width / f, height: height / f });
}

/**
 * omega and omega2 back from three official weights [ω·ω₂, s·ω₂, s·√(1−ω₂²)] with s = √(1−ω²):
 * ω₂ = √(w0² + w1²) and ω = w0/ω₂ (or √(1−w2²) when ω₂ = 0). Both round, so the shortest
 * decimals near them (what a person typed) that give exactly the same weights are taken.
 */
export function omegasFromWeights(w: readonly number[]): { omega: number; omega2: number; exact: boolean } {
  const rawOmega2 = Math.hypot(w[0]!, w[1]!);
  const rawOmega = rawOmega2 > 0 ? w[0]! / rawOmega2 : Math.sqrt(Math.max(0, 1 - w[2]! * w[2]!));
  // 1 to 17 significant digits, shortest first, then the value itself
  const near = (v: number): number[] => [...new Set([...Array.from({ length: 17 }, (_, i) => Number(v.toPrecision(i + 1))), v])].filter((x) => x >= 0 && x <= 1);
  for (const omega of near(rawOmega)) {
    for (const omega2 of near(rawOmega2)) {
      if (officialWeights(3, omega, omega2).every((v, i) => v === w[i])) return { omega, omega2, exact: true };
    }
  }
  const short = (v: number) => Math.min(1, Number(v.toPrecision(12)));
  return { omega: short(rawOmega), omega2: short(rawOmega2), exact: false };
}

/** A past job's spec -> the form that submits the same job again. */
export function formFromSpec(spec: JobSpec, catalog: readonly ModelInfo[]): LoadResult {
  const missing = missingModels(spec.models.map((m) => m.id), catalog);
  if (missing) return missing;
  const notes: string[] = [];
  const base = catalog.find((m) => m.id === spec.models[0]!.id)!;
  const { width, height } = spec.sampler;
  const n = spec.models.length;
  const source = spec.aggregation.weights;

  const models = spec.models.map((m, k): FormModel => {
    const info = catalog.find((c) => c.id === m.id)!;
    let reference: FormModel['reference'] = null;
    if (info.conditions.reference_image) {
      const r = m.reference_image;
      const stored = r?.key?.split('/').at(-1);
      const uploadId = r?.upload_id ?? (stored && UPLOAD_ID.test(stored) ? stored : null);
      const data = uploadId === null ? (r?.data ?? null) : null;
      if (r && uploadId === null && data === null) notes.push(`the reference image of ${m.id} cannot be reused from this job: choose it again`);
      reference = { uploadId, data, scale: r ? unlessDefault(r.scale, UI_DEFAULTS.referenceScale) : '' };
    }
    return {
      id: m.id,
      role: m.role,
      prompt: m.prompt,
      negativePrompt: m.negative_prompt,
      guidance: unlessDefault(m.guidance_scale, UI_DEFAULTS.guidance),
      // with schedule.p the per-model p is the schedule's, and sending both is refused
      p: spec.aggregation.schedule?.p ? '' : unlessDefault(m.p, defaultP(k, width, height, base)),
      weight: source === 'explicit' ? String(m.weight) : '',
      grounding: info.conditions.grounding ? m.grounding.map((g) => ({ phrase: g.phrase, box: [...g.box] as Box })) : null,
      reference,
    };
  });

  let omega = '';
  let omega2 = '';
  if (source === 'official' && n === 2) {
    omega = unlessDefault(spec.models[0]!.weight, UI_OFFICIAL.omega);
  } else if (source === 'official' && n === 3) {
    const found = omegasFromWeights(spec.models.map((m) => m.weight));
    if (!found.exact) notes.push('omega and omega2 were found back from the weights to 12 digits; the weights may differ in the last bits');
    omega = unlessDefault(found.omega, UI_OFFICIAL.omega1);
    omega2 = unlessDefault(found.omega2, UI_OFFICIAL.omega2);
  }
  const [start, end] = spec.aggregation.window;
  const defaultWindow = start === UI_DEFAULTS.window[0] && end === UI_DEFAULTS.window[1];
  if (spec.sampler.eta !== 0) notes.push(`the page has no input for sampler.eta: ${spec.sampler.eta} was left out (the default 0 applies)`);
  if (spec.outputs.latents) notes.push('the page has no input for outputs.latents: it was left out');
  if (spec.outputs.solo && n === 1) notes.push('outputs.solo adds nothing to a job of one model (it is already the model alone): it was left out');
  return {
    ok: true,
    notes,
    state: {
      models,
      weightMode: source === 'explicit' ? 'weights' : 'omega',
      omega,
      omega2,
      windowStart: defaultWindow ? '' : String(start),
      windowEnd: defaultWindow ? '' : String(end),
      clamp: spec.aggregation.clamp,
      steps: unlessDefault(spec.sampler.steps, UI_DEFAULTS.steps),
      seed: String(spec.sampler.seed),
      width: unlessDefault(width, base.sizes.default[0]),
      height: unlessDefault(height, base.sizes.default[1]),
      scheduler: spec.sampler.scheduler,
      images: unlessDefault(spec.outputs.images, 1),
      perModel: spec.outputs.per_model,
      // absent in jobs stored before outputs.solo existed
      solo: (spec.outputs.solo ?? false) && n > 1,
      schedule: spec.aggregation.schedule ? JSON.stringify(spec.aggregation.schedule) : '',
    },
  };
}
