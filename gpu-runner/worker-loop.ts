/**
 * The runner's loop: long-poll the jobs queue, run each job on the engine, and keep the
 * store and the queue truthful whatever happens (crash, cancel, shutdown, bad input).
 *
 * Per message:
 *  1. parse it; an unparseable message (or one naming no job) is poison: it is released
 *     with a delay until the queue dead-letters it. A job that is already terminal is
 *     acked without rework (its usage record and webhook are made sure of), so a
 *     redelivered finished job is never run or billed twice.
 *  2. write status `running`, then progress at most every `progressIntervalMs`;
 *  3. extend the lease every half visibility timeout (the sampler runs in another thread,
 *     so this timer fires even while onnxruntime blocks);
 *  4. poll cancel.json and abort the engine between steps when it appears;
 *  5. write the outputs, then the terminal status, then exactly one usage record (keyed
 *     by the job id), then the webhook into the outbox queue;
 *  6. ack.
 * Errors steer the flow: EngineInputError and bad specs fail the job at once; anything
 * else is retried with exponential backoff and jitter, and the delivery that reaches
 * `maxReceives` fails the job with the reason. Messages the queue dead-lettered anyway
 * (the runner died during every attempt) are drained from the DLQ and their jobs failed.
 *
 * A full disk (StorageFullError from the store or the queue) is no fault of the job: it never
 * fails it, never uses up an attempt, and never loses what was computed. A write of a job that
 * finds the storage full is tried again every `storageRetryMs` while the loop keeps the lease,
 * until space is freed; receiving waits the same way. The cause is logged once, when the
 * storage fills, and once when it has room again (shared/storage-health.ts), and `health()`
 * reports it meanwhile (the single node's /healthz).
 *
 * Shutdown: close() stops receiving and lets running jobs finish within the grace period;
 * then it releases their leases (visibility 0) so another runner starts them at once.
 */
import {
  type JobSpec,
  type Problem,
  type Progress,
  type QueueMessage as QueueMessageType,
  QueueMessage,
  isTerminal,
} from '../shared/contract/index.ts';
import { unetEvalsPerImage } from '../shared/amdm/math.ts';
import { JOB_ID_RE } from '../shared/ids.ts';
import { TENANT_RE } from '../shared/api-keys.ts';
import { JobRepository, type StoredOutput, type StoredRequest, type StoredStatus, type UsageRecord, utcDay } from '../shared/job-repository.ts';
import { LeaseLostError, type JobQueue, type Lease } from '../shared/ports/queue.ts';
import { type ObjectStore, StorageFullError } from '../shared/ports/store.ts';
import { type HealthReport, StorageHealth } from '../shared/storage-health.ts';
import { EngineInputError, type Engine, type EngineProgress } from './engine/types.ts';
import { type Logger, errorFields, jsonLogger } from './logger.ts';
import { PreviewWriter } from './preview-writer.ts';
import { type WebhookMessage, webhookEventType } from './webhook-message.ts';

export interface WorkerLoopOptions {
  queue: JobQueue;
  store: ObjectStore;
  engine: Engine;
  /** the jobs queue's redrive threshold: the delivery with this count is the last try */
  maxReceives: number;
  /** where the jobs queue dead-letters; drained here, its jobs marked failed */
  deadLetterQueue?: JobQueue | null;
  /** the webhook outbox */
  webhookQueue?: JobQueue | null;
  /**
   * Told once a job's terminal status is stored (JobAdmission.release): on AWS the job's slot
   * in its tenant's active-job count comes free at once. Best effort, never fails a job.
   */
  releaseSlot?: ((tenant: string, jobId: string) => Promise<void>) | null;
  /** jobs run at once (one sampler thread each) */
  concurrency?: number;
  visibilitySeconds?: number;
  /** how long close() lets running jobs finish before releasing them */
  gracePeriodSeconds?: number;
  cancelPollMs?: number;
  /** a job running longer is aborted and counts as a failed attempt (a stuck engine must not hold the queue) */
  jobTimeoutSeconds?: number;
  progressIntervalMs?: number;
  /** live previews are written at most this often (preview-writer.ts); null: no previews */
  previewIntervalMs?: number | null;
  receiveWaitSeconds?: number;
  /** transient failures: delay = min(max, base * 2^(attempt-1)), with jitter */
  retryBackoff?: { baseSeconds: number; maxSeconds: number };
  /** poison messages are released with this delay until the queue dead-letters them */
  poisonDelaySeconds?: number;
  maxReferenceImageBytes?: number;
  /** how often a write (or a receive) that found the storage full is tried again */
  storageRetryMs?: number;
  /** where a full storage is reported and logged once; share the adapters' (default: the loop's own) */
  storageHealth?: StorageHealth;
  clock?: () => number;
  /** uniform in [0, 1): jitter */
  random?: () => number;
  logger?: Logger;
}

/** A job that can never run as specified: fail it now, do not retry. */
export class PermanentJobError extends Error {
  override name = 'PermanentJobError';
  constructor(
    message: string,
    readonly field?: string,
  ) {
    super(message);
  }
}

type AbortReason = 'cancel' | 'shutdown' | 'timeout';

