/** GET /v1/models: the installed models and what each takes. */
import { createRoute } from '@hono/zod-openapi';
import { ModelList, SCHEDULER_NAMES } from '../../shared/contract/index.ts';
import { BEARER, type EdgeApp, type RouteContext, problems } from './common.ts';

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
}
