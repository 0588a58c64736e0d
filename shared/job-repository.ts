/**
 * The store layout of docs/architecture.md, in one place, and the assembly of the JobRecord
 * a client reads from the objects that make up a job. Every key has exactly one writer
 * role; the method names say which role calls them (edge, runner, dispatcher), and
 * nothing here does a read-modify-write of another role's object.
 *
 * Output URLs are minted by a signer at read time and never stored, so a record read
 * tomorrow still has working links. Web-standard APIs only: the edge imports this module.
 */
import { JOB_ID_RE } from './ids.ts';
import type { ObjectStore } from './ports/store.ts';
import {
  type JobRecord,
  type JobSpec,
  type JobPreview,
  type JobStatus,
  type JobWarning,
  type Output,
  type Problem,
  type Progress,
  type Usage,
  isTerminal,
} from './contract/index.ts';

export const MAX_INV_TIME = 2 ** 48 - 1;

/** request.json: written once by the edge at create. */
export interface StoredRequest {
  v: 1;
  id: string;
  tenant: string;
  created_at: string;
  spec: JobSpec;
  webhook: { url: string } | null;
}

export interface StoredOutput {
  source: string;
  /** the model the image comes from; absent in outputs stored before it existed */
  model?: string;
  index: number;
  kind: 'image' | 'latent';
  content_type: string;
  key: string;
  width?: number;
  height?: number;
}

export interface StoredTimings {
  queued_ms: number | null;
  run_ms: number | null;
  onnx_ms: number | null;
  outside_onnx_ms: number | null;
}

/**
 * status.json: written only by the runner holding the job's lease. `queued` here means the
 * runner put the job back after a transient failure (see `retry`).
 */
export interface StoredStatus {
  v: 1;
  status: JobStatus;
  /** the queue message that drives this run, and its delivery count: duplicates are told apart by it */
  message_id: string;
  attempt: number;
  started_at: string | null;
  finished_at: string | null;
  /** heartbeat: a running status older than the lease belongs to a dead runner */
  updated_at: string;
  progress: Progress | null;
  usage: Usage | null;
  timings: StoredTimings;
  error: Problem | null;
  outputs: StoredOutput[];
  /** set once the terminal webhook is in the outbox, so a redelivery does not enqueue it twice */
  webhook_enqueued: boolean;
  /** when the job waits for another attempt after a transient failure */
  retry?: { failed_attempt: number; max_attempts: number; error: string; next_attempt_at: string } | null;
  /** what the runner found while running (a prompt cut to the token limit); shaping's are in the spec */
  warnings?: JobWarning[];
}

/** One preview frame as stored and streamed (`event: preview`); see JobPreview in the contract. */
export type StoredPreviewFrame = Omit<JobPreview, 'job_id'>;

/** preview.json: written by the runner holding the lease, overwritten while the job runs. */
export interface StoredPreview {
  v: 1;
  latest: StoredPreviewFrame | null;
  /** the frame of the window's last step of the latest image that had one */
  window_end: StoredPreviewFrame | null;
}

/** cancel.json: written once by the edge. */
export interface StoredCancel {
  requested_at: string;
}

/** usage/{day}/{jobId}.json: written by the runner; the key is the job id, so it is never billed twice. */
export interface UsageRecord {
  v: 1;
  job_id: string;
  tenant: string;
  day: string;
  finished_at: string;
  status: 'succeeded' | 'failed' | 'canceled';
  images: number;
  unet_evals: number;
  runner_ms: number;
}

export interface WebhookAttempt {
  attempt: number;
  at: string;
  status: number | null;
  ok: boolean;
  error?: string;
  next_attempt_at: string | null;
}

export interface IdempotencyClaim {
  job_id: string;
  body_hash: string;
  created_at: string;
}

export type UrlSigner = (key: string, ttlSeconds: number) => Promise<string>;

export interface QueueInfoValue {
  position: number | null;
  reason: string;
}

export interface AssembleOptions {
  /** mints the short-lived output URLs */
  sign: UrlSigner;
  urlTtlSeconds: number;
  now: number;
  /** public origin for the record's `urls`, e.g. https://api.example.com */
  baseUrl: string;
  /** called only for queued jobs */
  queueInfo?: (req: StoredRequest) => Promise<QueueInfoValue>;
}

export interface JobParts {
  request: StoredRequest;
  status: StoredStatus | null;
  cancel: StoredCancel | null;
  webhookAttempts: WebhookAttempt[];
}

const JSON_TYPE = 'application/json';
const dec = new TextDecoder();

/** The day a timestamp belongs to, for usage keys (UTC). */
export const utcDay = (iso: string): string => iso.slice(0, 10);