interface Run {
  lease: Lease;
  /** known once the message parsed */
  tenant: string;
  jobId: string;
  controller: AbortController;
  reason: AbortReason | null;
  /** the lease is gone (lost, or released by shutdown): this run must not write anymore */
  detached: boolean;
  /** the terminal status is stored: from here on a failure may delay usage/webhook/ack, never change the outcome */
  terminal: boolean;
  writes: Promise<void>;
  lastWrite: number;
  /** when the lease was last taken or extended */
  lastExtend: number;
  /** aborted when the run is detached by shutdown or a lost lease: ends a wait for storage */
  stopWaiting: AbortController;
  /** time spent waiting for a full disk: not the tenant's to pay (usage.runner_ms leaves it out) */
  storageWaitMs: number;
  done: Promise<void>;
}

const DEFAULTS = {
  concurrency: 1,
  visibilitySeconds: 60,
  gracePeriodSeconds: 30,
  cancelPollMs: 1000,
  jobTimeoutSeconds: 3600,
  progressIntervalMs: 250,
  previewIntervalMs: 500 as number | null,
  receiveWaitSeconds: 10,
  retryBackoff: { baseSeconds: 10, maxSeconds: 600 },
  poisonDelaySeconds: 5,
  maxReferenceImageBytes: 10 * 1024 * 1024,
  storageRetryMs: 2000,
};

export class WorkerLoop {
  private readonly o: Required<Omit<WorkerLoopOptions, 'deadLetterQueue' | 'webhookQueue' | 'storageHealth' | 'releaseSlot'>> & {
    deadLetterQueue: JobQueue | null;
    webhookQueue: JobQueue | null;
    releaseSlot: ((tenant: string, jobId: string) => Promise<void>) | null;
  };
  private readonly storage: StorageHealth;
  private readonly repo: JobRepository;
  private readonly runs = new Set<Run>();
  private readonly stopReceiving = new AbortController();
  private loops: Promise<void>[] = [];
  private slotWaiters: (() => void)[] = [];
  private started = false;
  private closing: Promise<void> | null = null;
  /** jobs finished by this loop (any terminal state), for tests and logs */
  processed = 0;

  constructor(options: WorkerLoopOptions) {
    const o = { ...DEFAULTS, clock: Date.now, random: Math.random, logger: jsonLogger('runner'), deadLetterQueue: null, webhookQueue: null, releaseSlot: null, ...options };
    const need = (ok: boolean, name: string, what: string, got: unknown) => {
      if (!ok) throw new TypeError(`WorkerLoop: option "${name}" must be ${what} (got ${typeof got === 'object' ? typeof got : String(got)})`);
    };
    const isQueue = (q: unknown) => typeof q === 'object' && q !== null && ['receive', 'ack', 'release', 'extend', 'send'].every((m) => typeof (q as Record<string, unknown>)[m] === 'function');
    need(isQueue(o.queue), 'queue', 'a JobQueue', o.queue);
    need(typeof o.store?.put === 'function' && typeof o.store?.get === 'function', 'store', 'an ObjectStore', o.store);
    need(typeof o.engine?.generate === 'function', 'engine', 'an Engine', o.engine);
    need(o.deadLetterQueue === null || isQueue(o.deadLetterQueue), 'deadLetterQueue', 'a JobQueue or null', o.deadLetterQueue);
    need(o.webhookQueue === null || isQueue(o.webhookQueue), 'webhookQueue', 'a JobQueue or null', o.webhookQueue);
    need(Number.isInteger(o.maxReceives) && o.maxReceives >= 1, 'maxReceives', 'an integer >= 1', o.maxReceives);
    need(Number.isInteger(o.concurrency) && o.concurrency >= 1 && o.concurrency <= 64, 'concurrency', 'an integer from 1 to 64', o.concurrency);
    need(Number.isInteger(o.visibilitySeconds) && o.visibilitySeconds >= 2 && o.visibilitySeconds <= 43_200, 'visibilitySeconds', 'an integer from 2 to 43200', o.visibilitySeconds);
    need(o.gracePeriodSeconds >= 0 && Number.isFinite(o.gracePeriodSeconds), 'gracePeriodSeconds', 'a number >= 0', o.gracePeriodSeconds);
    need(o.cancelPollMs >= 10, 'cancelPollMs', 'a number >= 10', o.cancelPollMs);
    need(o.jobTimeoutSeconds > 0 && o.jobTimeoutSeconds <= 86_400, 'jobTimeoutSeconds', 'a number of seconds in (0, 86400]', o.jobTimeoutSeconds);
    need(o.progressIntervalMs >= 0, 'progressIntervalMs', 'a number >= 0', o.progressIntervalMs);
    need(o.previewIntervalMs === null || o.previewIntervalMs >= 0, 'previewIntervalMs', 'a number >= 0 or null', o.previewIntervalMs);
    need(Number.isInteger(o.receiveWaitSeconds) && o.receiveWaitSeconds >= 0 && o.receiveWaitSeconds <= 20, 'receiveWaitSeconds', 'an integer from 0 to 20', o.receiveWaitSeconds);
    need(o.retryBackoff.baseSeconds >= 0 && o.retryBackoff.maxSeconds >= o.retryBackoff.baseSeconds && o.retryBackoff.maxSeconds <= 43_200, 'retryBackoff', '{ baseSeconds >= 0, maxSeconds in [baseSeconds, 43200] }', JSON.stringify(o.retryBackoff));
    need(Number.isInteger(o.poisonDelaySeconds) && o.poisonDelaySeconds >= 0, 'poisonDelaySeconds', 'an integer >= 0', o.poisonDelaySeconds);
    need(o.storageRetryMs >= 10 && o.storageRetryMs <= 600_000, 'storageRetryMs', 'a number of ms from 10 to 600000', o.storageRetryMs);
    need(options.storageHealth === undefined || options.storageHealth instanceof StorageHealth, 'storageHealth', 'a StorageHealth', options.storageHealth);
    this.o = o;
    this.storage = options.storageHealth ?? new StorageHealth({ logger: o.logger });
    this.repo = new JobRepository(o.store);
  }

