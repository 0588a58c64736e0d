/**
 * Request shaping: a parsed JobRequest plus the model catalog -> a JobSpec, the fully
 * resolved job the runner executes (base model first, weights normalized, p, seed and
 * size decided). The edge stores the JobSpec, so the runner never re-derives a default,
 * and `amdm generate` shapes through the same function, so local and remote runs agree.
 */
import { z } from 'zod';
import type { FieldError } from './field-errors.ts';
import { OFFICIAL, officialP, officialWeights, soloUnetEvalsPerImage, unetEvalsPerImage, unitNormWeights } from '../amdm/math.ts';
import type { JobRequest } from './job-request.ts';
import { GroundingObject, Interaction, NOISE_NAMES } from './job-request.ts';
import { SCHEDULER_NAMES } from './schedulers.ts';
import { JobWarning } from './warnings.ts';
import type { JobWarning as JobWarningType } from './warnings.ts';
import type { ModelInfo } from './models.ts';

export const SpecModel = z.object({
  id: z.string(),
  role: z.enum(['base', 'auxiliary']),
  prompt: z.string(),
  negative_prompt: z.string(),
  guidance_scale: z.number(),
  grounding: z.array(GroundingObject),
  /** absent in jobs stored before interactions existed: none */
  interactions: z.array(Interaction).optional(),
  /**
   * the scheduled-sampling beta this job runs the model's grounding layers with (the
   * request's, else the model's default); null or absent for a model without them
   */
  scheduled_sampling: z.object({ beta: z.number() }).nullable().optional(),
  /**
   * The reference image. Shaping copies what the client gave (upload_id or inline data);
   * the edge then replaces both with `key`, the image's key in the store, so no queue
   * message or record carries image bytes. Local one-shot runs keep `data`.
   */
  reference_image: z
    .object({ upload_id: z.string().optional(), data: z.string().optional(), key: z.string().optional(), scale: z.number() })
    .nullable(),
  /** final aggregation weight (what multiplies this model's latent) */
  weight: z.number(),
  p: z.number(),
  /**
   * the model's position in the request's models[] (the spec puts the base first): the
   * order sampler.noise "torch" draws the models in; absent in older jobs (spec order)
   */
  request_index: z.number().int().min(0).optional(),
});

export const JobSpec = z
  .object({
    /** models[0] is the base */
    models: z.array(SpecModel).min(1),
    aggregation: z.object({
      window: z.tuple([z.number().int(), z.number().int()]),
      clamp: z.boolean(),
      /** where the weights came from, for the record */
      weights: z.enum(['single', 'official', 'explicit', 'equal', 'schedule']),
      /**
       * The per-step extension (shared/amdm/math.ts StepSchedule): weights and p per window
       * step, one per model in this spec's order (base first), used as given. Absent: the
       * official behaviour, the models' own weight and p at every step.
       */
      schedule: z
        .object({ weights: z.array(z.array(z.number())).optional(), p: z.array(z.array(z.number())).optional() })
        .optional(),
    }),
    sampler: z.object({
      steps: z.number().int(),
      seed: z.number().int(),
      width: z.number().int(),
      height: z.number().int(),
      scheduler: z.enum(SCHEDULER_NAMES),
      eta: z.number(),
      /** absent in jobs stored before it existed: "amdm" */
      noise: z.enum(NOISE_NAMES).optional(),
    }),
    /** `solo` is absent in jobs stored before it existed (false) */
    outputs: z.object({ images: z.number().int(), per_model: z.boolean(), solo: z.boolean().optional(), latents: z.boolean() }),
    estimate: z.object({
      /** UNet calls (one CFG-batched call each) of the whole job, solo runs included */
      unet_evals: z.number().int(),
      /** of which the solo runs (outputs.solo) */
      solo_unet_evals: z.number().int().optional(),
    }),
    /** what shaping changed or found pointless (also in the record's `warnings`) */
    warnings: z.array(JobWarning).optional(),
  })
  .meta({ id: 'JobSpec' });

export type JobSpec = z.output<typeof JobSpec>;
export type SpecModel = z.output<typeof SpecModel>;

function roundTo(v: number, multiple: number, min: number, max: number): number {
  const r = Math.round(v / multiple) * multiple;
  return Math.min(Math.max(r, Math.ceil(min / multiple) * multiple), Math.floor(max / multiple) * multiple);
}

export interface ShapeOptions {
  /** a uint32 for requests without a seed */
  randomSeed: () => number;
}

export type ShapeResult = { ok: true; spec: JobSpec } | { ok: false; errors: FieldError[] };

const side = (w: number, h: number) => `${w}×${h}`;

