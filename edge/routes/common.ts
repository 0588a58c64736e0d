/** Pieces every route module shares: the app's env type and the documented problem responses. */
import type { OpenAPIHono } from '@hono/zod-openapi';
import { Problem } from '../../shared/contract/index.ts';
import type { JobRepository } from '../../shared/job-repository.ts';
import type { JobAdmission } from '../../shared/ports/admission.ts';
import type { ResolvedDeps } from '../deps.ts';
import type { JobsService } from '../jobs-service.ts';
import { PROBLEM_CONTENT_TYPE } from '../middleware/problem/index.ts';
import { EXAMPLE_PROBLEM } from '../schemas.ts';

export interface EdgeEnv {
  Variables: { tenant: string; keyId: string; requestId: string };
}

export type EdgeApp = OpenAPIHono<EdgeEnv>;

export interface RouteContext {
  deps: ResolvedDeps;
  repo: JobRepository;
  jobs: JobsService;
  admission: JobAdmission;
}

const DESCRIPTIONS: Record<number, string> = {
  400: 'Malformed request (bad JSON, query or header); `errors` names the field',
  401: 'Missing, malformed, unknown or revoked API key',
  403: 'The signed URL is expired or was altered',
  404: 'No such resource for this API key',
  409: 'The resource is in a state that does not allow this',
  413: 'The body is too large',
  415: 'The body is not application/json',
  422: 'The body is well-formed but not valid; `errors` names each field at fault',
  429: 'Rate limit (per tenant; per client address for failed authentication and signed URLs) or concurrent-job cap reached; see Retry-After',
  500: 'Unexpected server failure (the body names only the request id)',
  501: 'Not available on this deployment',
  507: "The server's storage is full: nothing was written; reads keep working. Retry after Retry-After seconds",
};

/** OpenAPI responses for the given problem statuses, all application/problem+json. */
export function problems(...codes: (keyof typeof DESCRIPTIONS)[]) {
  const out: Record<number, { description: string; content: Record<string, { schema: typeof Problem; example: object }> }> = {};
  for (const code of [...codes, 500]) {
    out[code] = {
      description: DESCRIPTIONS[code]!,
      content: { [PROBLEM_CONTENT_TYPE]: { schema: Problem, example: { ...EXAMPLE_PROBLEM, status: code } } },
    };
  }
  return out;
}

export const BEARER = [{ bearerAuth: [] as string[] }];