  /** Jobs running right now. */
  get running(): number {
    return this.runs.size;
  }

  /** `ok`, or `degraded` with the reason while the storage is full. */
  health(): HealthReport {
    return this.storage.report();
  }

  start(): void {
    if (this.started) throw new Error('WorkerLoop.start(): already started; a loop runs once (create a new WorkerLoop to restart)');
    this.started = true;
    this.loops.push(this.receiveLoop());
    if (this.o.deadLetterQueue) this.loops.push(this.deadLetterLoop(this.o.deadLetterQueue));
  }

  /**
   * Graceful stop: no new jobs; running ones get the grace period to finish, then their
   * leases are released so another runner picks them up at once. Idempotent; every step
   * runs even if an earlier one fails.
   */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  /**
   * The second signal: stop now. Running jobs are released to the queue right away (their
   * engine calls are aborted; nothing more is written for them).
   */
  async abortNow(): Promise<void> {
    this.stopReceiving.abort();
    await this.releaseAll();
  }

  private async shutdown(): Promise<void> {
    const errors: unknown[] = [];
    const step = async (what: string, fn: () => Promise<unknown>) => {
      try {
        await fn();
      } catch (err) {
        errors.push(err);
        this.o.logger.error(`shutdown: ${what} failed`, errorFields(err));
      }
    };
    this.stopReceiving.abort();
    for (const w of this.slotWaiters.splice(0)) w();
    await step('stopping the receive loops', () => Promise.all(this.loops));
    await step('draining running jobs', async () => {
      if (this.runs.size === 0) return;
      this.o.logger.info('draining', { running: this.runs.size, grace_seconds: this.o.gracePeriodSeconds });
      const drained = await Promise.race([
        Promise.all([...this.runs].map((r) => r.done)).then(() => true),
        sleep(this.o.gracePeriodSeconds * 1000).then(() => false),
      ]);
      if (!drained) await this.releaseAll();
    });
    if (errors.length > 0) throw new AggregateError(errors, 'WorkerLoop.close() finished with errors');
  }

  /** Give every running job back to the queue now. We MUST release: a kept lease delays the job by a whole visibility timeout. */
  private async releaseAll(): Promise<void> {
    await Promise.all(
      [...this.runs].map(async (run) => {
        if (run.detached) return;
        run.detached = true;
        run.reason = 'shutdown';
        run.controller.abort('shutdown');
        run.stopWaiting.abort();
        try {
          await this.o.queue.release(run.lease, 0);
          this.o.logger.warn('released a running job for another runner', { message_id: run.lease.messageId });
        } catch (err) {
          this.o.logger.error('could not release a running job; it reappears when its lease expires', { message_id: run.lease.messageId, ...errorFields(err) });
        }
      }),
    );
  }

  // ---- receiving ----------------------------------------------------------------------

  private async receiveLoop(): Promise<void> {
    let failures = 0;
    /** the storage a receive found full: a receive that leases (writes) again proves it has room */
    let fullAt: string | null = null;
    const signal = this.stopReceiving.signal;
    while (!signal.aborted) {
      while (this.runs.size >= this.o.concurrency && !signal.aborted) await new Promise<void>((r) => this.slotWaiters.push(r));
      if (signal.aborted) break;
      let leases: Lease[];
      try {
        leases = await this.o.queue.receive({
          max: Math.min(10, this.o.concurrency - this.runs.size),
          waitSeconds: this.o.receiveWaitSeconds,
          visibilitySeconds: this.o.visibilitySeconds,
          signal,
        });
        failures = 0;
        if (fullAt !== null && leases.length > 0) {
          this.storage.room(fullAt);
          fullAt = null;
        }
      } catch (err) {
        if (signal.aborted) break;
        if (err instanceof StorageFullError) {
          // the queue cannot lease a message on a full disk; the message stays where it is.
          // Logged once (storage health), and tried again soon: space may come back any time.
          this.storage.full(err);
          fullAt = err.where;
          await sleep(this.o.storageRetryMs, signal);
          continue;
        }
        failures++;
        this.o.logger.error('receive failed; backing off', { failures, ...errorFields(err) });
        await sleep(Math.min(30_000, 500 * 2 ** Math.min(failures, 6)), signal);
        continue;
      }
      // a receive that raced close() still hands its leases to handlers: they run or are released
      for (const lease of leases) this.track(lease);
    }
  }

