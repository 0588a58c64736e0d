/**
 * The one client of the AMDM API, over fetch(): the playground bundles it for the browser
 * and the `amdm` CLI uses it on Node (cli/api-client.ts adds flags, env and files). Only
 * web-standard APIs, and only type imports from the contract, so zod stays out of the
 * browser bundle: the server is the one validator, and its problem+json names the field.
 * Every body type is the contract's z.output, the same definition the edge serves and
 * /openapi.json describes.
 */
import type { CreateUploadBody, FieldError, JobList, JobPreview, JobRecord, JobRequestInput, JobStatus, JobWarning, ModelInfo, ModelList, Problem, TokenCount, UploadTicket, UsageDay, UsageReport } from '../contract/index.ts';
import { sleep } from '../sleep.ts';
import { isComment, readEventStream } from './event-stream.ts';

export type { CreateUploadBody, FieldError, JobList, JobPreview, JobRecord, JobRequestInput, JobStatus, JobWarning, ModelInfo, ModelList, Problem, TokenCount, UploadTicket, UsageDay, UsageReport };

/** Kept in step with shared/contract's TERMINAL (a test checks): importing it would bundle zod. */
export const TERMINAL_STATUSES: readonly JobStatus[] = ['succeeded', 'failed', 'canceled'];
export const isTerminalStatus = (s: JobStatus): boolean => TERMINAL_STATUSES.includes(s);

/**
 * The file name of an output, as the CLI saves it and the playground offers it for
 * download: JOB-aggregated-0.png, JOB-shapes-layout-0.png (per_model),
 * JOB-solo-shapes-layout-0.png (the model alone).
 */
export function outputFileName(jobId: string, o: Pick<JobRecord['outputs'][number], 'source' | 'model' | 'index' | 'kind'>): string {
  const name = o.source === 'solo' ? `solo-${o.model ?? 'model'}` : o.source;
  return `${jobId}-${name}-${o.index}.${o.kind === 'image' ? 'png' : 'f32'}`;
}

/** An answer of the API that is not 2xx, with its RFC 9457 problem (or one made up for a non-problem body). */
export class ApiError extends Error {
  override name = 'ApiError';
  constructor(
    readonly status: number,
    readonly problem: Problem,
  ) {
    super(describeProblem(problem));
  }
  /** the field errors, `[{ field: 'models[1].grounding[0].box', message }]`, possibly empty */
  get fieldErrors(): FieldError[] {
    return this.problem.errors ?? [];
  }
}

/** No answer at all: refused, reset, DNS, TLS. */
export class NetworkError extends Error {
  override name = 'NetworkError';
}

/** One line: the first field error if there is one, else the detail or title. */
export function describeProblem(p: Pick<Problem, 'title' | 'status' | 'detail' | 'errors'>): string {
  const first = p.errors?.[0];
  if (first) return `${first.field}: ${first.message}${p.errors!.length > 1 ? ` (and ${p.errors!.length - 1} more)` : ''}`;
  return p.detail ? `${p.title}: ${p.detail}` : `${p.title} (HTTP ${p.status})`;
}

export interface ClientOptions {
  /** the API origin (with any path prefix), e.g. http://127.0.0.1:8787; a trailing slash is ignored */
  baseUrl: string;
  apiKey: string;
  fetch?: typeof fetch;
}

export interface FollowOptions {
  /** every state seen, in order; `via` says whether it came from the stream or from polling */
  onUpdate?: (job: JobRecord, via: 'stream' | 'poll') => void;
  /** each live preview frame of the running job (the event stream only; polling has none) */
  onPreview?: (preview: JobPreview) => void;
  signal?: AbortSignal;
  /** polling interval once the stream is given up on */
  pollMs?: number;
  /** stream connections that may fail in a row before falling back to polling */
  maxStreamFailures?: number;
}

export class ApiClient {
  readonly baseUrl: string;
  private readonly apiKey: string;
  private readonly fetchImpl: typeof fetch;

