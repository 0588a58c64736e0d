/**
 * What the job routes do, apart from HTTP: create (shape, images, webhook policy,
 * idempotency through edge/idempotency.ts, enqueue), read, list, cancel and wait. Errors are
 * thrown as ProblemErrors naming the field, so the routes stay thin.
 *
 * Creation order is what makes "nothing accepted is ever lost" hold without transactions:
 * request.json first (the runner needs it), then the queue message, then the index entry.
 * The index entry is the mark of acceptance; an idempotent retry that finds a job without
 * it finishes the acceptance itself. Where store and queue share one transactional log (the
 * single node's SQLite file), the three writes go out together and commit in one
 * transaction instead: one fsync per create, not three in a row. The tenant's cap on active
 * jobs is checked by the same step that counts the job in (JobAdmission.admit); on the single
 * node that admission is a guarded write of the same transaction.
 */
import {
  JOB_ID_RE,
  cryptoRandomBytes,
  newJobId,
  newUploadId,
  type RandomBytes,
} from '../shared/ids.ts';
import {
  type JobRecord,
  type JobRequest,
  type JobSpec,
  type QueueMessage,
  isTerminal,
  shapeJobRequest,
} from '../shared/contract/index.ts';
import {
  type AssembleOptions,
  type JobParts,
  type JobRepository,
  type QueueInfoValue,
  type StoredRequest,
  derivedStatus,
} from '../shared/job-repository.ts';
import { checkImage, imageTypeOf } from '../shared/image-header.ts';
import { webhookUrlProblem } from '../shared/webhook-url-policy.ts';
import { sleep } from '../shared/sleep.ts';
import type { JobAdmission } from '../shared/ports/admission.ts';
import type { CommitLog } from '../shared/ports/store.ts';
import type { ResolvedDeps } from './deps.ts';
import { Idempotency } from './idempotency.ts';
import { type FieldProblem, ProblemError, validationProblem } from './middleware/problem/index.ts';
import { tooManyActiveJobs } from './middleware/rate-limit/index.ts';

/** Where a job stands in the answer to its own create. */
const JUST_QUEUED: QueueInfoValue = { position: null, reason: 'waiting for a runner; read the job for its place in the queue' };

export interface CreateInput {
  tenant: string;
  request: JobRequest;
  idempotencyKey: string | null;
}

interface PendingUpload {
  key: string;
  uploadId: string;
  bytes: Uint8Array;
  contentType: string;
}

export class JobsService {
  private readonly idempotency: Idempotency;
  private readonly messageIds = new Map<string, string>();
  private statsMemo: { at: number; value: Promise<QueueInfoValue> } | null = null;

  /** ids and seeds: the root's source, pooled when it is the default one */
  private readonly random: RandomBytes;
  /**
   * Functions handed out on every create or read, made once: a closure made per call costs
   * an allocation, and under tsx (keepNames) a defineProperty for its name as well.
   */
  private readonly sign: AssembleOptions['sign'];
  private readonly queueInfoOf: NonNullable<AssembleOptions['queueInfo']>;
  private readonly shapeOptions: { randomSeed: () => number };

  constructor(
    private readonly d: ResolvedDeps,
    private readonly repo: JobRepository,
    private readonly admission: JobAdmission,
  ) {
    this.random = d.random === cryptoRandomBytes ? pooledCryptoRandom() : d.random;
    this.sign = (key, ttl) => this.d.signer.signGet(key, ttl);
    this.queueInfoOf = (req) => this.queueInfo(req);
    this.shapeOptions = { randomSeed: () => this.randomUint32() };
    this.idempotency = new Idempotency({
      repo,
      store: d.store,
      clock: d.clock,
      settleMs: d.limits.idempotencySettleMs,
      enqueue: (req) => this.enqueue(req),
      assemble: (parts) => this.assemble(parts),
    });
  }

  assembleOptions(): AssembleOptions {
    return {
      sign: this.sign,
      urlTtlSeconds: this.d.limits.outputUrlTtlSeconds,
      now: this.d.clock.now(),
      baseUrl: this.d.publicBaseUrl,
      queueInfo: this.queueInfoOf,
    };
  }

  assemble(parts: JobParts): Promise<JobRecord> {
    return this.repo.assemble(parts, this.assembleOptions());
  }

  /**
   * The record of a job this request has just queued. It asks nobody where the job stands:
   * it is at the back of the queue, and finding its exact place cost three SQLite reads on
   * the event loop per create, more than the queue insert itself (bench/edge.ts profile).
   * Every later read (GET, list, events, Prefer: wait) reports the position.
   */
  private assembleCreated(stored: StoredRequest): JobRecord {
    return this.repo.assembleCreated(stored, JUST_QUEUED, this.d.publicBaseUrl);
  }