  private track(lease: Lease): void {
    const run: Run = {
      lease,
      tenant: '',
      jobId: '',
      controller: new AbortController(),
      reason: null,
      detached: false,
      terminal: false,
      writes: Promise.resolve(),
      lastWrite: 0,
      lastExtend: this.o.clock(),
      stopWaiting: new AbortController(),
      storageWaitMs: 0,
      done: Promise.resolve(),
    };
    this.runs.add(run);
    run.done = this.handle(run)
      .catch(async (err) => {
        if (err instanceof StorageFullError) {
          // a write no wait covers (a release) found no room: the job is untouched and comes
          // back when its lease ends; the full disk is logged once, not per message
          this.storage.full(err);
          if (!run.detached) await this.o.queue.release(lease, Math.ceil(this.o.storageRetryMs / 1000)).catch(() => {});
          return;
        }
        this.o.logger.error('unexpected failure handling a message; releasing it', { message_id: lease.messageId, ...errorFields(err) });
        if (!run.detached) await this.o.queue.release(lease, this.backoffSeconds(lease.receiveCount)).catch(() => {});
      })
      .finally(() => {
        this.runs.delete(run);
        this.slotWaiters.shift()?.();
      });
  }

  // ---- one message --------------------------------------------------------------------

  private async handle(run: Run): Promise<void> {
    const { lease } = run;
    const log = this.o.logger;
    let msg: QueueMessageType;
    try {
      msg = QueueMessage.parse(JSON.parse(lease.body));
      if (!JOB_ID_RE.test(msg.job_id) || !TENANT_RE.test(msg.tenant)) throw new Error('job_id or tenant is not well-formed');
    } catch (err) {
      log.error('poison message: not a job message; leaving it to the dead-letter queue', { message_id: lease.messageId, receive_count: lease.receiveCount, body: lease.body.slice(0, 200), ...errorFields(err) });
      await this.o.queue.release(lease, this.o.poisonDelaySeconds);
      return;
    }
    const { tenant, job_id: jobId } = msg;
    run.tenant = tenant;
    run.jobId = jobId;
    const ctx = { job_id: jobId, tenant, message_id: lease.messageId, attempt: lease.receiveCount };
    const [req, status, cancel] = await Promise.all([this.repo.getRequest(tenant, jobId), this.repo.getStatus(tenant, jobId), this.repo.getCancel(tenant, jobId)]);
    if (!req) {
      log.error('poison message: its job does not exist; leaving it to the dead-letter queue', ctx);
      await this.o.queue.release(lease, this.o.poisonDelaySeconds);
      return;
    }

    if (status && isTerminal(status.status)) {
      log.info('redelivered a finished job; acking without rework', { ...ctx, status: status.status });
      await this.ensureAftermath(req, status, run);
      await this.ack(run);
      return;
    }
    if (cancel) {
      // canceled while queued (or while a runner that died was running it): never runs
      await this.finish(run, req, {
        ...this.baseStatus(run, status),
        status: 'canceled',
        finished_at: iso(this.o.clock()),
        progress: status?.status === 'running' ? status.progress : null,
      });
      log.info('canceled before it ran', ctx);
      return;
    }
    if (status?.status === 'running' && status.message_id !== lease.messageId && this.o.clock() - Date.parse(status.updated_at) < this.o.visibilitySeconds * 1500) {
      // another message for the same job is being run right now (a duplicate enqueue)
      log.warn('duplicate message for a job running elsewhere; dropping it', { ...ctx, running_message: status.message_id });
      await this.ack(run);
      return;
    }
    await this.runJob(run, req, ctx);
  }

