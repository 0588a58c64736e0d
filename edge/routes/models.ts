/** GET /v1/models: the installed models and what each takes; POST /v1/models/{id}/tokens: a prompt's token count. */
import { createRoute } from '@hono/zod-openapi';
import { ModelList, SCHEDULER_NAMES, TokenCount, TokenCountBody } from '../../shared/contract/index.ts';
import { bodyLimit } from '../middleware/body-limit/index.ts';
import { ProblemError } from '../middleware/problem/index.ts';
import { ModelIdParam } from '../schemas.ts';
import { BEARER, type EdgeApp, type RouteContext, problems } from './common.ts';

export function registerModelRoutes(app: EdgeApp, { deps }: RouteContext): void {
  const listModels = createRoute({
    method: 'get',
    path: '/v1/models',
    tags: ['models'],
    summary: 'List the installed models',
    description: 'What each model takes (prompt tokens, grounding objects, interactions, a reference image, its scheduled-sampling default; null where it takes none), its sizes and its ecosystem: only models of one ecosystem can be aggregated.',
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
                  conditions: { prompt: { max_tokens: 32 }, grounding: { max_objects: 4 }, interactions: null, reference_image: null, scheduled_sampling: null },
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