/** Resolve a parsed request against the catalog. Errors name the JSON field. */
export function shapeJobRequest(req: JobRequest, catalog: readonly ModelInfo[], opts: ShapeOptions): ShapeResult {
  const errors: FieldError[] = [];
  const byId = new Map(catalog.map((m) => [m.id, m]));
  const infos: (ModelInfo | undefined)[] = req.models.map((m, i) => {
    const info = byId.get(m.id);
    if (!info) {
      const known = catalog.map((c) => c.id).join(', ') || 'none installed';
      errors.push({ field: `models[${i}].id`, message: `unknown model "${m.id}"; installed: ${known}` });
    }
    return info;
  });
  const baseIndex = req.models.findIndex((m) => m.role === 'base');
  const base = infos[baseIndex];
  if (errors.length > 0 || !base) return { ok: false, errors };

  req.models.forEach((m, i) => {
    const info = infos[i]!;
    if (info.ecosystem !== base.ecosystem) {
      errors.push({
        field: `models[${i}].id`,
        message: `model "${m.id}" is of ecosystem "${info.ecosystem}" but the base "${base.id}" is of "${base.ecosystem}"; aggregated models must share latent space, VAE and noise schedule`,
      });
    }
    const g = info.conditions.grounding;
    if (m.grounding && m.grounding.length > 0) {
      if (!g) {
        errors.push({ field: `models[${i}].grounding`, message: `model "${m.id}" takes no grounding boxes` });
      } else if (m.grounding.length > g.max_objects) {
        errors.push({ field: `models[${i}].grounding`, message: `model "${m.id}" takes at most ${g.max_objects} objects (got ${m.grounding.length})` });
      }
    }
    const ia = info.conditions.interactions;
    if (m.interactions && m.interactions.length > 0) {
      if (!ia) {
        errors.push({ field: `models[${i}].interactions`, message: `model "${m.id}" takes no interactions (subject-action-object triplets)` });
      } else if (m.interactions.length > ia.max_interactions) {
        errors.push({ field: `models[${i}].interactions`, message: `model "${m.id}" takes at most ${ia.max_interactions} interactions (got ${m.interactions.length})` });
      }
    }
    if (m.scheduled_sampling && !info.conditions.scheduled_sampling) {
      errors.push({ field: `models[${i}].scheduled_sampling`, message: `model "${m.id}" has no scheduled sampling (no grounding layers to switch off)` });
    }
    if (m.reference_image && !info.conditions.reference_image) {
      errors.push({ field: `models[${i}].reference_image`, message: `model "${m.id}" takes no reference image` });
    }
    if (!m.reference_image && info.conditions.reference_image) {
      errors.push({ field: `models[${i}].reference_image`, message: `model "${m.id}" needs a reference image` });
    }
    if (!info.schedulers.includes(req.sampler.scheduler)) {
      errors.push({ field: 'sampler.scheduler', message: `model "${m.id}" supports ${info.schedulers.join(', ')}` });
    }
  });

  const warnings: JobWarningType[] = [];
  const sizes = base.sizes;
  const size = (v: number | undefined, def: number, field: 'width' | 'height'): number => {
    if (v === undefined) return def;
    if (v < sizes.min || v > sizes.max) {
      errors.push({ field: `sampler.${field}`, message: `model "${base.id}" renders ${field} from ${sizes.min} to ${sizes.max} pixels (got ${v})` });
      return def;
    }
    const rounded = roundTo(v, sizes.multiple, sizes.min, sizes.max);
    if (rounded !== v) {
      warnings.push({ code: 'size_rounded', field: `sampler.${field}`, message: `${field} ${v} was rounded to ${rounded}: model "${base.id}" renders multiples of ${sizes.multiple} pixels` });
    }
    return rounded;
  };
  const width = size(req.sampler.width, sizes.default[0], 'width');
  const height = size(req.sampler.height, sizes.default[1], 'height');
  if (errors.length > 0) return { ok: false, errors };
  const trained = sizes.trained;
  if (trained && [width, height].some((v) => v < trained.min || v > trained.max)) {
    const range = trained.min === trained.max ? side(trained.min, trained.max) : `sides from ${trained.min} to ${trained.max}`;
    warnings.push({
      code: 'size_untrained',
      field: width < trained.min || width > trained.max ? 'sampler.width' : 'sampler.height',
      message: `model "${base.id}" was trained at ${range} pixels; at ${side(width, height)} it renders, but expect repeated or broken objects`,
    });
  }

  // base first, auxiliaries in the order given
  const order = [baseIndex, ...req.models.map((_, i) => i).filter((i) => i !== baseIndex)];
  const n = order.length;
  let weights: number[];
  let source: JobSpec['aggregation']['weights'];
  if (n === 1) {
    weights = [1];
    source = 'single';
  } else if (req.aggregation.schedule?.weights) {
    // the schedule's weights rule every step that aggregates; the first step's stand for the record
    weights = order.map((i) => req.aggregation.schedule!.weights![0]![i]!);
    source = 'schedule';
  } else if (req.models[0]!.weight !== undefined) {
    weights = unitNormWeights(order.map((i) => req.models[i]!.weight!));
    source = 'explicit';
  } else if (n <= 3) {
    weights = officialWeights(n, req.aggregation.omega, req.aggregation.omega2);
    source = 'official';
    // omega = 1 with omega2 = 0 zeroes all three; the aggregate would be the zero latent
    if (!weights.some((v) => v > 0)) {
      return { ok: false, errors: [{ field: 'aggregation.omega2', message: `with omega = ${req.aggregation.omega ?? OFFICIAL.omega1}, omega2 = ${req.aggregation.omega2} makes the three official weights all be zero; give omega2 above 0 or omega below 1` }] };
    }
  } else {
    weights = unitNormWeights(order.map(() => 1));
    source = 'equal';
  }

  // settings under which an auxiliary model runs (and costs) but cannot change the image
  if (n > 1 && req.aggregation.window[1] < 1) {
    warnings.push({
      code: 'window_empty',
      field: 'aggregation.window',
      message: `window [${req.aggregation.window.join(', ')}] aggregates no step (step 0 never is): the auxiliary models cannot change the image; start the window at 1 or later`,
    });
  }
  weights.forEach((w, k) => {
    if (k === 0 || w !== 0) return;
    const i = order[k]!;
    // official weights: omega = 1 zeroes every auxiliary; otherwise omega2 (0 or 1) zeroed one of three
    const omegaIsOne = (req.aggregation.omega ?? (n === 2 ? OFFICIAL.omega : OFFICIAL.omega1)) === 1;
    const field = source === 'explicit' ? `models[${i}].weight` : n === 3 && !omegaIsOne ? 'aggregation.omega2' : 'aggregation.omega';
    warnings.push({ code: 'auxiliary_weight_zero', field, message: `model "${req.models[i]!.id}" gets aggregation weight 0, so it cannot change the image (it still runs until the window ends)` });
  });
  if (n === 1 && req.outputs.solo) {
    warnings.push({ code: 'solo_single_model', field: 'outputs.solo', message: 'a job of one model is already that model alone: outputs.solo adds nothing' });
  }

  const latent = { channels: base.latent.channels, width: width / base.latent.vae_scale_factor, height: height / base.latent.vae_scale_factor };
  const models: SpecModel[] = order.map((i, k) => {
    const m = req.models[i]!;
    return {
      id: m.id,
      role: m.role,
      prompt: m.prompt,
      negative_prompt: m.negative_prompt,
      guidance_scale: m.guidance_scale,
      grounding: m.grounding ?? [],
      ...(infos[i]!.conditions.interactions ? { interactions: m.interactions ?? [] } : {}),
      ...(infos[i]!.conditions.scheduled_sampling ? { scheduled_sampling: { beta: m.scheduled_sampling?.beta ?? infos[i]!.conditions.scheduled_sampling!.beta } } : {}),
      reference_image: m.reference_image
        ? m.reference_image.upload_id !== undefined
          ? { upload_id: m.reference_image.upload_id, scale: m.reference_image.scale }
          : { data: m.reference_image.data, scale: m.reference_image.scale }
        : null,
      weight: weights[k]!,
      p: req.aggregation.schedule?.p?.[0]?.[i] ?? m.p ?? officialP(k === 0 ? 'base' : 'auxiliary', latent),
      request_index: i,
    };
  });
  // schedule rows follow the request's model order; the spec's is base first
  const sch = req.aggregation.schedule;
  const reorder = (rows: number[][] | undefined) => rows?.map((row) => order.map((i) => row[i]!));
  const schedule = n > 1 && sch && (sch.weights || sch.p) ? { ...(sch.weights ? { weights: reorder(sch.weights) } : {}), ...(sch.p ? { p: reorder(sch.p) } : {}) } : undefined;

  const steps = req.sampler.steps;
  const window = req.aggregation.window;
  const soloEvals = req.outputs.solo ? soloUnetEvalsPerImage(n, steps, window) * req.outputs.images : 0;
  const evals = unetEvalsPerImage(n, steps, window[1], req.outputs.per_model) * req.outputs.images + soloEvals;
  return {
    ok: true,
    spec: {
      models,
      aggregation: { window, clamp: req.aggregation.clamp, weights: source, ...(schedule ? { schedule } : {}) },
      sampler: {
        steps,
        seed: req.sampler.seed ?? opts.randomSeed(),
        width,
        height,
        scheduler: req.sampler.scheduler,
        eta: req.sampler.eta,
        noise: req.sampler.noise,
      },
      outputs: req.outputs,
      estimate: { unet_evals: evals, solo_unet_evals: soloEvals },
      warnings,
    },
  };
}