  private async runJob(run: Run, req: StoredRequest, ctx: Record<string, unknown>): Promise<void> {
    const { lease } = run;
    const spec = req.spec;
    const startedAt = this.o.clock();
    const tenant = req.tenant;
    const createdMs = Date.parse(req.created_at);
    let status: StoredStatus = {
      ...this.baseStatus(run, null),
      status: 'running',
      started_at: iso(startedAt),
      progress: { step: 0, total: spec.sampler.steps, phase: 'starting', image: 1, images: spec.outputs.images },
      timings: { queued_ms: startedAt - createdMs, run_ms: null, onnx_ms: null, outside_onnx_ms: null },
    };
    await this.writeStatus(run, status, true);
    this.o.logger.info('running', ctx);

    let latest: EngineProgress | null = null;
    const heartbeat = setInterval(() => void this.heartbeat(run, () => status), (this.o.visibilitySeconds * 1000) / 2);
    let polling = false;
    const checkCancel = async () => {
      if (polling || run.reason) return;
      polling = true;
      try {
        if (await this.repo.getCancel(tenant, req.id)) this.abort(run, 'cancel');
      } catch (err) {
        this.o.logger.warn('cancel check failed; will retry', { ...ctx, ...errorFields(err) });
      } finally {
        polling = false;
      }
    };
    const cancelTimer = setInterval(() => void checkCancel(), this.o.cancelPollMs);
    const deadline = setTimeout(() => this.abort(run, 'timeout'), this.o.jobTimeoutSeconds * 1000);
    try {
      // the edge may have written cancel.json between our read and our `running` write
      await checkCancel();
      const referenceImages = await this.referenceImages(req);
      if (run.reason) throw new DOMException(run.reason, 'AbortError');
      const previews =
        this.o.previewIntervalMs === null
          ? null
          : new PreviewWriter({ repo: this.repo, tenant, jobId: req.id, intervalMs: this.o.previewIntervalMs, clock: this.o.clock, logger: this.o.logger, mayWrite: () => !run.detached && !run.reason });
      const result = await this.o.engine.generate(spec, {
        signal: run.controller.signal,
        referenceImages,
        // the runner's warnings (a prompt cut to the token limit) show on the record at once
        onWarning: (w) => {
          status = { ...status, warnings: [...(status.warnings ?? []), w] };
          void this.writeStatus(run, status, false);
        },
        ...(previews ? { preview: { everyMs: this.o.previewIntervalMs!, onFrame: (f) => previews.offer(f) } } : {}),
        onProgress: (p) => {
          latest = p;
          const now = this.o.clock();
          if (now - run.lastWrite >= this.o.progressIntervalMs) {
            status = { ...status, progress: toProgress(p) };
            void this.writeStatus(run, status, false);
          }
        },
      }).finally(() => previews?.close());
      clearInterval(heartbeat);
      clearInterval(cancelTimer);
      clearTimeout(deadline);
      if (run.detached) return;
      // a cancel that arrived during the last step still wins over a result nobody wants
      if (!run.reason && (await this.repo.getCancel(tenant, req.id))) run.reason = 'cancel';
      if (run.reason === 'cancel') throw new DOMException('canceled', 'AbortError');

      const outputs: StoredOutput[] = [];
      for (const o of result.outputs) {
        outputs.push(
          // computed is computed: on a full disk the images wait in memory for room, never redone
          await this.untilStored(run, () =>
            this.repo.putOutput(
              tenant,
              req.id,
              { source: o.source, ...(o.model !== undefined ? { model: o.model } : {}), index: o.index, kind: o.kind, content_type: o.contentType, ...(o.width !== undefined ? { width: o.width } : {}), ...(o.height !== undefined ? { height: o.height } : {}) },
              o.bytes,
            ),
          ),
        );
      }
      const finishedAt = this.o.clock();
      const runMs = finishedAt - startedAt;
      await this.finish(run, req, {
        ...status,
        status: 'succeeded',
        finished_at: iso(finishedAt),
        progress: latest ? toProgress(latest) : status.progress,
        usage: { unet_evals: result.unetEvals, images: result.outputs.filter((o) => o.kind === 'image' && o.source === 'aggregated').length, runner_ms: runMs - run.storageWaitMs },
        timings: { queued_ms: startedAt - createdMs, run_ms: runMs, onnx_ms: round(result.timings.onnxMs), outside_onnx_ms: round(result.timings.outsideOnnxMs) },
        outputs,
      });
      const t = result.timings;
      this.o.logger.info('succeeded', {
        ...ctx,
        run_ms: runMs,
        unet_evals: result.unetEvals,
        load_ms: round(t.loadMs),
        sampling_ms: round(t.totalMs),
        onnx_ms: round(t.onnxMs),
        ...(t.unetMs !== undefined ? { unet_ms: round(t.unetMs) } : {}),
      });
    } catch (err) {
      clearInterval(heartbeat);
      clearInterval(cancelTimer);
      clearTimeout(deadline);
      if (run.detached) return; // released by shutdown or lease lost: someone else owns the job now
      if (run.terminal) {
        // the outcome is stored; what failed is the usage record, the webhook or the ack.
        // The redelivery finds the job terminal and completes exactly those steps.
        this.o.logger.error('finishing a terminal job failed; it will be completed on redelivery', { ...ctx, ...errorFields(err) });
        await this.o.queue.release(lease, this.backoffSeconds(lease.receiveCount));
        run.detached = true;
        return;
      }
      const finishedAt = this.o.clock();
      // canceled: however the engine stopped (an abort, or its thread terminated for ignoring it)
      if (run.reason === 'cancel') {
        const done = latest as EngineProgress | null;
        await this.finish(run, req, {
          ...status,
          status: 'canceled',
          finished_at: iso(finishedAt),
          // billed for the steps it ran; a job canceled before its first step costs nothing
          usage: done ? { unet_evals: partialEvals(spec, done), images: 0, runner_ms: finishedAt - startedAt - run.storageWaitMs } : null,
          timings: { ...status.timings, run_ms: finishedAt - startedAt },
        });
        this.o.logger.info('canceled while running', { ...ctx, at_step: done?.step ?? 0 });
        return;
      }
      if (err instanceof StorageFullError) {
        // untilStored() gives up only on a detached run; should a full disk surface anywhere
        // else, the job still goes back to the queue as it is, never failed for it
        this.storage.full(err);
        await this.o.queue.release(lease, Math.ceil(this.o.storageRetryMs / 1000)).catch(() => {});
        run.detached = true;
        return;
      }
      if (err instanceof EngineInputError || err instanceof PermanentJobError) {
        await this.fail(run, req, status, {
          type: 'urn:amdm:problem:invalid-job',
          title: 'The job cannot run as specified',
          status: 422,
          detail: cleanMessage(err.message),
          ...(err.field ? { errors: [{ field: err.field, message: cleanMessage(err.message) }] } : {}),
        });
        this.o.logger.warn('failed permanently', { ...ctx, ...errorFields(err) });
        return;
      }
      const cause = run.reason === 'timeout' ? new Error(`the job ran longer than ${this.o.jobTimeoutSeconds} s`) : err;
      await this.transientFailure(run, req, status, cause, ctx);
    }
  }