  /** Where a queued job stands: the root's answer if it has one, else the queue's counts. */
  private queueInfo(req: StoredRequest): Promise<QueueInfoValue> {
    if (this.d.queueInfo) return this.d.queueInfo(req, this.messageIds.get(req.id));
    const now = this.d.clock.now();
    // one stats call serves a whole page of queued jobs
    if (!this.statsMemo || now - this.statsMemo.at > 500) {
      const value = this.d.queue.stats().then(
        (s) => ({
          position: null,
          reason:
            s.visible + s.delayed === 0 && s.inFlight === 0
              ? 'waiting for a runner to pick it up'
              : `waiting for a free runner: ${s.visible + s.delayed} job(s) waiting and ${s.inFlight} running in the queue`,
        }),
        () => ({ position: null, reason: 'waiting for a runner' }),
      );
      this.statsMemo = { at: now, value };
    }
    return this.statsMemo.value;
  }

  // ---- create -------------------------------------------------------------------------

  async create(input: CreateInput): Promise<{ record: JobRecord; replayed: boolean }> {
    const { tenant, request } = input;
    const catalog = await this.d.catalog();
    const shaped = shapeJobRequest(request, catalog, this.shapeOptions);
    if (!shaped.ok) throw validationProblem(422, shaped.errors, 'the request does not fit the installed models');
    // shaping built a fresh object: it is ours to rewrite (reference images below)
    const spec: JobSpec = shaped.spec;

    const problems: FieldProblem[] = [];
    if (request.webhook) {
      const why = webhookUrlProblem(request.webhook.url, { allowPrivate: this.d.allowPrivateWebhooks });
      if (why) problems.push({ field: 'webhook.url', message: why });
    }
    const uploads = await this.resolveReferenceImages(tenant, request, spec, problems);
    if (problems.length > 0) throw validationProblem(422, problems);

    const now = this.d.clock.now();
    const jobId = newJobId(now, this.random);
    const createdAt = new Date(now).toISOString();

    if (input.idempotencyKey !== null) {
      const outcome = await this.idempotency.create({ tenant, key: input.idempotencyKey, request, jobId, now, createdAt }, () =>
        this.accept(tenant, now, request, spec, jobId, createdAt, uploads),
      );
      if (outcome.replayed) return { record: outcome.replayed, replayed: true };
      return { record: this.assembleCreated(outcome.accepted), replayed: false };
    }

    const stored = await this.accept(tenant, now, request, spec, jobId, createdAt, uploads);
    return { record: this.assembleCreated(stored), replayed: false };
  }

  /**
   * Admit the job under the tenant's cap, store it, queue it, then mark it accepted (the index
   * entry). Throws the 429 problem when the tenant is at its cap, having written nothing.
   */
  private async accept(
    tenant: string,
    now: number,
    request: JobRequest,
    spec: JobSpec,
    jobId: string,
    createdAt: string,
    uploads: PendingUpload[],
  ): Promise<StoredRequest> {
    for (const u of uploads) await this.repo.putUpload(tenant, u.uploadId, u.bytes, u.contentType);
    const stored: StoredRequest = {
      v: 1,
      id: jobId,
      tenant,
      created_at: createdAt,
      spec,
      webhook: request.webhook ? { url: request.webhook.url } : null,
    };
    const cap = this.d.limits.maxActiveJobs;
    const log = this.oneTransaction(tenant, now, jobId);
    if (log && this.admission.commitLog?.() === log) {
      // one unit: the admission guards the three writes, so a create at the cap commits none
      // of them, and the count and the create are one step for every process on the file
      const [admitted, ...writes] = log.unit(() => [
        this.admission.admit(tenant, jobId, cap),
        this.repo.putRequest(stored),
        this.enqueue(stored),
        this.repo.putIndex(tenant, now, jobId),
      ]);
      const [outcome, ...results] = await Promise.allSettled([admitted, ...writes]);
      if (outcome!.status === 'rejected') throw outcome!.reason;
      if (!outcome!.value) throw tooManyActiveJobs(cap);
      for (const r of results) if (r.status === 'rejected') throw r.reason;
      return stored;
    }
    if (!(await this.admission.admit(tenant, jobId, cap))) throw tooManyActiveJobs(cap);
    try {
      if (log) {
        // issued in this turn, so they join one commit: all three are durable, or none
        await Promise.all([this.repo.putRequest(stored), this.enqueue(stored), this.repo.putIndex(tenant, now, jobId)]);
      } else {
        await this.repo.putRequest(stored);
        await this.enqueue(stored);
        await this.repo.putIndex(tenant, now, jobId);
      }
    } catch (err) {
      await this.admission.withdraw(tenant, jobId).catch(() => {});
      throw err;
    }
    return stored;
  }

