/** Models, uploads, usage and the service routes (health, OpenAPI). */
import { createRoute } from '@hono/zod-openapi';
import { CreateUploadBody, ModelList, SCHEDULER_NAMES, TokenCount, TokenCountBody, UploadTicket, UsageReport } from '../../shared/contract/index.ts';
import { newUploadId } from '../../shared/ids.ts';
import { utcDay } from '../../shared/job-repository.ts';
import { bodyLimit } from '../middleware/body-limit/index.ts';
import { ProblemError } from '../middleware/problem/index.ts';
import { Health, ModelIdParam, UsageQuery } from '../schemas.ts';
import { BEARER, type EdgeApp, type RouteContext, problems } from './common.ts';

const DAY_MS = 86_400_000;

export function registerModelRoutes(app: EdgeApp, { deps }: RouteContext): void {
  const listModels = createRoute({
    method: 'get',
    path: '/v1/models',
    tags: ['models'],
    summary: 'List the installed models',
    description: 'What each model takes (prompt tokens, grounding objects, reference image), its sizes and its ecosystem: only models of one ecosystem can be aggregated.',
    security: BEARER,
    responses: {
      200: {
        description: 'The installed models',
        content: {
          'application/json': {
            schema: ModelList,
            example: {
              object: 'list',
              data: [
                {
                  id: 'shapes-layout',
                  description: 'layout model: places objects in the given boxes',
                  ecosystem: 'shapes-v1',
                  latent: { channels: 4, vae_scale_factor: 4 },
                  sizes: { default: [64, 64], min: 32, max: 128, multiple: 16 },
                  conditions: { prompt: { max_tokens: 32 }, grounding: { max_objects: 4 }, reference_image: null },
                  schedulers: [...SCHEDULER_NAMES],
                },
              ],
            },
          },
        },
      },
      ...problems(401, 429),
    },
  });
  app.openapi(listModels, async (c) => {
    c.header('Cache-Control', 'private, max-age=60');
    return c.json({ object: 'list' as const, data: await deps.catalog() }, 200);
  });

  const countTokens = createRoute({
    method: 'post',
    path: '/v1/models/{id}/tokens',
    tags: ['models'],
    summary: "Count a prompt's tokens",
    description:
      'How many tokens the text is for this model, and how many the model reads (a longer prompt is cut there, and the job gets a ' +
      '`prompt_truncated` warning). Cheap enough to call as someone types. Served where the edge has the tokenizers (a single node); ' +
      'elsewhere 501: count with `amdm tokenize --model ID "prompt"`.',
    security: BEARER,
    middleware: [bodyLimit({ maxBytes: deps.limits.maxSmallBodyBytes })] as const,
    request: { params: ModelIdParam, body: { required: true, content: { 'application/json': { schema: TokenCountBody, example: { text: 'a red circle and a blue square' } } } } },
    responses: {
      200: {
        description: 'The count',
        content: { 'application/json': { schema: TokenCount, example: { object: 'token_count', model: 'shapes-base', tokens: 7, max_tokens: 14, truncated: false } } },
      },
      ...problems(400, 401, 404, 422, 429, 501),
    },
  });
  app.openapi(countTokens, async (c) => {
    const id = c.req.valid('param').id;
    if (!deps.countTokens) {
      throw new ProblemError(501, {
        type: 'token-count-unavailable',
        title: 'Token counting is not available here',
        detail: 'this deployment\'s API has no tokenizer; count with `amdm tokenize --model ID "prompt"`, or submit: a cut prompt comes back as a prompt_truncated warning',
      });
    }
    const counted = await deps.countTokens(id, c.req.valid('json').text);
    if (!counted) {
      const known = (await deps.catalog()).map((m) => m.id).join(', ') || 'none installed';
      throw new ProblemError(404, { type: 'model-not-found', title: 'No such model', detail: `no model "${id}"; installed: ${known}`, errors: [{ field: 'path.id', message: `unknown model "${id}"; installed: ${known}` }] });
    }
    return c.json({ object: 'token_count' as const, model: id, tokens: counted.tokens, max_tokens: counted.maxTokens, truncated: counted.tokens > counted.maxTokens }, 200);
  });
}

