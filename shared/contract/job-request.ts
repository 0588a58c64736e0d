/**
 * The job body: exactly what POST /v1/jobs takes, what `amdm generate REQUEST.json` reads
 * and what examples/*.json contain. The wire format is snake_case JSON.
 *
 * This schema checks everything that can be checked without knowing the installed
 * models (types, ranges, cross-field rules). Checks that need the model catalog (does the
 * model exist, do the models share one ecosystem, does it take grounding, how many objects,
 * which sizes) live in `shapeJobRequest` (job-spec.ts), which also fills the defaults.
 */
import { z } from 'zod';
import { AGGREGATING_SCHEDULERS, SCHEDULER_NAMES, SCHEDULERS } from './schedulers.ts';

export const LIMITS = {
  maxModels: 4,
  maxPromptChars: 1000,
  maxPhraseChars: 200,
  /** GLIGEN's 30 slots; a model's manifest may allow fewer, and shaping enforces it */
  maxGroundingObjects: 30,
  /** InteractDiffusion's 30 slots (subject-action-object triplets); likewise per model */
  maxInteractions: 30,
  minSteps: 1,
  maxSteps: 100,
  maxImages: 4,
  maxGuidance: 30,
  maxSide: 2048,
  /** inline reference images: base64 text length (about 1 MiB decoded) */
  maxInlineImageBase64: 1_400_000,
  maxSeed: 0xffff_ffff,
  maxWebhookUrlChars: 2048,
} as const;

const finite = () => z.number().finite();

/** The noise generators a job can ask for (sampler.noise). */
export const NOISE_NAMES = ['amdm', 'torch'] as const;
export type NoiseName = (typeof NOISE_NAMES)[number];

export const Box = z
  .tuple([finite(), finite(), finite(), finite()], {
    // zod's own text ("expected tuple, received undefined") names neither the shape nor the range
    error: (iss) =>
      iss.input === undefined
        ? 'required: a box [x0, y0, x1, y1] normalized to [0, 1]'
        : iss.code === 'invalid_type' || iss.code === 'too_big' || iss.code === 'too_small'
          ? 'must be a box [x0, y0, x1, y1]: four numbers normalized to [0, 1]'
          : undefined,
  })
  .superRefine((b, ctx) => {
    if (b.some((v) => v < 0 || v > 1)) {
      ctx.addIssue({ code: 'custom', message: 'box coordinates must lie in [0, 1] (normalized x0, y0, x1, y1)' });
    } else if (!(b[0] < b[2] && b[1] < b[3])) {
      ctx.addIssue({ code: 'custom', message: 'box must have x0 < x1 and y0 < y1 (normalized x0, y0, x1, y1)' });
    }
  })
  .meta({ description: 'Normalized [x0, y0, x1, y1], origin top-left, each in [0, 1], x0 < x1, y0 < y1.' });

export const GroundingObject = z
  .object({
    phrase: z.string().trim().min(1).max(LIMITS.maxPhraseChars),
    box: Box,
  })
  .strict()
  .meta({ id: 'GroundingObject' });

/**
 * One subject-action-object triplet (InteractDiffusion): who does what to whom, and where
 * the subject and the object are. The action's region is derived by the model (between
 * the two boxes).
 */
export const Interaction = z
  .object({
    subject: z.string().trim().min(1).max(LIMITS.maxPhraseChars),
    subject_box: Box,
    action: z.string().trim().min(1).max(LIMITS.maxPhraseChars),
    object: z.string().trim().min(1).max(LIMITS.maxPhraseChars),
    object_box: Box,
  })
  .strict()
  .meta({ id: 'Interaction' });

/**
 * Scheduled sampling (GLIGEN, InteractDiffusion): the grounding layers run for the first
 * floor(beta × steps) steps and are off after, trading placement for image quality. The
 * model's own default (GET /v1/models, conditions.scheduled_sampling) unless given.
 */
export const ScheduledSampling = z
  .object({ beta: finite().min(0).max(1) })
  .strict()
  .meta({ id: 'ScheduledSampling' });

export const ReferenceImage = z
  .object({
    /** id returned by POST /v1/uploads */
    upload_id: z.string().regex(/^upl_[A-Za-z0-9]{10,40}$/, 'must be an id returned by POST /v1/uploads').optional(),
    /** PNG or JPEG bytes, base64 (no data: prefix) */
    data: z
      .string()
      .max(LIMITS.maxInlineImageBase64, `inline images are limited to ${LIMITS.maxInlineImageBase64} base64 characters; upload larger ones with POST /v1/uploads`)
      .regex(/^[A-Za-z0-9+/]+={0,2}$/, 'must be base64 without a data: prefix')
      .optional(),
    /** IP-Adapter scale of the image tokens */
    scale: finite().min(0).max(2).default(0.8),
  })
  .strict()
  .superRefine((r, ctx) => {
    if ((r.upload_id === undefined) === (r.data === undefined)) {
      ctx.addIssue({ code: 'custom', message: 'give exactly one of upload_id or data' });
    }
  })
  .meta({ id: 'ReferenceImage' });