  private async transientFailure(run: Run, req: StoredRequest, status: StoredStatus, err: unknown, ctx: Record<string, unknown>): Promise<void> {
    const { lease } = run;
    const message = cleanMessage((err as Error)?.message ?? String(err));
    if (lease.receiveCount >= this.o.maxReceives) {
      await this.fail(run, req, status, {
        type: 'urn:amdm:problem:job-failed',
        title: 'The job failed',
        status: 500,
        detail: `gave up after ${lease.receiveCount} attempts; the last one failed with: ${message}`,
      });
      this.o.logger.error('failed after the last attempt', { ...ctx, ...errorFields(err) });
      return;
    }
    const delay = this.backoffSeconds(lease.receiveCount);
    await this.writeStatus(
      run,
      {
        ...this.baseStatus(run, null),
        status: 'queued',
        retry: { failed_attempt: lease.receiveCount, max_attempts: this.o.maxReceives, error: message, next_attempt_at: iso(this.o.clock() + delay * 1000) },
      },
      true,
    );
    await this.o.queue.release(lease, delay);
    run.detached = true;
    this.o.logger.warn('attempt failed; retrying later', { ...ctx, retry_in_seconds: delay, ...errorFields(err) });
  }

  private async fail(run: Run, req: StoredRequest, status: StoredStatus, problem: Problem): Promise<void> {
    const finishedAt = this.o.clock();
    await this.finish(run, req, {
      ...status,
      status: 'failed',
      finished_at: iso(finishedAt),
      error: problem,
      timings: { ...status.timings, run_ms: status.started_at ? finishedAt - Date.parse(status.started_at) : null },
    });
  }

  /** Terminal status, then usage, then the webhook, then ack: in this order, each at most once per job. */
  private async finish(run: Run, req: StoredRequest, final: StoredStatus): Promise<void> {
    await this.writeStatus(run, final, true);
    run.terminal = true;
    await this.ensureAftermath(req, final, run);
    await this.ack(run);
    this.processed++;
  }

  /**
   * The release of a terminal job's slot, then its usage record and its webhook if they are not
   * there yet. With the run that holds the job, its writes wait for room on a full disk
   * (untilStored).
   */
  private async ensureAftermath(req: StoredRequest, status: StoredStatus, run?: Run): Promise<void> {
    await this.releaseSlot(req);
    const stored = <T>(write: () => Promise<T>): Promise<T> => (run ? this.untilStored(run, write) : write());
    const { usage, finished_at: finishedAt } = status;
    if (usage && finishedAt) {
      const day = utcDay(finishedAt);
      if (!(await this.repo.getUsage(req.tenant, day, req.id))) {
        const record: UsageRecord = {
          v: 1,
          job_id: req.id,
          tenant: req.tenant,
          day,
          finished_at: finishedAt,
          status: status.status as 'succeeded' | 'failed' | 'canceled',
          images: usage.images,
          unet_evals: usage.unet_evals,
          runner_ms: usage.runner_ms,
        };
        await stored(() => this.repo.putUsage(record));
      }
    }
    if (req.webhook && !status.webhook_enqueued) {
      if (!this.o.webhookQueue) {
        this.o.logger.warn('job has a webhook but this runner has no webhook queue', { job_id: req.id });
        return;
      }
      const message: WebhookMessage = { v: 1, job_id: req.id, tenant: req.tenant, type: webhookEventType(status.status) };
      const webhooks = this.o.webhookQueue;
      await stored(() => webhooks.send(JSON.stringify(message)));
      const marked = { ...status, webhook_enqueued: true };
      if (run) await this.writeStatus(run, marked, true);
      else await this.repo.putStatus(req.tenant, req.id, marked);
    }
  }

  /**
   * The terminal status is stored: the tenant's active-job count may let the next job in. A
   * failure is logged, not thrown: the admission also finds the job finished in the store.
   */
  private async releaseSlot(req: StoredRequest): Promise<void> {
    if (!this.o.releaseSlot) return;
    try {
      await this.o.releaseSlot(req.tenant, req.id);
    } catch (err) {
      this.o.logger.warn("releasing the job's slot failed; the admission reads the finish from the store instead", { job_id: req.id, tenant: req.tenant, ...errorFields(err) });
    }
  }

  private baseStatus(run: Run, previous: StoredStatus | null): StoredStatus {
    const now = this.o.clock();
    return {
      v: 1,
      status: 'running',
      message_id: run.lease.messageId,
      attempt: run.lease.receiveCount,
      started_at: previous?.started_at ?? null,
      finished_at: null,
      updated_at: iso(now),
      progress: null,
      usage: null,
      timings: previous?.timings ?? { queued_ms: null, run_ms: null, onnx_ms: null, outside_onnx_ms: null },
      error: null,
      outputs: [],
      webhook_enqueued: false,
      retry: null,
    };
  }

