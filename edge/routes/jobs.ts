/** /v1/jobs: create, read, list and cancel (the event stream of one job is in events.ts). */
import { createRoute } from '@hono/zod-openapi';
import type { Context } from 'hono';
import { HTTPException } from 'hono/http-exception';
import { JobList, JobRecord, JobRequest, isTerminal, zodFieldErrors } from '../../shared/contract/index.ts';
import { bodyLimit } from '../middleware/body-limit/index.ts';
import { ProblemError, validationProblem } from '../middleware/problem/index.ts';
import { concurrencyCap } from '../middleware/rate-limit/index.ts';
import { EXAMPLE_JOB, EXAMPLE_JOB_REQUEST, JobIdParam, ListJobsQuery, PreferHeader } from '../schemas.ts';
import { BEARER, type EdgeApp, type RouteContext, problems } from './common.ts';

const jobJson = (description: string, example: object = EXAMPLE_JOB) => ({
  description,
  content: { 'application/json': { schema: JobRecord, example } },
});

const IDEMPOTENCY_KEY_RE = /^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$/;

/**
 * `wait=N` from a Prefer header (RFC 7240), or null when absent: the wait asked for, and the
 * wait applied, which is at most `max` (the deployment's cap: below CloudFront's origin
 * timeout on AWS). A longer wait is a preference this server cannot fully honour, not an error
 * (RFC 7240 section 2), so it is applied as the cap and the answer says so in
 * Preference-Applied. Other preferences are ignored as the RFC asks; a wait that is not a
 * whole number of seconds from 1 is refused, naming the header.
 */
export function parsePreferWait(header: string | undefined, max: number): { requested: number; applied: number } | null {
  if (header === undefined) return null;
  for (const part of header.split(',')) {
    const token = part.split(';')[0]!.trim();
    const m = /^wait\s*=\s*(.*)$/i.exec(token);
    if (!m) continue;
    const raw = m[1]!.trim().replace(/^"(.*)"$/, '$1');
    // any run of digits: a huge number is still a wait longer than the cap
    const n = /^\d+$/.test(raw) ? Number(raw) : NaN;
    if (!(n >= 1)) {
      throw new ProblemError(400, {
        type: 'bad-request',
        title: 'Bad request',
        detail: `Prefer: wait must be a whole number of seconds, at least 1 (waits longer than ${max} are applied as ${max})`,
        errors: [{ field: 'header Prefer', message: `wait must be a whole number of seconds >= 1 (got ${JSON.stringify(raw.slice(0, 20))})` }],
      });
    }
    return { requested: n, applied: Math.min(n, max) };
  }
  return null;
}

/** The media types @hono/zod-openapi lets through to a JSON body, and those Hono then parses as JSON. */
const JSON_REQUEST_TYPE = /^application\/([a-z-.]+\+)?json(;\s*[a-zA-Z0-9-]+=([^;]+))*$/i;
const JSON_MEDIA_TYPE = /^application\/([\w.-]+\+)?json$/i;

/**
 * The body of POST /v1/jobs, checked here instead of by the validators @hono/zod-openapi
 * generates from the route: they parse with zod's async parse, and zod compiles an object
 * schema into straight-line code only for a synchronous one (a bench body: 46 us of zod
 * against 17 us; JobRequest has no async check). The checks and answers are theirs, in their
 * order: a body needs a JSON media type (415), must be JSON (400), then must fit the schema
 * (422 naming every field, as the app's defaultHook answers).
 */
async function jobRequestBody(c: Context): Promise<JobRequest> {
  const contentType = c.req.header('content-type');
  if (contentType ? !JSON_REQUEST_TYPE.test(contentType) : await hasBody(c)) {
    throw new HTTPException(415, { message: 'Unsupported Media Type' });
  }
  let value: unknown = {};
  if (contentType && JSON_MEDIA_TYPE.test(contentType.split(';')[0]!.trim())) {
    try {
      value = await c.req.json();
    } catch {
      throw new HTTPException(400, { message: 'Malformed JSON in request body' });
    }
  }
  const result = JobRequest.safeParse(value);
  if (!result.success) throw validationProblem(422, zodFieldErrors(result.error.issues, JobRequest));
  return result.data;
}

