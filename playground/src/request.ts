/**
 * The form -> the JSON body of POST /v1/jobs. Pure, so it is tested without a browser.
 *
 * The page checks only what an input cannot say by itself: that a number field holds a
 * number (and the seed a uint32, parsed as digits, never evaluated). Everything else, the
 * ranges and the cross-field rules, is the server's to judge; its problem+json names the
 * field and the page shows the message beside that input. Blank optional fields are left
 * out so the server's defaults apply, exactly as in a hand-written request.
 */
import type { FieldError, JobRequestInput } from '../../shared/contract/index.ts';
// math.ts imports nothing, so the page counts the cost with the server's own formulas without bundling zod
import { soloUnetEvalsPerImage, unetEvalsPerImage } from '../../shared/amdm/math.ts';
import { UI_DEFAULTS, UI_LIMITS } from './limits.ts';

export type Box = [number, number, number, number];

export interface FormModel {
  id: string;
  role: 'base' | 'auxiliary';
  prompt: string;
  negativePrompt: string;
  /** raw input text: '' means "the default" */
  guidance: string;
  p: string;
  weight: string;
  /** present when the model takes grounding */
  grounding: { phrase: string; box: Box }[] | null;
  /**
   * present when the model takes a reference image: an upload id (a file chosen here, or a
   * past job's image) or inline base64 (an example's image); both null until one is chosen
   */
  reference: { uploadId: string | null; data: string | null; scale: string } | null;
}

export interface FormState {
  models: FormModel[];
  weightMode: 'omega' | 'weights';
  omega: string;
  omega2: string;
  windowStart: string;
  windowEnd: string;
  clamp: boolean;
  steps: string;
  seed: string;
  width: string;
  height: string;
  scheduler: 'ddim' | 'euler';
  images: string;
  perModel: boolean;
  /** outputs.solo: each model also run alone (sent only with two models or more) */
  solo: boolean;
  /**
   * aggregation.schedule (the per-step extension) as JSON text, columns in the form's model
   * order (base first): '' sends none, the official algorithm
   */
  schedule: string;
}

/** A whole number 0..2^32-1 from digits only; anything else is an error message. */
export function parseSeed(text: string): { ok: true; value: number | undefined } | { ok: false; message: string } {
  const t = text.trim();
  if (t === '') return { ok: true, value: undefined };
  if (!/^\d{1,10}$/.test(t) || Number(t) > UI_LIMITS.maxSeed) {
    return { ok: false, message: `must be a whole number from 0 to ${UI_LIMITS.maxSeed} (or empty for a random seed)` };
  }
  return { ok: true, value: Number(t) };
}

