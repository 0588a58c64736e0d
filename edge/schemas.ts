/**
 * Schemas only the HTTP edge uses (path, query strings, headers, the health answer), plus
 * the examples shown in /openapi.json. The bodies clients send and read come from
 * shared/contract, which the client (shared/client) derives its types from.
 */
import { z } from 'zod';
import { JOB_ID_RE } from '../shared/ids.ts';

export const JobIdParam = z.object({
  // any string reaches the handler: an unknown id is a 404, not a validation error
  id: z.string().max(200).meta({ param: { name: 'id', in: 'path' }, example: 'job_01jd8x2m3q4r5s6t7v8w9x0y1z', description: `a job id (${JOB_ID_RE.source})` }),
});

export const ModelIdParam = z.object({
  id: z.string().max(200).meta({ param: { name: 'id', in: 'path' }, example: 'shapes-base', description: 'a model id from GET /v1/models' }),
});

export const ListJobsQuery = z.object({
  limit: z.coerce
    .number()
    .int()
    .min(1)
    .max(100)
    .default(20)
    .meta({ param: { name: 'limit', in: 'query' }, example: 20, description: 'jobs per page, 1 to 100' }),
  cursor: z
    .string()
    .max(4096)
    .optional()
    .meta({ param: { name: 'cursor', in: 'query' }, example: 'c1.dGVuYW50cy9hY21lL2luZGV4LzAwMD', description: 'next_cursor from the previous page' }),
});

const day = z.string().regex(/^\d{4}-\d{2}-\d{2}$/, 'must be a date YYYY-MM-DD (UTC)').refine((s) => !Number.isNaN(Date.parse(`${s}T00:00:00Z`)) && new Date(`${s}T00:00:00Z`).toISOString().startsWith(s), 'must be a real calendar date');

export const UsageQuery = z.object({
  from: day.optional().meta({ param: { name: 'from', in: 'query' }, example: '2025-01-01', description: 'first day (UTC), inclusive; default 30 days before `to`' }),
  to: day.optional().meta({ param: { name: 'to', in: 'query' }, example: '2025-01-31', description: 'last day (UTC), inclusive; default today' }),
});

export const Health = z
  .object({
    status: z.enum(['ok', 'degraded']),
    reason: z.string().optional().meta({ description: 'what is wrong, when degraded' }),
    since: z.string().optional().meta({ description: 'when it began (ISO 8601), when degraded' }),
  })
  .meta({ id: 'Health' });

export const PreferHeader = z.object({
  prefer: z
    .string()
    .max(200)
    .optional()
    .meta({ param: { name: 'prefer', in: 'header' }, example: 'wait=30', description: 'wait=N (seconds, >= 1): answer when the job finishes or N seconds after the create started (RFC 7240); a wait above the deployment\'s cap (60 s on a single node, 50 s on AWS by default) is applied as the cap, as Preference-Applied says' }),
  'idempotency-key': z
    .string()
    .max(1000)
    .optional()
    .meta({ param: { name: 'idempotency-key', in: 'header' }, example: 'order-1234', description: 'at most 255 printable ASCII characters; a retry with the same key and body returns the same job' }),
});

export const EXAMPLE_JOB_REQUEST = {
  models: [
    {
      id: 'shapes-base',
      role: 'base',
      prompt: 'a red circle above a blue square',
    },
    {
      id: 'shapes-layout',
      role: 'auxiliary',
      prompt: 'a red circle above a blue square',
      grounding: [
        { phrase: 'a red circle', box: [0.3, 0.05, 0.7, 0.45] },
        { phrase: 'a blue square', box: [0.3, 0.55, 0.7, 0.95] },
      ],
    },
  ],
  sampler: { steps: 20, seed: 42 },
} as const;

export const EXAMPLE_JOB = {
  id: 'job_01jd8x2m3q4r5s6t7v8w9x0y1z',
  object: 'job',
  status: 'succeeded',
  created_at: '2025-01-01T12:00:00.000Z',
  started_at: '2025-01-01T12:00:00.150Z',
  finished_at: '2025-01-01T12:00:02.900Z',
  spec: {
    models: [
      { id: 'shapes-base', role: 'base', prompt: 'a red circle above a blue square', negative_prompt: '', guidance_scale: 7.5, grounding: [], reference_image: null, weight: 0.5, p: 55, request_index: 0 },
      {
        id: 'shapes-layout',
        role: 'auxiliary',
        prompt: 'a red circle above a blue square',
        negative_prompt: '',
        guidance_scale: 7.5,
        grounding: [
          { phrase: 'a red circle', box: [0.3, 0.05, 0.7, 0.45] },
          { phrase: 'a blue square', box: [0.3, 0.55, 0.7, 0.95] },
        ],
        reference_image: null,
        weight: 0.866,
        p: 45,
        request_index: 1,
      },
    ],
    aggregation: { window: [1, 3], clamp: false, weights: 'official' },
    sampler: { steps: 20, seed: 42, width: 64, height: 64, scheduler: 'ddim', eta: 0, noise: 'amdm' },
    outputs: { images: 1, per_model: false, latents: false },
    estimate: { unet_evals: 24 },
  },
  progress: { step: 20, total: 20, phase: 'decoding', image: 1, images: 1 },
  queue: null,
  usage: { unet_evals: 24, images: 1, runner_ms: 2750 },
  timings: { queued_ms: 150, run_ms: 2750, onnx_ms: 2400, outside_onnx_ms: 350 },
  error: null,
  outputs: [
    {
      source: 'aggregated',
      index: 0,
      kind: 'image',
      content_type: 'image/png',
      url: 'http://127.0.0.1:8787/v1/blobs/tenants/acme/jobs/job_01jd8x2m3q4r5s6t7v8w9x0y1z/out/aggregated-0.png?method=GET&expires=1735733700&sig=…',
      expires_at: '2025-01-01T12:15:00.000Z',
      width: 64,
      height: 64,
    },
  ],
  webhook: null,
  urls: {
    self: 'http://127.0.0.1:8787/v1/jobs/job_01jd8x2m3q4r5s6t7v8w9x0y1z',
    cancel: 'http://127.0.0.1:8787/v1/jobs/job_01jd8x2m3q4r5s6t7v8w9x0y1z/cancel',
    events: 'http://127.0.0.1:8787/v1/jobs/job_01jd8x2m3q4r5s6t7v8w9x0y1z/events',
  },
} as const;

export const EXAMPLE_PROBLEM = {
  type: 'urn:amdm:problem:validation-error',
  title: 'The request is not valid',
  status: 422,
  detail: 'invalid models[1].grounding[0].box',
  instance: 'urn:amdm:request:6f1c2a9e-2d7b-4c36-9a55-0b7f3f4f8e21',
  errors: [{ field: 'models[1].grounding[0].box', message: 'box must have x0 < x1 and y0 < y1 (normalized x0, y0, x1, y1)' }],
} as const;
