/**
 * The public API as one Hono app: `createApp(deps)` knows only fetch(Request) -> Response
 * and the ports, so the same app runs behind @hono/node-server (edge/local.ts) and on
 * Lambda. No `node:` imports, no AWS SDK, no onnxruntime here or below.
 *
 * Order of the pipeline: request id -> auth (all /v1 routes except the signed blob URLs)
 * -> per-tenant rate limit -> route middleware (concurrency cap, body limit) -> zod
 * validation -> handler. A failed authentication and a signed-URL request are limited per
 * client address instead, when the root says where requests come from. Every failure is
 * thrown and becomes a problem+json response in the one onError.
 */
import { OpenAPIHono } from '@hono/zod-openapi';
import { requestId } from 'hono/request-id';
import type { Context, MiddlewareHandler } from 'hono';
import { verifyApiKey } from '../shared/api-keys.ts';
import { JobRepository } from '../shared/job-repository.ts';
import { BLOB_ROUTE_PREFIX } from '../shared/signed-url.ts';
import { JobRequest, zodFieldErrors } from '../shared/contract/index.ts';
import { ActiveJobTracker } from './active-jobs.ts';
import { type AppDeps, resolveDeps } from './deps.ts';
import { JobsService } from './jobs-service.ts';
import { auth } from './middleware/auth/index.ts';
import { ProblemError, problemNotFound, problemOnError, validationProblem } from './middleware/problem/index.ts';
import { rateLimit, rateLimited } from './middleware/rate-limit/index.ts';
import { addressBucket } from './client-address.ts';
import { registerBlobRoutes } from './routes/blobs.ts';
import type { EdgeApp, EdgeEnv, RouteContext } from './routes/common.ts';
import { registerDocsRoutes } from './routes/docs.ts';
import { registerEventRoutes } from './routes/events.ts';
import { registerHealthRoutes } from './routes/health.ts';
import { registerJobRoutes } from './routes/jobs.ts';
import { registerModelRoutes } from './routes/models.ts';
import { registerPlaygroundRoutes } from './routes/playground.ts';
import { registerUploadRoutes } from './routes/uploads.ts';
import { registerUsageRoutes } from './routes/usage.ts';

export type { AppDeps } from './deps.ts';

export const API_VERSION = '1.0.0';

export function createApp(input: AppDeps): EdgeApp {
  const deps = resolveDeps(input);
  const repo = new JobRepository(deps.store);
  const admission = input.admission ?? new ActiveJobTracker(repo, { now: () => deps.clock.now() });
  const jobs = new JobsService(deps, repo, admission);

  const app: EdgeApp = new OpenAPIHono<EdgeEnv>({
    // one rule for every zod-validated input: body problems are 422, the rest 400, each naming its field
    defaultHook: (result) => {
      if (result.success) return;
      const target = result.target;
      const errors =
        target === 'json'
          ? zodFieldErrors(result.error.issues, JobRequest)
          : zodFieldErrors(result.error.issues).map((e) => ({
              ...e,
              field: target === 'header' ? `header ${headerName(e.field)}` : `${target === 'param' ? 'path' : target}.${e.field}`,
            }));
      throw validationProblem(target === 'json' ? 422 : 400, errors);
    },
  });

  app.onError(problemOnError({ logger: deps.logger, onStorageFull: (err) => deps.storageHealth.full(err) }));
  app.notFound(problemNotFound());
  app.use(requestId());

  const authenticate = auth({
    verify: (key) => verifyApiKey(deps.store, deps.pepper, key),
    cacheSeconds: deps.limits.keyCacheSeconds,
    now: () => deps.clock.now(),
    ...(deps.keyRevision ? { revision: deps.keyRevision } : {}),
  });
  const limit = rateLimit({ limiter: deps.rateLimiter });
  /**
   * Requests that carry no working key (an unknown key, or a signed URL) are limited per
   * client address, each kind in its own bucket: they have no tenant to be charged to.
   */
  const perAddress = async (c: Context, kind: 'unauthenticated' | 'signed-url', what: string): Promise<void> => {
    const address = deps.clientAddress?.(c);
    if (address === undefined) return;
    const r = await deps.addressLimiter.take(`${kind} ${addressBucket(address)}`);
    if (!r.ok) throw rateLimited(r.retryAfterSeconds, what);
  };
  // signed blob URLs carry their own credential; everything else under /v1 needs a key
  const apiGuard: MiddlewareHandler<EdgeEnv> = async function apiGuard(c, next) {
    if (c.req.path.startsWith(BLOB_ROUTE_PREFIX)) {
      await perAddress(c, 'signed-url', 'too many signed-URL requests from this address');
      return next();
    }
    let authenticated = false;
    try {
      // auth's own env type is narrower than the app's; the variables it sets are part of EdgeEnv
      return await authenticate(c as never, async () => {
        authenticated = true;
        await limit(c, next);
      });
    } catch (err) {
      // only a failed authentication spends the address's tokens, never a valid key's request
      if (!authenticated && err instanceof ProblemError && err.status === 401) {
        await perAddress(c, 'unauthenticated', 'too many requests without a valid API key from this address');
      }
      throw err;
    }
  };
  app.use('/v1/*', apiGuard);

  const ctx: RouteContext = { deps, repo, jobs, admission };
  registerJobRoutes(app, ctx);
  registerEventRoutes(app, ctx);
  registerModelRoutes(app, ctx);
  registerUploadRoutes(app, ctx);
  registerUsageRoutes(app, ctx);
  registerBlobRoutes(app, ctx);
  registerHealthRoutes(app, ctx);
  registerPlaygroundRoutes(app, ctx);
  registerDocsRoutes(app, ctx);

  app.openAPIRegistry.registerComponent('securitySchemes', 'bearerAuth', {
    type: 'http',
    scheme: 'bearer',
    description: 'An API key (amdm_<keyId>_<secret>) from `amdm keys create`',
  });
  app.doc31('/openapi.json', {
    openapi: '3.1.0',
    info: {
      title: 'AMDM API',
      version: API_VERSION,
      description:
        'Image generation that aggregates several diffusion models at sampling time (AMDM, arXiv 2410.01262). ' +
        'Every error is an RFC 9457 problem (application/problem+json) whose `errors` name the fields at fault.',
    },
    servers: [{ url: deps.publicBaseUrl }],
  });
  return app;
}

/** zod reports header names lowercased; show them as clients write them. */
function headerName(lower: string): string {
  return lower.replace(/(^|-)([a-z])/g, (_, dash: string, ch: string) => dash + ch.toUpperCase());
}