export const ModelSpec = z
  .object({
    id: z.string().regex(/^[a-z0-9][a-z0-9._-]{0,63}$/, 'must be a model id from GET /v1/models'),
    role: z.enum(['base', 'auxiliary']),
    prompt: z.string().max(LIMITS.maxPromptChars),
    negative_prompt: z.string().max(LIMITS.maxPromptChars).default(''),
    guidance_scale: finite().min(0).max(LIMITS.maxGuidance).default(7.5),
    grounding: z.array(GroundingObject).max(LIMITS.maxGroundingObjects, `at most ${LIMITS.maxGroundingObjects} objects`).optional(),
    interactions: z.array(Interaction).max(LIMITS.maxInteractions, `at most ${LIMITS.maxInteractions} interactions`).optional(),
    scheduled_sampling: ScheduledSampling.optional(),
    reference_image: ReferenceImage.optional(),
    /** explicit aggregation weight; give it on every model or on none */
    weight: finite().min(0).optional(),
    /** deviation distance p, in latent units (the official code's absolute distance) */
    p: finite().min(0).max(1e4).optional(),
  })
  .strict()
  .meta({ id: 'ModelSpec' });

/**
 * The per-step extension (not in the paper; absent = the official algorithm): weights and
 * p for every step of the window, one row per step (row j is step start + j), one value per
 * model in the order of `models`. Weights here are used as given, not normalized.
 */
export const AggregationSchedule = z
  .object({
    weights: z.array(z.array(finite().min(0)).min(1).max(LIMITS.maxModels)).min(1).max(LIMITS.maxSteps).optional(),
    p: z.array(z.array(finite().min(0).max(1e4)).min(1).max(LIMITS.maxModels)).min(1).max(LIMITS.maxSteps).optional(),
  })
  .strict()
  .meta({ id: 'AggregationSchedule' });

export const Aggregation = z
  .object({
    /** official parameterization: omega for two models; omega and omega2 (ω1, ω2) for three */
    omega: finite().min(0).max(1).optional(),
    omega2: finite().min(0).max(1).optional(),
    /** inclusive step window [start, end] of deviation optimization; step 0 is never aggregated */
    window: z
      .tuple([z.number().int().min(0), z.number().int().min(0)])
      .refine((w) => w[0] <= w[1], 'window must be [start, end] with start <= end')
      .default([1, 3]),
    /** stop the pull at mu instead of overshooting it (the official code overshoots) */
    clamp: z.boolean().default(false),
    /** per-step weights and p inside the window (an extension, off by default) */
    schedule: AggregationSchedule.optional(),
  })
  .strict()
  .meta({ id: 'Aggregation' });

export const Sampler = z
  .object({
    steps: z.number().int().min(LIMITS.minSteps).max(LIMITS.maxSteps).default(20),
    /** uint32; omitted means the server picks one and reports it */
    seed: z.number().int().min(0).max(LIMITS.maxSeed).optional(),
    width: z.number().int().min(8).max(LIMITS.maxSide).optional(),
    height: z.number().int().min(8).max(LIMITS.maxSide).optional(),
    /** aggregation is defined on DDIM (VP) latents; euler is for single-model jobs */
    scheduler: z.enum(SCHEDULER_NAMES).default('ddim'),
    eta: finite().min(0).max(1).default(0),
    /**
     * the initial noise (and DDIM's eta noise): "amdm", the engine's own generator (an
     * independent stream per image and model); "torch", torch.randn on a CPU
     * torch.Generator seeded with seed + image, the models drawn in request order, as
     * diffusers pipelines and the official code draw them
     */
    noise: z.enum(NOISE_NAMES).default('amdm'),
  })
  .strict()
  .meta({ id: 'Sampler' });

export const Outputs = z
  .object({
    /** independent samples; image i uses seed + i */
    images: z.number().int().min(1).max(LIMITS.maxImages).default(1),
    /**
     * also return every model's own image inside the aggregated run: its own trajectory,
     * pulled toward the others during the window (keeps every model running to the last step)
     */
    per_model: z.boolean().default(false),
    /**
     * also run every model alone, from the same initial noise it had in the aggregated run,
     * and return its image: what each model makes without the others (extra UNet calls,
     * metered; see spec.estimate.solo_unet_evals)
     */
    solo: z.boolean().default(false),
    /** also return the final base latent (float32 little-endian) */
    latents: z.boolean().default(false),
  })
  .strict()
  .meta({ id: 'Outputs' });