export function registerUploadRoutes(app: EdgeApp, { deps, repo }: RouteContext): void {
  const createUpload = createRoute({
    method: 'post',
    path: '/v1/uploads',
    tags: ['uploads'],
    summary: 'Get a URL to upload a reference image',
    description:
      'Returns an upload_id and a short-lived signed URL. PUT the PNG or JPEG bytes there (with the given headers, at most max_bytes), ' +
      'then use the upload_id as models[i].reference_image.upload_id.',
    security: BEARER,
    middleware: [bodyLimit({ maxBytes: deps.limits.maxSmallBodyBytes })] as const,
    request: { body: { required: true, content: { 'application/json': { schema: CreateUploadBody, example: { content_type: 'image/png' } } } } },
    responses: {
      201: {
        description: 'Upload ticket',
        content: {
          'application/json': {
            schema: UploadTicket,
            example: {
              object: 'upload',
              upload_id: 'upl_k3j9x0a8b7c6d5e4f3g2h1i0',
              upload_url: 'http://127.0.0.1:8787/v1/blobs/tenants/acme/uploads/upl_k3j9x0a8b7c6d5e4f3g2h1i0?method=PUT&expires=1735733700&sig=…',
              method: 'PUT',
              headers: { 'content-type': 'image/png' },
              expires_at: '2025-01-01T12:15:00.000Z',
              max_bytes: 10485760,
            },
          },
        },
      },
      ...problems(400, 401, 413, 415, 422, 429),
    },
  });
  app.openapi(createUpload, async (c) => {
    const { content_type } = c.req.valid('json');
    const uploadId = newUploadId(deps.random);
    const ttl = deps.limits.uploadUrlTtlSeconds;
    const url = await deps.signer.signPut(repo.uploadKey(c.get('tenant'), uploadId), ttl, content_type);
    c.header('Cache-Control', 'no-store');
    return c.json(
      {
        object: 'upload' as const,
        upload_id: uploadId,
        upload_url: url,
        method: 'PUT' as const,
        headers: { 'content-type': content_type },
        expires_at: new Date(deps.clock.now() + ttl * 1000).toISOString(),
        max_bytes: deps.limits.maxUploadBytes,
      },
      201,
    );
  });
}

export function registerUsageRoutes(app: EdgeApp, { deps, repo }: RouteContext): void {
  const getUsage = createRoute({
    method: 'get',
    path: '/v1/usage',
    tags: ['usage'],
    summary: 'Usage per day',
    description: 'Jobs, images, UNet evaluations and runner time per UTC day, from the per-job usage records (a job is counted once, on the day it finished).',
    security: BEARER,
    request: { query: UsageQuery },
    responses: {
      200: {
        description: 'Usage report',
        content: {
          'application/json': {
            schema: UsageReport,
            example: {
              object: 'usage',
              from: '2025-01-01',
              to: '2025-01-02',
              days: [{ day: '2025-01-01', jobs: 3, images: 3, unet_evals: 72, runner_ms: 8100 }],
              total: { jobs: 3, images: 3, unet_evals: 72, runner_ms: 8100 },
            },
          },
        },
      },
      ...problems(400, 401, 429),
    },
  });
  app.openapi(getUsage, async (c) => {
    const q = c.req.valid('query');
    const to = q.to ?? utcDay(new Date(deps.clock.now()).toISOString());
    const from = q.from ?? utcDay(new Date(Date.parse(`${to}T00:00:00Z`) - 30 * DAY_MS).toISOString());
    const span = (Date.parse(`${to}T00:00:00Z`) - Date.parse(`${from}T00:00:00Z`)) / DAY_MS;
    if (span < 0 || span >= deps.limits.maxUsageDays) {
      throw new ProblemError(400, {
        type: 'bad-request',
        title: 'Bad request',
        detail: `the range must run forwards and span at most ${deps.limits.maxUsageDays} days`,
        errors: [{ field: span < 0 ? 'query.from' : 'query.to', message: span < 0 ? 'must not be after `to`' : `at most ${deps.limits.maxUsageDays} days after \`from\`` }],
      });
    }
    const records = await repo.listUsage(c.get('tenant'), from, to);
    const byDay = new Map<string, { day: string; jobs: number; images: number; unet_evals: number; runner_ms: number }>();
    const total = { jobs: 0, images: 0, unet_evals: 0, runner_ms: 0 };
    for (const r of records) {
      let d = byDay.get(r.day);
      if (!d) byDay.set(r.day, (d = { day: r.day, jobs: 0, images: 0, unet_evals: 0, runner_ms: 0 }));
      for (const t of [d, total]) {
        t.jobs += 1;
        t.images += r.images;
        t.unet_evals += r.unet_evals;
        t.runner_ms += r.runner_ms;
      }
    }
    c.header('Cache-Control', 'no-store');
    return c.json({ object: 'usage' as const, from, to, days: [...byDay.values()].sort((a, b) => a.day.localeCompare(b.day)), total }, 200);
  });
}

export function registerSystemRoutes(app: EdgeApp): void {
  const health = createRoute({
    method: 'get',
    path: '/healthz',
    tags: ['system'],
    summary: 'Liveness',
    responses: { 200: { description: 'The edge is up', content: { 'application/json': { schema: Health, example: { status: 'ok' } } } } },
  });
  app.openapi(health, (c) => c.json({ status: 'ok' as const }, 200));
}