  constructor(o: ClientOptions) {
    let u: URL;
    try {
      u = new URL(o.baseUrl);
    } catch {
      throw new TypeError(`the API URL must be an absolute http(s) URL (got ${JSON.stringify(o.baseUrl)})`);
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new TypeError(`the API URL must be http or https (got ${u.protocol})`);
    this.baseUrl = o.baseUrl.replace(/\/+$/, '');
    this.apiKey = o.apiKey;
    // bound: a bare `fetch` called as a method of another object throws "Illegal invocation" in browsers
    this.fetchImpl = o.fetch ?? globalThis.fetch.bind(globalThis);
  }

  private url(path: string): string {
    return `${this.baseUrl}${path}`;
  }

  private async send(method: string, path: string, init: { body?: unknown; headers?: Record<string, string>; signal?: AbortSignal } = {}): Promise<Response> {
    let res: Response;
    try {
      res = await this.fetchImpl(this.url(path), {
        method,
        headers: {
          authorization: `Bearer ${this.apiKey}`,
          accept: 'application/json, application/problem+json',
          ...(init.body !== undefined ? { 'content-type': 'application/json' } : {}),
          ...init.headers,
        },
        ...(init.body !== undefined ? { body: JSON.stringify(init.body) } : {}),
        ...(init.signal ? { signal: init.signal } : {}),
      });
    } catch (err) {
      if ((err as Error).name === 'AbortError') throw err;
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      throw new NetworkError(`cannot reach ${this.baseUrl}: ${cause?.code ?? cause?.message ?? (err as Error).message}`);
    }
    if (!res.ok) throw await toApiError(res);
    return res;
  }

  private async json<T>(method: string, path: string, init: { body?: unknown; headers?: Record<string, string>; signal?: AbortSignal } = {}): Promise<T> {
    return (await (await this.send(method, path, init)).json()) as T;
  }

  models(): Promise<ModelList> {
    return this.json('GET', '/v1/models');
  }

  /**
   * How many tokens `text` is for a model, and how many it reads. A 501 ApiError where the
   * API has no tokenizer (AWS deployments): count on submit instead (a prompt_truncated warning).
   */
  countTokens(modelId: string, text: string, signal?: AbortSignal): Promise<TokenCount> {
    return this.json('POST', `/v1/models/${encodeURIComponent(modelId)}/tokens`, { body: { text }, ...(signal ? { signal } : {}) });
  }

  submit(request: JobRequestInput, opts: { idempotencyKey?: string; signal?: AbortSignal } = {}): Promise<JobRecord> {
    return this.json('POST', '/v1/jobs', {
      body: request,
      ...(opts.idempotencyKey ? { headers: { 'idempotency-key': opts.idempotencyKey } } : {}),
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
  }

  job(id: string, signal?: AbortSignal): Promise<JobRecord> {
    return this.json('GET', `/v1/jobs/${encodeURIComponent(id)}`, signal ? { signal } : {});
  }

  cancel(id: string): Promise<JobRecord> {
    return this.json('POST', `/v1/jobs/${encodeURIComponent(id)}/cancel`);
  }

  list(opts: { limit?: number; cursor?: string | null } = {}): Promise<JobList> {
    const q = new URLSearchParams();
    if (opts.limit !== undefined) q.set('limit', String(opts.limit));
    if (opts.cursor) q.set('cursor', opts.cursor);
    const qs = q.toString();
    return this.json('GET', `/v1/jobs${qs ? `?${qs}` : ''}`);
  }

  usage(opts: { from?: string; to?: string } = {}): Promise<UsageReport> {
    const q = new URLSearchParams();
    if (opts.from) q.set('from', opts.from);
    if (opts.to) q.set('to', opts.to);
    const qs = q.toString();
    return this.json('GET', `/v1/usage${qs ? `?${qs}` : ''}`);
  }

  /** POST /v1/uploads, then PUT the bytes to the signed URL; returns the upload id. */
  async upload(bytes: Uint8Array | Blob, contentType: CreateUploadBody['content_type']): Promise<string> {
    const ticket = await this.json<UploadTicket>('POST', '/v1/uploads', { body: { content_type: contentType } satisfies CreateUploadBody });
    const size = bytes instanceof Blob ? bytes.size : bytes.byteLength;
    if (size > ticket.max_bytes) {
      throw new ApiError(413, { type: 'about:blank', title: 'Content too large', status: 413, detail: `the image is ${size} bytes; uploads are limited to ${ticket.max_bytes}`, errors: [{ field: 'reference_image', message: `at most ${ticket.max_bytes} bytes` }] });
    }
    let res: Response;
    try {
      // the signed URL is the credential: no Authorization header (S3 would refuse a second one)
      res = await this.fetchImpl(ticket.upload_url, { method: ticket.method, headers: ticket.headers, body: bytes as BodyInit });
    } catch (err) {
      throw new NetworkError(`cannot upload to ${new URL(ticket.upload_url).origin}: ${(err as Error).message}`);
    }
    if (!res.ok) throw await toApiError(res);
    return ticket.upload_id;
  }

  /**
   * Follow a job until it finishes, from the event stream, reconnecting when a stream ends
   * early and polling GET /v1/jobs/{id} when streams keep failing. Resolves with the
   * finished job; rejects on 4xx answers (bad key, unknown job) and on abort.
   */
  async follow(id: string, o: FollowOptions = {}): Promise<JobRecord> {
    const pollMs = o.pollMs ?? 1000;
    const maxFailures = o.maxStreamFailures ?? 3;
    let failures = 0;
    while (failures < maxFailures) {
      o.signal?.throwIfAborted();
      try {
        const res = await this.send('GET', `/v1/jobs/${encodeURIComponent(id)}/events`, { headers: { accept: 'text/event-stream' }, ...(o.signal ? { signal: o.signal } : {}) });
        if (!res.body || !(res.headers.get('content-type') ?? '').startsWith('text/event-stream')) {
          await res.body?.cancel();
          break; // something between us and the API does not stream: poll
        }
        let progressed = false;
        let errored = false;
        let finished: JobRecord | null = null;
        const stop = new AbortController();
        const events = readEventStream(res.body, stop.signal);
        let timer: ReturnType<typeof setTimeout> | undefined;
        for (;;) {
          // after the finished job the server closes the stream; wait briefly for that rather
          // than cutting it (which browsers log as a failed request), but never forever
          if (finished && timer === undefined) timer = setTimeout(() => stop.abort(), 2000);
          const next = await events.next();
          if (next.done) break;
          const item = next.value;
          if (isComment(item)) continue;
          if (item.event === 'error') {
            errored = true;
            break;
          }
          if (item.event === 'preview' && !finished) {
            o.onPreview?.(JSON.parse(item.data) as JobPreview);
            continue;
          }
          if (item.event !== 'job' || finished) continue;
          const job = JSON.parse(item.data) as JobRecord;
          progressed = true;
          o.onUpdate?.(job, 'stream');
          if (isTerminalStatus(job.status)) finished = job;
        }
        clearTimeout(timer);
        await events.return(undefined);
        if (finished) return finished;
        // ended before the job did (the server's stream lifetime, a proxy): reconnect at once if it said anything
        failures = progressed && !errored ? 0 : failures + 1;
      } catch (err) {
        if ((err as Error).name === 'AbortError' || o.signal?.aborted) throw err;
        // a 4xx other than 429 will not get better by retrying
        if (err instanceof ApiError && err.status < 500 && err.status !== 429) throw err;
        failures++;
      }
      if (failures > 0) await sleep(Math.min(pollMs * failures, 5000), o.signal);
    }
    for (;;) {
      o.signal?.throwIfAborted();
      try {
        const job = await this.job(id, o.signal);
        o.onUpdate?.(job, 'poll');
        if (isTerminalStatus(job.status)) return job;
      } catch (err) {
        if (err instanceof ApiError && err.status < 500 && err.status !== 429) throw err;
        if ((err as Error).name === 'AbortError') throw err;
        // transient: keep polling
      }
      // an abort ends the wait; the check at the top of the loop rejects with its reason
      await sleep(pollMs, o.signal);
    }
  }
}

/** A non-2xx response as an ApiError; a body that is not a problem becomes one naming the status. */
export async function toApiError(res: Response): Promise<ApiError> {
  const text = await res.text().catch(() => '');
  let problem: Problem | null = null;
  try {
    const body = JSON.parse(text) as Partial<Problem>;
    if (body && typeof body === 'object' && typeof body.title === 'string') {
      problem = { type: body.type ?? 'about:blank', title: body.title, status: typeof body.status === 'number' ? body.status : res.status, ...(body.detail !== undefined ? { detail: body.detail } : {}), ...(body.instance !== undefined ? { instance: body.instance } : {}), ...(Array.isArray(body.errors) ? { errors: body.errors } : {}) };
    }
  } catch {
    /* not JSON: described below */
  }
  problem ??= { type: 'about:blank', title: res.statusText || `HTTP ${res.status}`, status: res.status, ...(text ? { detail: text.slice(0, 200).replace(/\s+/g, ' ').trim() } : {}) };
  return new ApiError(res.status, problem);
}
