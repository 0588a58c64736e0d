/**
 * GET /v1/jobs/{id}/events: the job as server-sent events, until it finishes.
 *
 * Every event is `event: job` carrying the whole job record, the same JSON as GET
 * /v1/jobs/{id}. A stream of whole states (not of deltas) needs no resume point: a client
 * that reconnects gets the current state first and misses nothing that matters. Changes
 * are coalesced to at most one event per poll, so a fast job may skip progress steps, but
 * the order is always the order of the states (queued -> running -> terminal) and the
 * last event is the terminal record, after which the stream closes.
 *
 * Auth is the Bearer header, as on every /v1 route. The browser's EventSource cannot send
 * headers; we deliberately accept no key in the query string (URLs end up in access logs,
 * CDN logs, browser history and Referer headers). Browsers read the stream with fetch()
 * and a ReadableStream (shared/client/event-stream.ts), which sends the header.
 *
 * While the job runs, `event: preview` carries each new live preview frame (a small picture
 * of every model, see JobPreview in the contract), read from the job's preview.json, which
 * the runner overwrites at most every 0.5 s; on AWS that is one more S3 read per poll of a
 * running job. A preview never replaces a job event: clients that ignore it lose nothing.
 *
 * The stream polls the store: the runner writes status.json (throttled) and nothing
 * pushes. Quiet stretches get a comment line so proxies (CloudFront reads time out after
 * 60 s) keep the connection, and a stream ends by itself after `maxStreamMs`; clients
 * reconnect.
 */
import { createRoute, z } from '@hono/zod-openapi';
import { streamSSE } from 'hono/streaming';
import { type JobRecord, JobPreview, isTerminal } from '../../shared/contract/index.ts';
import { JOB_ID_RE } from '../../shared/ids.ts';
import { notFound } from '../jobs-service.ts';
import { EXAMPLE_JOB, JobIdParam } from '../schemas.ts';
import { BEARER, type EdgeApp, type RouteContext, problems } from './common.ts';

export interface EventStreamOptions {
  /** how often the store is read for changes */
  pollMs: number;
  /** a comment line after this long without an event (below every proxy's idle timeout) */
  keepAliveMs: number;
  /**
   * a stream closes after this long even if the job is still running, and the client
   * reconnects: below the edge Lambda's 5-minute timeout (infra/edge.ts), so a stream ends
   * cleanly instead of being cut, and well before output URLs (15 minutes) go stale
   */
  maxStreamMs: number;
  /** the reconnection delay suggested to EventSource-style clients (the `retry:` field) */
  retryMs: number;
}

export const EVENT_STREAM_DEFAULTS: EventStreamOptions = { pollMs: 500, keepAliveMs: 15_000, maxStreamMs: 4 * 60_000, retryMs: 2000 };

/**
 * What identifies a state: the record without its freshly signed output URLs (they differ
 * on every read and would make every poll look like a change).
 */
function fingerprint(record: JobRecord): string {
  return JSON.stringify({ ...record, outputs: record.outputs.map(({ url: _url, expires_at: _expires, ...rest }) => rest) });
}

const running = { ...EXAMPLE_JOB, status: 'running', finished_at: null, outputs: [], usage: null, progress: { step: 7, total: 20, phase: 'base_only', image: 1, images: 1 } };
const EXAMPLE_STREAM =
  `event: job\ndata: ${JSON.stringify({ ...running, progress: { ...running.progress, step: 2, phase: 'aggregating' } })}\nretry: 2000\n\n` +
  `event: job\ndata: ${JSON.stringify(running)}\n\n` +
  ': keep-alive\n\n' +
  `event: job\ndata: ${JSON.stringify(EXAMPLE_JOB)}\n\n`;