/** Whether a request without a Content-Type still carries body bytes (only that case reads them). */
async function hasBody(c: Context): Promise<boolean> {
  const raw = c.req.raw;
  if (raw.body === null) return false;
  if (raw.bodyUsed) return (await c.req.arrayBuffer()).byteLength > 0;
  const reader = raw.clone().body?.getReader();
  if (!reader) return false;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return false;
      if (value.byteLength > 0) return true;
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

export function registerJobRoutes(app: EdgeApp, ctx: RouteContext): void {
  const { deps, jobs, admission } = ctx;

  const createJob = createRoute({
    method: 'post',
    path: '/v1/jobs',
    tags: ['jobs'],
    summary: 'Submit a job',
    description:
      'Validates and shapes the request against the installed models, stores it and queues it. Answers 202 with the queued job ' +
      '(Location: the job). With `Prefer: wait=N` the answer waits up to N seconds, the create included, and is 200 with the ' +
      'finished job if it finished; a wait above the deployment\'s cap is applied as the cap (`Preference-Applied: wait=<applied>`). ' +
      'With `Idempotency-Key`, a retry with the same key and body returns the same job (header Idempotent-Replayed: true); the same key ' +
      'with another body is refused with 422.',
    security: BEARER,
    middleware: [
      concurrencyCap({ active: admission, max: deps.limits.maxActiveJobs }),
      bodyLimit({ maxBytes: deps.limits.maxJobBodyBytes, what: 'job request' }),
    ] as const,
    request: {
      headers: PreferHeader,
      body: { required: true, content: { 'application/json': { schema: JobRequest, example: EXAMPLE_JOB_REQUEST } } },
    },
    responses: {
      200: jobJson('The job finished within Prefer: wait, or an idempotent replay of a finished job'),
      202: jobJson('Accepted and queued (or still running after Prefer: wait)', { ...EXAMPLE_JOB, status: 'queued', started_at: null, finished_at: null, progress: null, usage: null, outputs: [], queue: { position: 0, reason: 'next in line' }, timings: { queued_ms: null, run_ms: null, onnx_ms: null, outside_onnx_ms: null } }),
      ...problems(400, 401, 409, 413, 415, 422, 429, 507),
    },
  });

  // the document shows the route as declared; the body is checked by jobRequestBody
  const { middleware: _createMiddleware, ...createJobDocument } = createJob;
  app.openAPIRegistry.registerPath(createJobDocument);
  app.openapi({ ...createJob, hide: true, request: { headers: PreferHeader } }, async (c) => {
    // a wait counts from here, before the body is read (RFC 7240: the time to process the request
    // once received): the create's own writes come out of it, so on AWS the answer starts
    // within the cap whatever the create took
    const receivedAt = deps.clock.now();
    const request = await jobRequestBody(c);
    const tenant = c.get('tenant');
    const headers = c.req.valid('header');
    const wait = parsePreferWait(headers.prefer, deps.limits.maxWaitSeconds);
    const key = headers['idempotency-key'] ?? null;
    if (key !== null && (key.length > 255 || !IDEMPOTENCY_KEY_RE.test(key))) {
      throw new ProblemError(400, {
        type: 'bad-request',
        title: 'Bad request',
        detail: 'Idempotency-Key must be 1 to 255 printable ASCII characters',
        errors: [{ field: 'header Idempotency-Key', message: `must be 1 to 255 printable ASCII characters without leading or trailing spaces (got ${key.length} characters)` }],
      });
    }
    const { record, replayed } = await jobs.create({ tenant, request, idempotencyKey: key });
    let out = record;
    if (wait !== null) {
      out = await jobs.waitForTerminal(tenant, record, receivedAt + wait.applied * 1000, c.req.raw.signal);
      c.header('Preference-Applied', `wait=${wait.applied}`);
    }
    c.header('Location', record.urls.self);
    if (replayed) c.header('Idempotent-Replayed', 'true');
    c.header('Cache-Control', 'no-store');
    return isTerminal(out.status) && (wait !== null || replayed) ? c.json(out, 200) : c.json(out, 202);
  });

  const getJob = createRoute({
    method: 'get',
    path: '/v1/jobs/{id}',
    tags: ['jobs'],
    summary: 'Get a job',
    description: 'The job with its status, progress, queue position, usage, timings and, once it succeeded, output URLs signed afresh on every read.',
    security: BEARER,
    request: { params: JobIdParam },
    responses: { 200: jobJson('The job'), ...problems(401, 404, 429) },
  });
  app.openapi(getJob, async (c) => {
    const record = await jobs.get(c.get('tenant'), c.req.valid('param').id);
    c.header('Cache-Control', 'no-store');
    return c.json(record, 200);
  });

  const listJobs = createRoute({
    method: 'get',
    path: '/v1/jobs',
    tags: ['jobs'],
    summary: 'List jobs, newest first',
    description: 'Pages are stable: jobs created after the first page never shift later pages. Follow next_cursor until it is null.',
    security: BEARER,
    request: { query: ListJobsQuery },
    responses: {
      200: { description: 'A page of jobs', content: { 'application/json': { schema: JobList, example: { object: 'list', data: [EXAMPLE_JOB], next_cursor: 'c1.dGVuYW50cy9hY21lL2luZGV4LzAwMD' } } } },
      ...problems(400, 401, 429),
    },
  });
  app.openapi(listJobs, async (c) => {
    const q = c.req.valid('query');
    const page = await jobs.list(c.get('tenant'), Math.min(q.limit, deps.limits.maxPageSize), q.cursor ?? null);
    c.header('Cache-Control', 'no-store');
    return c.json({ object: 'list' as const, data: page.data, next_cursor: page.next_cursor }, 200);
  });

  const cancelJob = createRoute({
    method: 'post',
    path: '/v1/jobs/{id}/cancel',
    tags: ['jobs'],
    summary: 'Cancel a job',
    description:
      'A queued job is canceled at once and never runs (200). A running job stops at its next sampling step (202; poll the job). ' +
      'A job that succeeded or failed cannot be canceled (409). Canceling twice is harmless: a canceled job answers 200 with the job.',
    security: BEARER,
    request: { params: JobIdParam },
    responses: {
      200: jobJson('Canceled', { ...EXAMPLE_JOB, status: 'canceled', outputs: [] }),
      202: jobJson('Cancellation requested; the runner stops at its next step'),
      ...problems(401, 404, 409, 429, 507),
    },
  });
  app.openapi(cancelJob, async (c) => {
    const tenant = c.get('tenant');
    const { record, state } = await jobs.cancel(tenant, c.req.valid('param').id);
    if (state === 'canceled') {
      // a queued job that will never run frees its slot now; a running one does when its
      // runner stops it. Best effort: the admission also reads the cancel from the store.
      await admission.release(tenant, record.id).catch((err: unknown) => deps.logger.warn('releasing the slot of a canceled job failed', { job_id: record.id, error: (err as Error)?.message ?? String(err) }));
    }
    c.header('Cache-Control', 'no-store');
    return state === 'canceled' ? c.json(record, 200) : c.json(record, 202);
  });
}