  /**
   * Status writes of one run happen one after another, in order; `must` writes are awaited
   * and throw, progress writes are best effort. A detached run writes nothing.
   */
  private writeStatus(run: Run, status: StoredStatus, must: boolean): Promise<void> {
    run.lastWrite = this.o.clock();
    const put = () => this.repo.putStatus(run.tenant, run.jobId, { ...status, updated_at: iso(this.o.clock()) });
    const next = run.writes.then(async () => {
      if (run.detached) return;
      // a `must` write waits for room on a full disk; progress is dropped (the next one says more)
      await (must ? this.untilStored(run, put) : put());
    });
    run.writes = next.catch((err) => {
      if (must) return;
      if (err instanceof StorageFullError) this.storage.full(err);
      else this.o.logger.warn('progress write failed', { message_id: run.lease.messageId, ...errorFields(err) });
    });
    return must ? next : run.writes;
  }

  /**
   * One write of the job `run` holds. While the storage is full, the job is kept: the write is
   * tried again every storageRetryMs with the lease kept alive, and no attempt is used up. Only
   * a detached run (shutdown released it, or its lease was lost) stops waiting, with the error.
   */
  private async untilStored<T>(run: Run, write: () => Promise<T>): Promise<T> {
    let fullAt: string | null = null;
    for (;;) {
      try {
        const result = await write();
        // adapters that watch their storage say so themselves; this covers those that do not
        if (fullAt !== null) this.storage.room(fullAt);
        return result;
      } catch (err) {
        if (!(err instanceof StorageFullError)) throw err;
        this.storage.full(err);
        fullAt = err.where;
        if (run.detached) throw err;
        const waitFrom = this.o.clock();
        await sleep(this.o.storageRetryMs, run.stopWaiting.signal);
        await this.keepLease(run);
        run.storageWaitMs += this.o.clock() - waitFrom;
        if (run.detached) throw err;
      }
    }
  }

  /** Extends the lease of a run waiting for storage, at the heartbeat's pace. */
  private async keepLease(run: Run): Promise<void> {
    if (run.detached || this.o.clock() - run.lastExtend < (this.o.visibilitySeconds * 1000) / 2) return;
    try {
      await this.o.queue.extend(run.lease, this.o.visibilitySeconds);
      run.lastExtend = this.o.clock();
    } catch (err) {
      if (err instanceof LeaseLostError) {
        this.o.logger.error('lease lost while waiting for storage; abandoning the job to its new holder', { message_id: run.lease.messageId });
        run.detached = true;
        run.controller.abort('lease lost');
        run.stopWaiting.abort();
        return;
      }
      // the queue on the full disk cannot extend either: the lease outlives its timeout, and
      // the message is still ours until another receiver leases it (which the same disk stops)
      if (err instanceof StorageFullError) this.storage.full(err);
      else this.o.logger.warn('lease extension failed; will retry', { message_id: run.lease.messageId, ...errorFields(err) });
    }
  }

  private async heartbeat(run: Run, current: () => StoredStatus): Promise<void> {
    if (run.detached) return;
    try {
      await this.o.queue.extend(run.lease, this.o.visibilitySeconds);
      run.lastExtend = this.o.clock();
    } catch (err) {
      if (err instanceof LeaseLostError) {
        // another runner has the job now: stop, and write nothing more
        this.o.logger.error('lease lost; abandoning the job to its new holder', { message_id: run.lease.messageId });
        run.detached = true;
        run.controller.abort('lease lost');
        run.stopWaiting.abort();
        return;
      }
      if (err instanceof StorageFullError) this.storage.full(err);
      else this.o.logger.warn('lease extension failed; will retry at the next beat', { message_id: run.lease.messageId, ...errorFields(err) });
      return;
    }
    // keep updated_at fresh even when no step finishes for a while (first model load)
    if (this.o.clock() - run.lastWrite >= (this.o.visibilitySeconds * 1000) / 2) void this.writeStatus(run, current(), false);
  }

  private abort(run: Run, reason: AbortReason): void {
    if (run.reason) return;
    run.reason = reason;
    run.controller.abort(reason);
  }

  private async ack(run: Run): Promise<void> {
    try {
      await this.untilStored(run, () => this.o.queue.ack(run.lease));
    } catch (err) {
      if (!(err instanceof LeaseLostError)) throw err;
      // another runner holds it now; it will find the job terminal and ack without rework
      this.o.logger.warn('ack after the lease was lost', { message_id: run.lease.messageId });
    }
    run.detached = true;
  }

  private async referenceImages(req: StoredRequest): Promise<(Uint8Array | null)[]> {
    return Promise.all(
      req.spec.models.map(async (m, k) => {
        const key = m.reference_image?.key;
        if (!key) return null;
        if (!key.startsWith(`tenants/${req.tenant}/uploads/`)) throw new PermanentJobError('the reference image is not one of this tenant\'s uploads', `models[${k}].reference_image`);
        const obj = await this.o.store.get(key);
        if (!obj) throw new PermanentJobError('the reference image upload no longer exists', `models[${k}].reference_image`);
        if (obj.body.byteLength > this.o.maxReferenceImageBytes) {
          throw new PermanentJobError(`the reference image is ${obj.body.byteLength} bytes; at most ${this.o.maxReferenceImageBytes} are allowed`, `models[${k}].reference_image`);
        }
        return obj.body;
      }),
    );
  }