/** The status a client sees: cancel.json without status.json means the runner never started it. */
export function derivedStatus(status: StoredStatus | null, cancel: StoredCancel | null): JobStatus {
  if (status && isTerminal(status.status)) return status.status;
  // not running (never started, or back in the queue for a retry): a cancel takes effect at once
  if (cancel && (!status || status.status === 'queued')) return 'canceled';
  return status?.status ?? 'queued';
}

export class JobRepository {
  constructor(readonly store: ObjectStore) {}

  // ---- keys -------------------------------------------------------------------------

  jobPrefix(tenant: string, jobId: string): string {
    return `tenants/${tenant}/jobs/${jobId}/`;
  }
  requestKey(tenant: string, jobId: string): string {
    return `${this.jobPrefix(tenant, jobId)}request.json`;
  }
  statusKey(tenant: string, jobId: string): string {
    return `${this.jobPrefix(tenant, jobId)}status.json`;
  }
  cancelKey(tenant: string, jobId: string): string {
    return `${this.jobPrefix(tenant, jobId)}cancel.json`;
  }
  outputKey(tenant: string, jobId: string, source: string, index: number, kind: 'image' | 'latent', model?: string): string {
    // a model id never contains '/', so the key stays inside the job's out/ folder; solo
    // images are one per model, so their name carries it
    const name = source === 'solo' && model ? `solo-${model}` : source;
    return `${this.jobPrefix(tenant, jobId)}out/${name}-${index}.${kind === 'image' ? 'png' : 'f32'}`;
  }
  /** preview.json: the latest small preview of every model's latent, overwritten while the job runs */
  previewKey(tenant: string, jobId: string): string {
    return `${this.jobPrefix(tenant, jobId)}preview.json`;
  }
  webhookAttemptKey(tenant: string, jobId: string, attempt: number): string {
    // zero-padded so byte order is attempt order
    return `${this.jobPrefix(tenant, jobId)}webhook/${String(attempt).padStart(4, '0')}.json`;
  }
  indexPrefix(tenant: string): string {
    return `tenants/${tenant}/index/`;
  }
  indexKey(tenant: string, createdMs: number, jobId: string): string {
    // inverted time: ascending byte order is newest first
    return `${this.indexPrefix(tenant)}${String(MAX_INV_TIME - createdMs).padStart(15, '0')}-${jobId}`;
  }
  /** Whether `key` has the shape of one of this tenant's index keys (what a list cursor names). */
  isIndexKey(tenant: string, key: string): boolean {
    const prefix = this.indexPrefix(tenant);
    if (!key.startsWith(prefix)) return false;
    const rest = key.slice(prefix.length);
    return /^\d{15}-/.test(rest) && JOB_ID_RE.test(rest.slice(16));
  }
  idempotencyPrefix(tenant: string, keyHash: string): string {
    return `tenants/${tenant}/idempotency/${keyHash}/`;
  }
  idempotencyClaimKey(tenant: string, keyHash: string, timeMs: number, jobId: string): string {
    return `${this.idempotencyPrefix(tenant, keyHash)}${String(timeMs).padStart(15, '0')}-${jobId}.json`;
  }
  /** Every upload of the tenant is under it: a reference image's key outside it is not the tenant's. */
  uploadsPrefix(tenant: string): string {
    return `tenants/${tenant}/uploads/`;
  }
  uploadKey(tenant: string, uploadId: string): string {
    return `${this.uploadsPrefix(tenant)}${uploadId}`;
  }
  usagePrefix(tenant: string): string {
    return `tenants/${tenant}/usage/`;
  }
  usageKey(tenant: string, day: string, jobId: string): string {
    return `${this.usagePrefix(tenant)}${day}/${jobId}.json`;
  }

  // ---- edge ---------------------------------------------------------------------------

  async putRequest(req: StoredRequest): Promise<void> {
    await this.putJson(this.requestKey(req.tenant, req.id), req);
  }

  /** Written after the job is enqueued: an index entry means "accepted". */
  async putIndex(tenant: string, createdMs: number, jobId: string): Promise<void> {
    await this.putJson(this.indexKey(tenant, createdMs, jobId), { id: jobId });
  }

  async hasIndex(tenant: string, createdMs: number, jobId: string): Promise<boolean> {
    return (await this.store.get(this.indexKey(tenant, createdMs, jobId))) !== null;
  }

  async putCancel(tenant: string, jobId: string, cancel: StoredCancel): Promise<void> {
    await this.putJson(this.cancelKey(tenant, jobId), cancel);
  }