export function buildRequest(s: FormState): { request: JobRequestInput; errors: FieldError[] } {
  const errors: FieldError[] = [];
  /** '' -> undefined; a number -> it; anything else -> an error on `field` */
  const num = (text: string, field: string, integer = false): number | undefined => {
    const t = text.trim();
    if (t === '') return undefined;
    const v = Number(t);
    if (!Number.isFinite(v)) {
      errors.push({ field, message: 'must be a number' });
      return undefined;
    }
    if (integer && !Number.isInteger(v)) {
      errors.push({ field, message: 'must be a whole number' });
      return undefined;
    }
    return v;
  };

  const models = s.models.map((m, i) => {
    const f = `models[${i}]`;
    const guidance = num(m.guidance, `${f}.guidance_scale`);
    const p = num(m.p, `${f}.p`);
    const weight = s.weightMode === 'weights' && s.models.length > 1 ? num(m.weight, `${f}.weight`) : undefined;
    if (s.weightMode === 'weights' && s.models.length > 1 && m.weight.trim() === '') errors.push({ field: `${f}.weight`, message: 'give a weight for every model' });
    let reference: ({ upload_id: string } | { data: string }) & { scale?: number } | undefined;
    if (m.reference) {
      const scale = num(m.reference.scale, `${f}.reference_image.scale`);
      const image = m.reference.uploadId !== null ? { upload_id: m.reference.uploadId } : m.reference.data !== null ? { data: m.reference.data } : null;
      if (image === null) errors.push({ field: `${f}.reference_image`, message: `model "${m.id}" needs a reference image: choose a PNG or JPEG file` });
      else reference = { ...image, ...(scale !== undefined ? { scale } : {}) };
    }
    return {
      id: m.id,
      role: m.role,
      prompt: m.prompt,
      ...(m.negativePrompt !== '' ? { negative_prompt: m.negativePrompt } : {}),
      ...(guidance !== undefined ? { guidance_scale: guidance } : {}),
      ...(m.grounding && m.grounding.length > 0 ? { grounding: m.grounding.map((g) => ({ phrase: g.phrase, box: roundBox(g.box) })) } : {}),
      ...(reference ? { reference_image: reference } : {}),
      ...(weight !== undefined ? { weight } : {}),
      ...(p !== undefined ? { p } : {}),
    };
  });

  const n = s.models.length;
  const omega = s.weightMode === 'omega' && (n === 2 || n === 3) ? num(s.omega, 'aggregation.omega') : undefined;
  const omega2 = s.weightMode === 'omega' && n === 3 ? num(s.omega2, 'aggregation.omega2') : undefined;
  const start = num(s.windowStart, 'aggregation.window[0]', true);
  const end = num(s.windowEnd, 'aggregation.window[1]', true);
  if ((start === undefined) !== (end === undefined) && !errors.some((e) => e.field.startsWith('aggregation.window'))) {
    errors.push({ field: 'aggregation.window', message: 'give both the start and the end step, or neither for the default' });
  }
  const steps = num(s.steps, 'sampler.steps', true);
  const seed = parseSeed(s.seed);
  if (!seed.ok) errors.push({ field: 'sampler.seed', message: seed.message });
  const width = num(s.width, 'sampler.width', true);
  const height = num(s.height, 'sampler.height', true);
  const images = num(s.images, 'outputs.images', true);
  // the shape (a row per window step, a value per model) and the ranges are the server's to judge
  let schedule: { weights?: number[][]; p?: number[][] } | undefined;
  if (s.schedule.trim() !== '') {
    let parsed: unknown;
    try {
      parsed = JSON.parse(s.schedule);
    } catch {
      parsed = undefined;
    }
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
      errors.push({ field: 'aggregation.schedule', message: 'must be a JSON object: {"weights": [[one number per model] per window step], "p": [[…]]}, or empty for none' });
    } else schedule = parsed as typeof schedule;
  }

  const request: JobRequestInput = {
    models,
    aggregation: {
      ...(omega !== undefined ? { omega } : {}),
      ...(omega2 !== undefined ? { omega2 } : {}),
      ...(start !== undefined && end !== undefined ? { window: [start, end] as [number, number] } : {}),
      ...(s.clamp ? { clamp: true } : {}),
      ...(schedule ? { schedule } : {}),
    },
    sampler: {
      ...(steps !== undefined ? { steps } : {}),
      ...(seed.ok && seed.value !== undefined ? { seed: seed.value } : {}),
      ...(width !== undefined ? { width } : {}),
      ...(height !== undefined ? { height } : {}),
      scheduler: s.scheduler,
    },
    outputs: {
      ...(images !== undefined ? { images } : {}),
      per_model: s.perModel && n > 1,
      // left out when off, as the server's default; a job of one model is already the model alone
      ...(s.solo && n > 1 ? { solo: true } : {}),
    },
  };
  return { request, errors };
}

/**
 * The UNet evaluations the job will cost, and how many of them the solo runs take: what
 * the server will put in spec.estimate, from the same formulas. Null while a field it
 * needs does not hold a whole number (the server will say which).
 */
export function estimateUnetEvals(s: FormState): { total: number; solo: number } | null {
  const whole = (text: string, def: number): number | null => {
    const t = text.trim();
    if (t === '') return def;
    const v = Number(t);
    return Number.isInteger(v) && v >= 0 ? v : null;
  };
  const n = s.models.length;
  const steps = whole(s.steps, UI_DEFAULTS.steps);
  const images = whole(s.images, 1);
  const blankWindow = s.windowStart.trim() === '' && s.windowEnd.trim() === '';
  const start = blankWindow ? UI_DEFAULTS.window[0] : whole(s.windowStart, -1);
  const end = blankWindow ? UI_DEFAULTS.window[1] : whole(s.windowEnd, -1);
  if (n === 0 || steps === null || steps < 1 || images === null || start === null || end === null || start < 0 || end < 0) return null;
  const solo = s.solo && n > 1 ? soloUnetEvalsPerImage(n, steps, [start, end]) * images : 0;
  return { total: unetEvalsPerImage(n, steps, end, s.perModel && n > 1) * images + solo, solo };
}

/** Four decimals are finer than any latent cell and keep the request readable. */
function roundBox(b: Box): Box {
  return b.map((v) => Math.round(v * 10_000) / 10_000) as Box;
}