export function registerEventRoutes(app: EdgeApp, ctx: RouteContext, options: EventStreamOptions = EVENT_STREAM_DEFAULTS): void {
  const { deps, jobs, repo } = ctx;
  for (const [k, v] of Object.entries(options)) {
    if (!(Number.isFinite(v) && v > 0)) throw new TypeError(`registerEventRoutes: option "${k}" must be a positive number of milliseconds (got ${v})`);
  }

  const jobEvents = createRoute({
    method: 'get',
    path: '/v1/jobs/{id}/events',
    tags: ['jobs'],
    summary: 'Stream a job as server-sent events',
    description:
      'Sends `event: job` with the whole job (as GET /v1/jobs/{id}) first at once, then whenever its status, progress or queue position ' +
      `changes (coalesced, at most every ${options.pollMs} ms), and closes after the event whose job is finished. While the job runs, ` +
      '`event: preview` carries each new live preview (a JobPreview: a small PNG of every model, up to 64×64 pixels). Quiet gaps get a ' +
      `\`: keep-alive\` comment. A stream also closes after ${Math.round(options.maxStreamMs / 60_000)} minutes; reconnect, and the first event is the current state (events carry whole states, so no Last-Event-ID is needed). ` +
      'Send the API key in the Authorization header: the browser EventSource cannot, so read the stream with fetch() (see docs/api.md); ' +
      'keys are never accepted in URLs. Polling GET /v1/jobs/{id} is the fallback.',
    security: BEARER,
    request: { params: JobIdParam },
    responses: {
      200: {
        description: 'text/event-stream of `job` events (data: the job as JSON), ending after the finished job',
        content: { 'text/event-stream': { schema: z.string(), example: EXAMPLE_STREAM } },
      },
      ...problems(401, 404, 429),
    },
  });

  // the data of `event: preview`: no route answers with it as JSON, so it is listed by hand
  const previewSchema = (z.toJSONSchema(JobPreview, { io: 'output' }).$defs as Record<string, object>).JobPreview!;
  app.openAPIRegistry.registerComponent('schemas', 'JobPreview', previewSchema as never);

  app.openapi(jobEvents, async (c) => {
    const tenant = c.get('tenant');
    const id = c.req.valid('param').id;
    const first = JOB_ID_RE.test(id) ? await repo.getParts(tenant, id) : null;
    if (!first) throw notFound(id);
    const requestId = c.get('requestId');
    const res = streamSSE(c, async (stream) => {
      const started = deps.clock.now();
      let parts = first;
      let last = '';
      let lastWrite = started;
      let sent = 0;
      let previewSeq = 0;
      try {
        for (;;) {
          const record = await jobs.assemble(parts);
          const fp = fingerprint(record);
          const now = deps.clock.now();
          let wrote = false;
          const sendJob = async () => {
            if (fp === last) return;
            await stream.writeSSE({ event: 'job', data: JSON.stringify(record), ...(sent === 0 ? { retry: options.retryMs } : {}) });
            last = fp;
            wrote = true;
            sent++;
          };
          // the first event is always the job; after that previews go first, since they were
          // made before the state read with them (frames lag the progress they picture)
          if (sent === 0) await sendJob();
          if (record.status === 'running') {
            const preview = await repo.getPreview(tenant, id);
            // the window's end first when both are new: frames go out in the order they were made
            const frames = [preview?.window_end, preview?.latest].filter((f): f is NonNullable<typeof f> => !!f && f.seq > previewSeq).sort((a, b) => a.seq - b.seq);
            for (const f of frames.filter((f, i) => frames.findIndex((g) => g.seq === f.seq) === i)) {
              await stream.writeSSE({ event: 'preview', data: JSON.stringify({ job_id: id, ...f }) });
              previewSeq = f.seq;
              wrote = true;
            }
          }
          await sendJob();
          if (wrote) {
            lastWrite = now;
          } else if (now - lastWrite >= options.keepAliveMs) {
            await stream.write(': keep-alive\n\n');
            lastWrite = now;
          }
          if (isTerminal(record.status) || stream.aborted || now - started >= options.maxStreamMs) return;
          await stream.sleep(options.pollMs);
          if (stream.aborted) return;
          const next = await repo.getParts(tenant, id);
          // the job's objects are never deleted while it exists; if they are, there is nothing left to say
          if (!next) return;
          parts = next;
        }
      } catch (err) {
        // the status was already sent, so an error can only be reported inside the stream;
        // the message stays in our log, the client gets the request id to report
        deps.logger.error('event stream failed', { job_id: id, err: String((err as Error)?.stack ?? err), instance: `urn:amdm:request:${requestId}` });
        if (!stream.aborted) {
          await stream
            .writeSSE({
              event: 'error',
              data: JSON.stringify({
                type: 'about:blank',
                title: 'Internal server error',
                status: 500,
                detail: 'the event stream failed; poll GET /v1/jobs/{id} or reconnect',
                instance: `urn:amdm:request:${requestId}`,
              }),
            })
            .catch(() => {});
        }
      }
    });
    // streamSSE says no-cache, which still lets a cache store the stream; nginx-style proxies must not buffer it
    res.headers.set('Cache-Control', 'no-store');
    res.headers.set('X-Accel-Buffering', 'no');
    return res as never;
  });
}