export const Webhook = z
  .object({
    url: z.string().max(LIMITS.maxWebhookUrlChars).url().refine((u) => /^https?:\/\//i.test(u), 'must be an http(s) URL'),
  })
  .strict()
  .meta({ id: 'Webhook' });

export const JobRequest = z
  .object({
    models: z.array(ModelSpec).min(1).max(LIMITS.maxModels),
    aggregation: Aggregation.default({ window: [1, 3], clamp: false }),
    sampler: Sampler.default({ steps: 20, scheduler: 'ddim', eta: 0, noise: 'amdm' }),
    outputs: Outputs.default({ images: 1, per_model: false, solo: false, latents: false }),
    webhook: Webhook.optional(),
  })
  .strict()
  .superRefine((r, ctx) => {
    const bases = r.models.filter((m) => m.role === 'base').length;
    if (bases !== 1) {
      ctx.addIssue({ code: 'custom', path: ['models'], message: `exactly one model must have role "base" (found ${bases})` });
    }
    const withWeight = r.models.filter((m) => m.weight !== undefined).length;
    if (withWeight !== 0 && withWeight !== r.models.length) {
      ctx.addIssue({ code: 'custom', path: ['models'], message: 'give weight on every model or on none' });
    }
    if (withWeight === r.models.length && r.models.every((m) => m.weight === 0)) {
      ctx.addIssue({ code: 'custom', path: ['models', 0, 'weight'], message: 'weights must not all be zero' });
    }
    const n = r.models.length;
    if (withWeight > 0 && (r.aggregation.omega !== undefined || r.aggregation.omega2 !== undefined)) {
      ctx.addIssue({ code: 'custom', path: ['aggregation', 'omega'], message: 'give either omega (official parameterization) or per-model weights, not both' });
    }
    if (r.aggregation.omega !== undefined && n !== 2 && n !== 3) {
      ctx.addIssue({ code: 'custom', path: ['aggregation', 'omega'], message: 'omega applies to two or three models; use per-model weights otherwise' });
    }
    if (r.aggregation.omega2 !== undefined && n !== 3) {
      ctx.addIssue({ code: 'custom', path: ['aggregation', 'omega2'], message: 'omega2 applies to three models only' });
    }
    const [, end] = r.aggregation.window;
    // the window only exists between models: a single-model job of 1-3 steps must not fail
    // on the default window it never asked for
    if (n > 1 && end >= r.sampler.steps) {
      ctx.addIssue({ code: 'custom', path: ['aggregation', 'window'], message: `window must lie in [0, steps) = [0, ${r.sampler.steps})` });
    }
    const sch = r.aggregation.schedule;
    if (sch) {
      const [start] = r.aggregation.window;
      const rows = end - start + 1;
      if (n === 1) ctx.addIssue({ code: 'custom', path: ['aggregation', 'schedule'], message: 'a schedule applies to two or more models' });
      else if (start < 1) ctx.addIssue({ code: 'custom', path: ['aggregation', 'window'], message: 'with a schedule the window must start at step 1 or later (step 0 is never aggregated)' });
      for (const field of ['weights', 'p'] as const) {
        const table = sch[field];
        if (!table || n === 1 || start < 1) continue;
        if (table.length !== rows) {
          ctx.addIssue({ code: 'custom', path: ['aggregation', 'schedule', field], message: `needs one row per window step: ${rows} rows for window [${start}, ${end}] (got ${table.length})` });
        }
        table.forEach((row, j) => {
          if (row.length !== n) ctx.addIssue({ code: 'custom', path: ['aggregation', 'schedule', field, j], message: `needs one value per model: ${n} (got ${row.length})` });
          else if (field === 'weights' && row.every((v) => v === 0)) ctx.addIssue({ code: 'custom', path: ['aggregation', 'schedule', field, j], message: 'weights must not all be zero' });
        });
      }
      if (sch.weights && (withWeight > 0 || r.aggregation.omega !== undefined || r.aggregation.omega2 !== undefined)) {
        ctx.addIssue({ code: 'custom', path: ['aggregation', 'schedule', 'weights'], message: 'give either schedule.weights or the weights (omega, or weight on every model), not both' });
      }
      if (sch.p && r.models.some((m) => m.p !== undefined)) {
        ctx.addIssue({ code: 'custom', path: ['aggregation', 'schedule', 'p'], message: 'give either schedule.p or p on the models, not both' });
      }
    }
    if (n > 1 && !SCHEDULERS[r.sampler.scheduler].vpLatents) {
      const allowed = AGGREGATING_SCHEDULERS.map((s) => `"${s}"`).join(' or ');
      ctx.addIssue({ code: 'custom', path: ['sampler', 'scheduler'], message: `aggregation of several models needs scheduler ${allowed}: its deviation step is defined on DDIM (VP) latents` });
    }
  })
  .meta({ id: 'JobRequest' });

/** What a client sends (defaults optional). */
export type JobRequestInput = z.input<typeof JobRequest>;
/** After parsing: defaults filled, still without catalog knowledge. */
export type JobRequest = z.output<typeof JobRequest>;
export type ModelSpec = z.output<typeof ModelSpec>;
export type GroundingObject = z.output<typeof GroundingObject>;
export type Interaction = z.output<typeof Interaction>;