  /** The transactional log the request, its queue message and its index entry all join, if there is one. */
  private oneTransaction(tenant: string, now: number, jobId: string): CommitLog | undefined {
    const log = this.d.queue.commitLog?.();
    const store = this.d.store;
    return log !== undefined &&
      store.commitLog?.(this.repo.requestKey(tenant, jobId)) === log &&
      store.commitLog(this.repo.indexKey(tenant, now, jobId)) === log
      ? log
      : undefined;
  }

  private async enqueue(req: StoredRequest): Promise<void> {
    const msg: QueueMessage = { v: 1, job_id: req.id, tenant: req.tenant, enqueued_at: new Date(this.d.clock.now()).toISOString() };
    const messageId = await this.d.queue.send(JSON.stringify(msg));
    // remembered so queue positions are an indexed lookup, not a search; bounded, oldest out
    if (this.messageIds.size >= 100_000) this.messageIds.delete(this.messageIds.keys().next().value!);
    this.messageIds.set(req.id, messageId);
  }

  /**
   * Checks every reference image and rewrites the spec to point at its store key, so no
   * queue message or record carries image bytes. Inline images are stored only once the
   * request has won its idempotency claim (the returned uploads).
   */
  private async resolveReferenceImages(tenant: string, req: JobRequest, spec: JobSpec, problems: FieldProblem[]): Promise<PendingUpload[]> {
    const baseIndex = req.models.findIndex((m) => m.role === 'base');
    const order = [baseIndex, ...req.models.map((_, i) => i).filter((i) => i !== baseIndex)];
    const uploads: PendingUpload[] = [];
    const max = this.d.limits.maxUploadBytes;
    for (const [i, m] of req.models.entries()) {
      const ref = m.reference_image;
      const target = spec.models[order.indexOf(i)];
      if (!ref || !target?.reference_image) continue;
      if (ref.upload_id !== undefined) {
        const field = `models[${i}].reference_image.upload_id`;
        const key = this.repo.uploadKey(tenant, ref.upload_id);
        const obj = await this.d.store.get(key);
        if (!obj) {
          problems.push({ field, message: 'no upload with this id; create one with POST /v1/uploads and PUT the image to its upload_url first' });
          continue;
        }
        if (obj.body.byteLength > max) {
          problems.push({ field, message: `the uploaded image is ${obj.body.byteLength} bytes; at most ${max} are allowed` });
          continue;
        }
        if (!imageTypeOf(obj.body)) {
          problems.push({ field, message: 'the uploaded file is not a PNG or JPEG image' });
          continue;
        }
        // on S3 the upload went around the edge: this is the first look at its header
        const image = checkImage(obj.body);
        if (!image.ok) {
          problems.push({ field, message: image.message });
          continue;
        }
        target.reference_image = { key, scale: ref.scale };
      } else if (ref.data !== undefined) {
        const field = `models[${i}].reference_image.data`;
        const bytes = decodeBase64(ref.data);
        if (!bytes) {
          problems.push({ field, message: 'is not valid base64' });
          continue;
        }
        if (bytes.byteLength > max) {
          problems.push({ field, message: `the image is ${bytes.byteLength} bytes; at most ${max} are allowed` });
          continue;
        }
        if (!imageTypeOf(bytes)) {
          problems.push({ field, message: 'must be a PNG or JPEG image (base64 of the file bytes)' });
          continue;
        }
        const image = checkImage(bytes);
        if (!image.ok) {
          problems.push({ field, message: image.message });
          continue;
        }
        const type = image.header.type;
        const uploadId = newUploadId(this.random);
        const key = this.repo.uploadKey(tenant, uploadId);
        uploads.push({ key, uploadId, bytes, contentType: type });
        target.reference_image = { key, scale: ref.scale };
      }
    }
    return uploads;
  }