  private backoffSeconds(attempt: number): number {
    const { baseSeconds, maxSeconds } = this.o.retryBackoff;
    const cap = Math.min(maxSeconds, baseSeconds * 2 ** Math.max(0, attempt - 1));
    // "equal jitter": at least half the delay, so retries never bunch at zero
    return Math.min(43_200, Math.ceil(cap / 2 + (this.o.random() * cap) / 2));
  }

  // ---- dead letters -------------------------------------------------------------------

  private async deadLetterLoop(dlq: JobQueue): Promise<void> {
    const signal = this.stopReceiving.signal;
    let failures = 0;
    while (!signal.aborted) {
      let leases: Lease[];
      try {
        leases = await dlq.receive({ max: 10, waitSeconds: this.o.receiveWaitSeconds, visibilitySeconds: 60, signal });
        failures = 0;
      } catch (err) {
        if (signal.aborted) break;
        if (err instanceof StorageFullError) {
          this.storage.full(err);
          await sleep(this.o.storageRetryMs, signal);
          continue;
        }
        failures++;
        this.o.logger.error('dead-letter receive failed; backing off', { failures, ...errorFields(err) });
        await sleep(Math.min(60_000, 1000 * 2 ** Math.min(failures, 6)), signal);
        continue;
      }
      for (const lease of leases) {
        try {
          await this.deadLetter(dlq, lease);
        } catch (err) {
          if (err instanceof StorageFullError) this.storage.full(err);
          else this.o.logger.error('handling a dead letter failed; it comes back later', { message_id: lease.messageId, ...errorFields(err) });
          await dlq.release(lease, 60).catch(() => {});
        }
      }
    }
  }

  private async deadLetter(dlq: JobQueue, lease: Lease): Promise<void> {
    let msg: QueueMessageType | null = null;
    try {
      msg = QueueMessage.parse(JSON.parse(lease.body));
      if (!JOB_ID_RE.test(msg.job_id) || !TENANT_RE.test(msg.tenant)) msg = null;
    } catch {
      msg = null;
    }
    const req = msg ? await this.repo.getRequest(msg.tenant, msg.job_id) : null;
    if (!msg || !req) {
      // nothing to fail: keep it parked in the DLQ for an operator, out of the way for 12 h
      this.o.logger.error('dead letter that names no job; parked', { message_id: lease.messageId, body: lease.body.slice(0, 200) });
      await dlq.release(lease, 43_200);
      return;
    }
    const status = await this.repo.getStatus(msg.tenant, msg.job_id);
    if (status && isTerminal(status.status)) {
      await this.ensureAftermath(req, status);
      await dlq.ack(lease);
      return;
    }
    // The message is in the DLQ, so no runner holds the job: this loop is its only writer.
    const finishedAt = this.o.clock();
    const final: StoredStatus = {
      v: 1,
      status: 'failed',
      message_id: lease.messageId,
      attempt: lease.receiveCount,
      started_at: status?.started_at ?? null,
      finished_at: iso(finishedAt),
      updated_at: iso(finishedAt),
      progress: status?.progress ?? null,
      usage: null,
      timings: status?.timings ?? { queued_ms: null, run_ms: null, onnx_ms: null, outside_onnx_ms: null },
      error: {
        type: 'urn:amdm:problem:dead-lettered',
        title: 'The job failed',
        status: 500,
        detail: `dead-lettered after ${Math.max(lease.receiveCount - 1, this.o.maxReceives)} deliveries: every attempt ended without a result (the runner stopped or crashed while running it)`,
      },
      outputs: [],
      webhook_enqueued: false,
      retry: null,
    };
    await this.repo.putStatus(msg.tenant, msg.job_id, final);
    await this.ensureAftermath(req, final);
    await dlq.ack(lease);
    this.processed++;
    this.o.logger.error('dead-lettered job marked failed', { job_id: msg.job_id, tenant: msg.tenant, message_id: lease.messageId });
  }
}

function toProgress(p: EngineProgress): Progress {
  return { step: p.step, total: p.total, phase: p.phase, image: p.image, images: p.images, ...(p.model !== undefined ? { model: p.model } : {}) };
}

/** UNet calls done before a cancel: the engine's count, or whole images plus the steps of the current one. */
function partialEvals(spec: JobSpec, p: EngineProgress | null): number {
  if (!p) return 0;
  if (p.unetEvals !== undefined) return p.unetEvals;
  const n = spec.models.length;
  const end = spec.aggregation.window[1];
  const perImage = unetEvalsPerImage(n, spec.sampler.steps, end, spec.outputs.per_model);
  const current = p.phase === 'decoding' ? perImage : unetEvalsPerImage(n, p.step, end, spec.outputs.per_model);
  return (p.image - 1) * perImage + Math.max(0, current);
}

/** Error text for clients: one line, no file system paths, bounded. */
function cleanMessage(message: string): string {
  return message
    .split('\n')[0]!
    .replace(/(?:file:\/\/)?(?:\/[\w.@-]+){2,}/g, '<path>')
    .slice(0, 300);
}

const iso = (ms: number) => new Date(ms).toISOString();
const round = (x: number) => Math.round(x * 10) / 10;

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}
