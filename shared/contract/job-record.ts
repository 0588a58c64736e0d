/**
 * The job as clients see it (GET /v1/jobs/:id, webhooks, the event stream), the lifecycle,
 * RFC 9457 problems, the queue message and the webhook payload.
 */
import { z } from 'zod';
import { FieldError } from './field-errors.ts';
import { JobSpec } from './job-spec.ts';
import { JobWarning } from './warnings.ts';

export const JobStatus = z.enum(['queued', 'running', 'succeeded', 'failed', 'canceled']);
export type JobStatus = z.output<typeof JobStatus>;
export const TERMINAL: readonly JobStatus[] = ['succeeded', 'failed', 'canceled'];
export const isTerminal = (s: JobStatus): boolean => TERMINAL.includes(s);

/** RFC 9457 problem details, with the fields at fault in `errors`. */
export const Problem = z
  .object({
    type: z.string().default('about:blank'),
    title: z.string(),
    status: z.number().int(),
    detail: z.string().optional(),
    instance: z.string().optional(),
    errors: z.array(FieldError).optional(),
  })
  .meta({ id: 'Problem' });
export type Problem = z.output<typeof Problem>;

export const Progress = z
  .object({
    /** steps done of the current image, and its total */
    step: z.number().int(),
    total: z.number().int(),
    /**
     * 'aggregating' while the window runs, then 'base_only', 'decoding'; 'solo' while a model
     * runs alone for outputs.solo (`model` says which; step counts its own steps)
     */
    phase: z.enum(['starting', 'aggregating', 'base_only', 'decoding', 'solo']),
    image: z.number().int(),
    images: z.number().int(),
    /** the model running alone, in phase 'solo' */
    model: z.string().optional(),
  })
  .meta({ id: 'Progress' });
export type Progress = z.output<typeof Progress>;

/**
 * A live preview of a running job (`event: preview` on GET /v1/jobs/{id}/events): a small
 * picture of every model's current state. Each picture is the model's current latent
 * denoised to an estimate of its final latent with its latest noise prediction, decoded by
 * the VAE (`method: vae_decode_x0`); during the window it shows the models being pulled
 * together. Only images up to 64×64 pixels get previews (the shapes family): larger ones
 * (SD 1.5 at 512×512) would cost several UNet calls per picture, and get none.
 */
export const JobPreview = z
  .object({
    job_id: z.string(),
    /** increases with every frame of the job */
    seq: z.number().int(),
    at: z.string(),
    image: z.number().int(),
    images: z.number().int(),
    /** steps finished (of the image, or of the model's solo run in phase 'solo') */
    step: z.number().int(),
    total: z.number().int(),
    phase: z.enum(['aggregating', 'base_only', 'decoding', 'solo']),
    /** the frame of the window's last step: every model just pulled toward the aggregate */
    window_end: z.boolean(),
    method: z.enum(['vae_decode_x0']),
    models: z.array(
      z.object({
        id: z.string(),
        /** 'aggregated': the model inside the aggregated run; 'solo': the model running alone (outputs.solo) */
        run: z.enum(['aggregated', 'solo']),
        width: z.number().int(),
        height: z.number().int(),
        /** a PNG data URL, at most 64×64 */
        png: z.string(),
      }),
    ),
  })
  .meta({ id: 'JobPreview' });
export type JobPreview = z.output<typeof JobPreview>;

export const QueueInfo = z
  .object({
    /** jobs ahead of this one (approximate on SQS), null when unknown */
    position: z.number().int().nullable(),
    /** why it waits, in words */
    reason: z.string(),
  })
  .meta({ id: 'QueueInfo' });

export const Usage = z
  .object({
    unet_evals: z.number().int(),
    images: z.number().int(),
    /** runner wall time spent on this job (GPU milliseconds on a GPU runner) */
    runner_ms: z.number(),
  })
  .meta({ id: 'Usage' });
export type Usage = z.output<typeof Usage>;

export const Timings = z
  .object({
    queued_ms: z.number().nullable(),
    run_ms: z.number().nullable(),
    /** time inside onnxruntime vs the rest of the sampler */
    onnx_ms: z.number().nullable(),
    outside_onnx_ms: z.number().nullable(),
  })
  .meta({ id: 'Timings' });

export const Output = z
  .object({
    /**
     * 'aggregated': the base model's final image in the aggregated run. A model id
     * (outputs.per_model): that model's own trajectory inside the aggregated run, pulled
     * toward the others during the window; not the model alone. 'solo' (outputs.solo): the
     * model run alone from the same initial noise, without the others; `model` says which.
     */
    source: z.string(),
    /** the model the image comes from (the base for 'aggregated') */
    model: z.string().optional(),
    index: z.number().int(),
    kind: z.enum(['image', 'latent']),
    content_type: z.string(),
    /** presigned, minted on every read, never stored */
    url: z.string(),
    expires_at: z.string(),
    width: z.number().int().optional(),
    height: z.number().int().optional(),
  })
  .meta({ id: 'Output' });
export type Output = z.output<typeof Output>;

export const WebhookDelivery = z
  .object({
    attempt: z.number().int(),
    at: z.string(),
    status: z.number().int().nullable(),
    ok: z.boolean(),
    error: z.string().optional(),
    next_attempt_at: z.string().nullable(),
  })
  .meta({ id: 'WebhookDelivery' });

export const JobRecord = z
  .object({
    id: z.string(),
    object: z.literal('job'),
    status: JobStatus,
    created_at: z.string(),
    started_at: z.string().nullable(),
    finished_at: z.string().nullable(),
    spec: JobSpec,
    progress: Progress.nullable(),
    queue: QueueInfo.nullable(),
    usage: Usage.nullable(),
    timings: Timings,
    error: Problem.nullable(),
    /** what was changed or is pointless in this job (size rounded, prompt cut, ...); see JobWarning */
    warnings: z.array(JobWarning),
    outputs: z.array(Output),
    webhook: z.object({ url: z.string(), deliveries: z.array(WebhookDelivery) }).nullable(),
    urls: z.object({ self: z.string(), cancel: z.string(), events: z.string() }),
  })
  .meta({ id: 'Job' });
export type JobRecord = z.output<typeof JobRecord>;

export const JobList = z
  .object({ object: z.literal('list'), data: z.array(JobRecord), next_cursor: z.string().nullable() })
  .meta({ id: 'JobList' });
export type JobList = z.output<typeof JobList>;

/** The queue message: versioned, carries only identifiers (the spec is in the store). */
export const QueueMessage = z
  .object({ v: z.literal(1), job_id: z.string(), tenant: z.string(), enqueued_at: z.string() })
  .strict()
  .meta({ id: 'QueueMessage' });
export type QueueMessage = z.output<typeof QueueMessage>;

/** Body of a webhook request, signed with Standard Webhooks. */
export const WebhookPayload = z
  .object({
    type: z.enum(['job.succeeded', 'job.failed', 'job.canceled']),
    timestamp: z.string(),
    data: JobRecord,
  })
  .meta({ id: 'WebhookPayload' });
export type WebhookPayload = z.output<typeof WebhookPayload>;

export const UsageDay = z
  .object({ day: z.string(), jobs: z.number().int(), images: z.number().int(), unet_evals: z.number().int(), runner_ms: z.number() })
  .meta({ id: 'UsageDay' });
export type UsageDay = z.output<typeof UsageDay>;
export const UsageReport = z
  .object({ object: z.literal('usage'), from: z.string(), to: z.string(), days: z.array(UsageDay), total: UsageDay.omit({ day: true }) })
  .meta({ id: 'UsageReport' });
export type UsageReport = z.output<typeof UsageReport>;