  private randomUint32(): number {
    const b = this.random(4);
    return ((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0;
  }

  // ---- read -------------------------------------------------------------------------------

  async get(tenant: string, jobId: string): Promise<JobRecord> {
    const parts = JOB_ID_RE.test(jobId) ? await this.repo.getParts(tenant, jobId) : null;
    if (!parts) throw notFound(jobId);
    return this.assemble(parts);
  }

  async list(tenant: string, limit: number, cursor: string | null): Promise<{ data: JobRecord[]; next_cursor: string | null }> {
    const storeCursor = cursor === null ? null : this.decodeCursor(tenant, cursor);
    const page = await this.repo.listJobIds(tenant, { limit, cursor: storeCursor });
    const parts = await Promise.all(page.ids.map((id) => this.repo.getParts(tenant, id)));
    const opts = this.assembleOptions();
    const data = await Promise.all(parts.filter((p): p is JobParts => p !== null).map((p) => this.repo.assemble(p, opts)));
    return { data, next_cursor: page.cursor === null ? null : encodeCursor(page.cursor) };
  }

  private decodeCursor(tenant: string, cursor: string): string {
    const bad = () =>
      new ProblemError(400, {
        type: 'bad-request',
        title: 'Bad request',
        detail: 'the cursor is not one this API returned',
        errors: [{ field: 'query.cursor', message: 'must be a next_cursor value from a previous page of GET /v1/jobs' }],
      });
    if (!/^c1\.[A-Za-z0-9_-]{1,2000}$/.test(cursor)) throw bad();
    let decoded: string;
    try {
      const bin = atob(cursor.slice(3).replace(/-/g, '+').replace(/_/g, '/'));
      decoded = new TextDecoder('utf-8', { fatal: true }).decode(Uint8Array.from(bin, (ch) => ch.charCodeAt(0)));
    } catch {
      throw bad();
    }
    // a cursor names the last index key of the previous page: it must be one of this
    // tenant's, and nothing else, or a forged one reaches the store (a 1500-byte key there
    // is a RangeError, another tenant's key a leak)
    if (!this.repo.isIndexKey(tenant, decoded)) throw bad();
    return decoded;
  }

  // ---- cancel -----------------------------------------------------------------------------

  async cancel(tenant: string, jobId: string): Promise<{ record: JobRecord; state: 'canceled' | 'cancel_requested' }> {
    const parts = JOB_ID_RE.test(jobId) ? await this.repo.getParts(tenant, jobId) : null;
    if (!parts) throw notFound(jobId);
    const status = derivedStatus(parts.status, parts.cancel);
    // canceling twice is harmless: a canceled job answers as it did the first time
    if (status === 'canceled') return { record: await this.assemble(parts), state: 'canceled' };
    if (isTerminal(status)) {
      throw new ProblemError(409, {
        type: 'job-finished',
        title: 'The job has already finished',
        detail: `job ${jobId} is ${status}; only queued or running jobs can be canceled`,
      });
    }
    if (!parts.cancel) {
      const cancel = { requested_at: new Date(this.d.clock.now()).toISOString() };
      await this.repo.putCancel(tenant, jobId, cancel);
      parts.cancel = cancel;
    }
    const record = await this.assemble(parts);
    return { record, state: record.status === 'canceled' ? 'canceled' : 'cancel_requested' };
  }

  // ---- wait -------------------------------------------------------------------------------

  /** Polls until the job is terminal, the deadline passes or the client goes away. */
  async waitForTerminal(tenant: string, record: JobRecord, deadlineMs: number, signal?: AbortSignal): Promise<JobRecord> {
    let current = record;
    let delay = 100;
    while (!isTerminal(current.status) && this.d.clock.now() < deadlineMs && !signal?.aborted) {
      await sleep(Math.min(delay, Math.max(0, deadlineMs - this.d.clock.now())), signal);
      delay = Math.min(delay * 1.5, 1000);
      const parts = await this.repo.getParts(tenant, current.id);
      if (!parts) break;
      current = await this.assemble(parts);
    }
    return current;
  }
}

export function notFound(jobId: string): ProblemError {
  // the same answer for "never existed" and "another tenant's": ids do not leak
  return new ProblemError(404, {
    type: 'job-not-found',
    title: 'Job not found',
    detail: `no job ${JSON.stringify(jobId.slice(0, 64))} for this API key`,
    errors: [{ field: 'path.id', message: 'no such job' }],
  });
}

export function encodeCursor(storeCursor: string): string {
  const bytes = new TextEncoder().encode(storeCursor);
  let bin = '';
  for (const b of bytes) bin += String.fromCharCode(b);
  return `c1.${btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '')}`;
}

/**
 * Cryptographic random bytes served from a 4 KiB buffer refilled by one getRandomValues call:
 * a call for a few bytes cost about 8 us here (a job id takes one), a copy out of the pool
 * well under one. Each caller gets its own copy, and no byte is handed out twice.
 */
function pooledCryptoRandom(): RandomBytes {
  let pool = new Uint8Array(0);
  let at = 0;
  return (n) => {
    if (n > 256) return cryptoRandomBytes(n);
    if (at + n > pool.length) {
      pool = crypto.getRandomValues(new Uint8Array(4096));
      at = 0;
    }
    at += n;
    return pool.slice(at - n, at);
  };
}

function decodeBase64(data: string): Uint8Array | null {
  try {
    const bin = atob(data);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  } catch {
    return null;
  }
}