  /** Job ids, newest first. The cursor is the store's (continue after the last key). */
  async listJobIds(tenant: string, opts: { limit: number; cursor: string | null }): Promise<{ ids: string[]; cursor: string | null }> {
    const page = await this.store.list(this.indexPrefix(tenant), { limit: opts.limit, cursor: opts.cursor });
    const ids = page.keys.map((k) => k.slice(k.lastIndexOf('-') + 1));
    return { ids, cursor: page.cursor };
  }

  async putIdempotencyClaim(tenant: string, keyHash: string, timeMs: number, claim: IdempotencyClaim): Promise<void> {
    await this.putJson(this.idempotencyClaimKey(tenant, keyHash, timeMs, claim.job_id), claim);
  }

  /** Every claim for a key, in key order (= time order, ties by job id): the first one wins. */
  async listIdempotencyClaims(tenant: string, keyHash: string): Promise<IdempotencyClaim[]> {
    const out: IdempotencyClaim[] = [];
    let cursor: string | null = null;
    do {
      const page = await this.store.list(this.idempotencyPrefix(tenant, keyHash), { cursor, limit: 100 });
      for (const key of page.keys) {
        const claim = await this.getJson<IdempotencyClaim>(key);
        if (claim) out.push(claim);
      }
      cursor = page.cursor;
    } while (cursor !== null);
    return out;
  }

  async putUpload(tenant: string, uploadId: string, bytes: Uint8Array, contentType: string): Promise<void> {
    await this.store.put(this.uploadKey(tenant, uploadId), bytes, contentType);
  }

  // ---- runner -------------------------------------------------------------------------

  async putStatus(tenant: string, jobId: string, status: StoredStatus): Promise<void> {
    await this.putJson(this.statusKey(tenant, jobId), status);
  }

  async putOutput(tenant: string, jobId: string, out: Omit<StoredOutput, 'key'>, bytes: Uint8Array): Promise<StoredOutput> {
    const key = this.outputKey(tenant, jobId, out.source, out.index, out.kind, out.model);
    await this.store.put(key, bytes, out.content_type);
    return { ...out, key };
  }

  async putPreview(tenant: string, jobId: string, preview: StoredPreview): Promise<void> {
    await this.putJson(this.previewKey(tenant, jobId), preview);
  }

  async putUsage(rec: UsageRecord): Promise<void> {
    await this.putJson(this.usageKey(rec.tenant, rec.day, rec.job_id), rec);
  }

  async getUsage(tenant: string, day: string, jobId: string): Promise<UsageRecord | null> {
    return this.getJson<UsageRecord>(this.usageKey(tenant, day, jobId));
  }

  // ---- dispatcher ---------------------------------------------------------------------

  async putWebhookAttempt(tenant: string, jobId: string, attempt: WebhookAttempt): Promise<void> {
    await this.putJson(this.webhookAttemptKey(tenant, jobId, attempt.attempt), attempt);
  }

  async listWebhookAttempts(tenant: string, jobId: string): Promise<WebhookAttempt[]> {
    const page = await this.store.list(`${this.jobPrefix(tenant, jobId)}webhook/`, { limit: 1000 });
    const out: WebhookAttempt[] = [];
    for (const key of page.keys) {
      const a = await this.getJson<WebhookAttempt>(key);
      if (a) out.push(a);
    }
    return out.sort((a, b) => a.attempt - b.attempt);
  }

  // ---- reads --------------------------------------------------------------------------

  getRequest(tenant: string, jobId: string): Promise<StoredRequest | null> {
    return this.getJson<StoredRequest>(this.requestKey(tenant, jobId));
  }
  getStatus(tenant: string, jobId: string): Promise<StoredStatus | null> {
    return this.getJson<StoredStatus>(this.statusKey(tenant, jobId));
  }
  getCancel(tenant: string, jobId: string): Promise<StoredCancel | null> {
    return this.getJson<StoredCancel>(this.cancelKey(tenant, jobId));
  }
  getPreview(tenant: string, jobId: string): Promise<StoredPreview | null> {
    return this.getJson<StoredPreview>(this.previewKey(tenant, jobId));
  }

  /** All objects of a job, read in parallel; null when the job does not exist for this tenant. */
  async getParts(tenant: string, jobId: string, opts: { withWebhookAttempts?: boolean } = {}): Promise<JobParts | null> {
    const [request, status, cancel] = await Promise.all([
      this.getRequest(tenant, jobId),
      this.getStatus(tenant, jobId),
      this.getCancel(tenant, jobId),
    ]);
    if (!request) return null;
    const webhookAttempts = request.webhook && opts.withWebhookAttempts !== false ? await this.listWebhookAttempts(tenant, jobId) : [];
    return { request, status, cancel, webhookAttempts };
  }

