/** GET /healthz: the edge is up, and what it cannot do now (a full disk). */
import { createRoute } from '@hono/zod-openapi';
import { Health } from '../schemas.ts';
import type { EdgeApp, RouteContext } from './common.ts';

export function registerHealthRoutes(app: EdgeApp, { deps }: RouteContext): void {
  const health = createRoute({
    method: 'get',
    path: '/healthz',
    tags: ['system'],
    summary: 'Liveness',
    description:
      'The edge is up: `{"status":"ok"}`. `degraded` names what the server cannot do now, e.g. a full disk ' +
      '(`reason` "store full: …"): writes answer 507 and jobs wait until space is freed; reads keep working. ' +
      'Still a 200: restarting the process would not free the disk.',
    responses: {
      200: {
        description: 'The edge is up',
        content: {
          'application/json': {
            schema: Health,
            example: { status: 'degraded', reason: 'store full: no space left on the device (ENOSPC)', since: '2025-01-01T12:00:00.000Z' },
          },
        },
      },
    },
  });
  app.openapi(health, (c) => {
    c.header('Cache-Control', 'no-store');
    return c.json(deps.storageHealth.report(), 200);
  });
}
