/** GET /v1/usage: the tenant's usage per UTC day, from the per-job usage records. */
import { createRoute } from '@hono/zod-openapi';
import { UsageReport } from '../../shared/contract/index.ts';
import { utcDay } from '../../shared/job-repository.ts';
import { ProblemError } from '../middleware/problem/index.ts';
import { UsageQuery } from '../schemas.ts';
import { BEARER, type EdgeApp, type RouteContext, problems } from './common.ts';

const DAY_MS = 86_400_000;

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
      const max = deps.limits.maxUsageDays;
      // blame the parameter the client gave: with `from` alone, `to` is today, which it never wrote
      const error =
        span < 0
          ? { field: 'query.from', message: 'must not be after `to`' }
          : q.to === undefined
            ? { field: 'query.from', message: `at most ${max} days before \`to\` (not given: today, ${to}); give \`to\` as well` }
            : { field: 'query.to', message: `at most ${max} days after \`from\`` };
      throw new ProblemError(400, { type: 'bad-request', title: 'Bad request', detail: `the range must run forwards and span at most ${max} days`, errors: [error] });
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