  async getJob(tenant: string, jobId: string, opts: AssembleOptions): Promise<JobRecord | null> {
    const parts = await this.getParts(tenant, jobId);
    return parts ? this.assemble(parts, opts) : null;
  }

  /** Usage records with day in [fromDay, toDay] (inclusive, YYYY-MM-DD). */
  async listUsage(tenant: string, fromDay: string, toDay: string): Promise<UsageRecord[]> {
    const prefix = this.usagePrefix(tenant);
    const out: UsageRecord[] = [];
    // cursors are "the last key seen" on every store: start right before the first day
    let cursor: string | null = `${prefix}${fromDay}`;
    do {
      const page = await this.store.list(prefix, { cursor, limit: 1000 });
      for (const key of page.keys) {
        const day = key.slice(prefix.length, prefix.length + 10);
        if (day < fromDay) continue;
        if (day > toDay) return out;
        const rec = await this.getJson<UsageRecord>(key);
        if (rec) out.push(rec);
      }
      cursor = page.cursor;
    } while (cursor !== null);
    return out;
  }

  /** The client's view of a job. Output URLs are signed here, on every read. */
  async assemble(parts: JobParts, opts: AssembleOptions): Promise<JobRecord> {
    const { request: req, status: st, cancel } = parts;
    const status = derivedStatus(st, cancel);
    let outputs: Output[] = [];
    if (st && status === 'succeeded') {
      const expiresAt = new Date(opts.now + opts.urlTtlSeconds * 1000).toISOString();
      outputs = await Promise.all(
        st.outputs.map(async (o) => ({
          source: o.source,
          ...(o.model !== undefined ? { model: o.model } : {}),
          index: o.index,
          kind: o.kind,
          content_type: o.content_type,
          url: await opts.sign(o.key, opts.urlTtlSeconds),
          expires_at: expiresAt,
          ...(o.width !== undefined ? { width: o.width } : {}),
          ...(o.height !== undefined ? { height: o.height } : {}),
        })),
      );
    }
    const retry = status === 'queued' ? st?.retry : null;
    const queue =
      status !== 'queued'
        ? null
        : retry
          ? {
              position: null,
              reason: `attempt ${retry.failed_attempt} of ${retry.max_attempts} failed (${retry.error}); retrying at ${retry.next_attempt_at}`,
            }
          : ((await opts.queueInfo?.(req)) ?? { position: null, reason: 'waiting for a runner' });
    return this.recordOf(parts, status, outputs, queue, opts.baseUrl);
  }

  /**
   * The record of a job its create has just stored: queued, nothing run, `queue` given. No
   * promise: the 202 of every create is built here.
   */
  assembleCreated(req: StoredRequest, queue: QueueInfoValue, baseUrl: string): JobRecord {
    return this.recordOf({ request: req, status: null, cancel: null, webhookAttempts: [] }, 'queued', [], queue, baseUrl);
  }

  private recordOf(parts: JobParts, status: JobStatus, outputs: Output[], queue: QueueInfoValue | null, baseUrl: string): JobRecord {
    const { request: req, status: st, cancel } = parts;
    const base = `${baseUrl}/v1/jobs/${req.id}`;
    const finishedAt = st?.finished_at ?? (status === 'canceled' && cancel ? cancel.requested_at : null);
    return {
      id: req.id,
      object: 'job',
      status,
      created_at: req.created_at,
      started_at: st?.started_at ?? null,
      finished_at: isTerminal(status) ? finishedAt : null,
      spec: req.spec,
      progress: st?.progress ?? null,
      queue,
      usage: st?.usage ?? null,
      timings: st?.timings ?? { queued_ms: null, run_ms: null, onnx_ms: null, outside_onnx_ms: null },
      error: st?.error ?? null,
      warnings: [...(req.spec.warnings ?? []), ...(st?.warnings ?? [])],
      outputs,
      webhook: req.webhook
        ? {
            url: req.webhook.url,
            deliveries: parts.webhookAttempts.map((a) => ({
              attempt: a.attempt,
              at: a.at,
              status: a.status,
              ok: a.ok,
              ...(a.error !== undefined ? { error: a.error } : {}),
              next_attempt_at: a.next_attempt_at,
            })),
          }
        : null,
      urls: { self: base, cancel: `${base}/cancel`, events: `${base}/events` },
    };
  }

  // ---- helpers ------------------------------------------------------------------------

  async getJson<T>(key: string): Promise<T | null> {
    const obj = await this.store.get(key);
    if (!obj) return null;
    return JSON.parse(dec.decode(obj.body)) as T;
  }

  async putJson(key: string, value: unknown): Promise<void> {
    // as text: every store encodes it once, where it needs the bytes
    await this.store.put(key, JSON.stringify(value), JSON_TYPE);
  }
}
