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
 *  3. hold the lease while the job runs: heartbeat, cancel polling, time limit (job-lease.ts);
 *  4. write the outputs, then the terminal status, then its aftermath: the slot, exactly one
 *     usage record (keyed by the job id), the webhook into the outbox (job-aftermath.ts);
 *  5. ack.
 * A failed attempt is failed or retried as the retry policy decides (retry-policy.ts).
 * Messages the queue dead-lettered anyway (the runner died during every attempt) are drained
 * from the DLQ and their jobs failed (dead-letter-drain.ts).
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
import { type JobSpec, type Problem, type Progress, type QueueMessage, isTerminal } from '../shared/contract/index.ts';
import { unetEvalsPerImage } from '../shared/amdm/math.ts';
import { JobRepository, type StoredOutput, type StoredRequest, type StoredStatus } from '../shared/job-repository.ts';
import { LeaseLostError, type JobQueue, type Lease } from '../shared/ports/queue.ts';
import { type ObjectStore, StorageFullError } from '../shared/ports/store.ts';
import { type HealthReport, StorageHealth } from '../shared/storage-health.ts';
import { type Logger, errorFields, jsonLogger } from '../shared/logger.ts';
import { sleep } from '../shared/sleep.ts';
import type { Engine, EngineProgress } from './engine/types.ts';
import { DeadLetterDrain } from './dead-letter-drain.ts';
import { type HeldWrites, JobAftermath, parseJobMessage } from './job-aftermath.ts';
import { JobLease } from './job-lease.ts';
import { PreviewWriter } from './preview-writer.ts';
import { PermanentJobError, RetryPolicy } from './retry-policy.ts';

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

/** One message being handled: its lease, and the job's status writes. */
interface Run {
  lease: JobLease;
  /** known once the message parsed */
  tenant: string;
  jobId: string;
  /** the terminal status is stored: from here on a failure may delay usage/webhook/ack, never change the outcome */
  terminal: boolean;
  writes: Promise<void>;
  lastWrite: number;
  /** the writes of the job's aftermath, made as this run makes its own (held.stored waits for room) */
  held: HeldWrites;
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
  private readonly retry: RetryPolicy;
  private readonly aftermath: JobAftermath;
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
    this.retry = new RetryPolicy({ maxReceives: o.maxReceives, backoff: o.retryBackoff, random: o.random });
    this.aftermath = new JobAftermath({ repo: this.repo, webhookQueue: o.webhookQueue, releaseSlot: o.releaseSlot, logger: o.logger });
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
    if (this.o.deadLetterQueue) {
      const drain = new DeadLetterDrain({
        deadLetterQueue: this.o.deadLetterQueue,
        repo: this.repo,
        aftermath: this.aftermath,
        maxReceives: this.o.maxReceives,
        receiveWaitSeconds: this.o.receiveWaitSeconds,
        storageRetryMs: this.o.storageRetryMs,
        storage: this.storage,
        clock: this.o.clock,
        logger: this.o.logger,
        onFinished: () => void this.processed++,
      });
      this.loops.push(drain.run(this.stopReceiving.signal));
    }
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
        if (!run.lease.detachForShutdown()) return;
        try {
          await this.o.queue.release(run.lease.message, 0);
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
    const jobLease = new JobLease(lease, { queue: this.o.queue, visibilitySeconds: this.o.visibilitySeconds, storageRetryMs: this.o.storageRetryMs, storage: this.storage, clock: this.o.clock, logger: this.o.logger });
    const run: Run = {
      lease: jobLease,
      tenant: '',
      jobId: '',
      terminal: false,
      writes: Promise.resolve(),
      lastWrite: 0,
      held: {
        stored: (write) => jobLease.untilStored(write),
        putStatus: (status) => this.writeStatus(run, status, true),
      },
      done: Promise.resolve(),
    };
    this.runs.add(run);
    run.done = this.handle(run)
      .catch(async (err) => {
        if (err instanceof StorageFullError) {
          // a write no wait covers (a release) found no room: the job is untouched and comes
          // back when its lease ends; the full disk is logged once, not per message
          this.storage.full(err);
          if (!run.lease.detached) await this.o.queue.release(lease, Math.ceil(this.o.storageRetryMs / 1000)).catch(() => {});
          return;
        }
        this.o.logger.error('unexpected failure handling a message; releasing it', { message_id: lease.messageId, ...errorFields(err) });
        if (!run.lease.detached) await this.o.queue.release(lease, this.retry.backoffSeconds(lease.receiveCount)).catch(() => {});
      })
      .finally(() => {
        this.runs.delete(run);
        this.slotWaiters.shift()?.();
      });
  }

  // ---- one message --------------------------------------------------------------------

  private async handle(run: Run): Promise<void> {
    const lease = run.lease.message;
    const log = this.o.logger;
    let msg: QueueMessage;
    try {
      msg = parseJobMessage(lease.body);
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
      await this.aftermath.ensure(req, status, run.held);
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
    const message = lease.message;
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
    const watch = lease.watch({
      canceled: async () => (await this.repo.getCancel(tenant, req.id)) !== null,
      cancelPollMs: this.o.cancelPollMs,
      timeoutSeconds: this.o.jobTimeoutSeconds,
      // keep updated_at fresh even when no step finishes for a while (first model load)
      onExtended: () => {
        if (this.o.clock() - run.lastWrite >= (this.o.visibilitySeconds * 1000) / 2) void this.writeStatus(run, status, false);
      },
      ctx,
    });
    try {
      // the edge may have written cancel.json between our read and our `running` write
      await watch.checkCancel();
      const referenceImages = await this.referenceImages(req);
      if (lease.reason) throw new DOMException(lease.reason, 'AbortError');
      const previews =
        this.o.previewIntervalMs === null
          ? null
          : new PreviewWriter({ repo: this.repo, tenant, jobId: req.id, intervalMs: this.o.previewIntervalMs, clock: this.o.clock, logger: this.o.logger, mayWrite: () => !lease.detached && !lease.reason });
      const result = await this.o.engine.generate(spec, {
        signal: lease.controller.signal,
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
      watch.stop();
      if (lease.detached) return;
      // a cancel that arrived during the last step still wins over a result nobody wants
      if (!lease.reason && (await this.repo.getCancel(tenant, req.id))) lease.reason = 'cancel';
      if (lease.reason === 'cancel') throw new DOMException('canceled', 'AbortError');

      const outputs: StoredOutput[] = [];
      for (const o of result.outputs) {
        outputs.push(
          // computed is computed: on a full disk the images wait in memory for room, never redone
          await lease.untilStored(() =>
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
        usage: { unet_evals: result.unetEvals, images: result.outputs.filter((o) => o.kind === 'image' && o.source === 'aggregated').length, runner_ms: runMs - lease.storageWaitMs },
        timings: { queued_ms: startedAt - createdMs, run_ms: runMs, onnx_ms: round(result.timings.onnxMs), outside_onnx_ms: round(result.timings.outsideOnnxMs) },
        outputs,
      });
      this.o.logger.info('succeeded', { ...ctx, run_ms: runMs, unet_evals: result.unetEvals });
    } catch (err) {
      watch.stop();
      if (lease.detached) return; // released by shutdown or lease lost: someone else owns the job now
      if (run.terminal) {
        // the outcome is stored; what failed is the usage record, the webhook or the ack.
        // The redelivery finds the job terminal and completes exactly those steps.
        this.o.logger.error('finishing a terminal job failed; it will be completed on redelivery', { ...ctx, ...errorFields(err) });
        await this.o.queue.release(message, this.retry.backoffSeconds(message.receiveCount));
        lease.detached = true;
        return;
      }
      const finishedAt = this.o.clock();
      // canceled: however the engine stopped (an abort, or its thread terminated for ignoring it)
      if (lease.reason === 'cancel') {
        const done = latest as EngineProgress | null;
        await this.finish(run, req, {
          ...status,
          status: 'canceled',
          finished_at: iso(finishedAt),
          // billed for the steps it ran; a job canceled before its first step costs nothing
          usage: done ? { unet_evals: partialEvals(spec, done), images: 0, runner_ms: finishedAt - startedAt - lease.storageWaitMs } : null,
          timings: { ...status.timings, run_ms: finishedAt - startedAt },
        });
        this.o.logger.info('canceled while running', { ...ctx, at_step: done?.step ?? 0 });
        return;
      }
      if (err instanceof StorageFullError) {
        // untilStored() gives up only on a detached run; should a full disk surface anywhere
        // else, the job still goes back to the queue as it is, never failed for it
        this.storage.full(err);
        await this.o.queue.release(message, Math.ceil(this.o.storageRetryMs / 1000)).catch(() => {});
        lease.detached = true;
        return;
      }
      await this.failedAttempt(run, req, status, err, ctx);
    }
  }

  /** The attempt failed: the job fails (a permanent error, or the last attempt), or is released for a retry. */
  private async failedAttempt(run: Run, req: StoredRequest, status: StoredStatus, err: unknown, ctx: Record<string, unknown>): Promise<void> {
    const { lease } = run;
    const attempt = lease.message.receiveCount;
    const decision = this.retry.decide(err, attempt, lease.reason === 'timeout' ? this.o.jobTimeoutSeconds : null);
    if (!decision.retry) {
      await this.fail(run, req, status, decision.problem);
      if (decision.permanent) this.o.logger.warn('failed permanently', { ...ctx, ...errorFields(decision.cause) });
      else this.o.logger.error('failed after the last attempt', { ...ctx, ...errorFields(decision.cause) });
      return;
    }
    const delay = decision.delaySeconds;
    await this.writeStatus(
      run,
      {
        ...this.baseStatus(run, null),
        status: 'queued',
        retry: { failed_attempt: attempt, max_attempts: this.retry.maxAttempts, error: decision.error, next_attempt_at: iso(this.o.clock() + delay * 1000) },
      },
      true,
    );
    await this.o.queue.release(lease.message, delay);
    lease.detached = true;
    this.o.logger.warn('attempt failed; retrying later', { ...ctx, retry_in_seconds: delay, ...errorFields(decision.cause) });
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

  /** Terminal status, then its aftermath (slot, usage, webhook), then ack: in this order, each at most once per job. */
  private async finish(run: Run, req: StoredRequest, final: StoredStatus): Promise<void> {
    await this.writeStatus(run, final, true);
    run.terminal = true;
    await this.aftermath.ensure(req, final, run.held);
    await this.ack(run);
    this.processed++;
  }

  private baseStatus(run: Run, previous: StoredStatus | null): StoredStatus {
    const now = this.o.clock();
    return {
      v: 1,
      status: 'running',
      message_id: run.lease.messageId,
      attempt: run.lease.message.receiveCount,
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
      if (run.lease.detached) return;
      // a `must` write waits for room on a full disk; progress is dropped (the next one says more)
      await (must ? run.lease.untilStored(put) : put());
    });
    run.writes = next.catch((err) => {
      if (must) return;
      if (err instanceof StorageFullError) this.storage.full(err);
      else this.o.logger.warn('progress write failed', { message_id: run.lease.messageId, ...errorFields(err) });
    });
    return must ? next : run.writes;
  }

  private async ack(run: Run): Promise<void> {
    try {
      await run.lease.untilStored(() => this.o.queue.ack(run.lease.message));
    } catch (err) {
      if (!(err instanceof LeaseLostError)) throw err;
      // another runner holds it now; it will find the job terminal and ack without rework
      this.o.logger.warn('ack after the lease was lost', { message_id: run.lease.messageId });
    }
    run.lease.detached = true;
  }

  private async referenceImages(req: StoredRequest): Promise<(Uint8Array | null)[]> {
    return Promise.all(
      req.spec.models.map(async (m, k) => {
        const key = m.reference_image?.key;
        if (!key) return null;
        if (!key.startsWith(this.repo.uploadsPrefix(req.tenant))) throw new PermanentJobError('the reference image is not one of this tenant\'s uploads', `models[${k}].reference_image`);
        const obj = await this.o.store.get(key);
        if (!obj) throw new PermanentJobError('the reference image upload no longer exists', `models[${k}].reference_image`);
        if (obj.body.byteLength > this.o.maxReferenceImageBytes) {
          throw new PermanentJobError(`the reference image is ${obj.body.byteLength} bytes; at most ${this.o.maxReferenceImageBytes} are allowed`, `models[${k}].reference_image`);
        }
        return obj.body;
      }),
    );
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

const iso = (ms: number) => new Date(ms).toISOString();
const round = (x: number) => Math.round(x * 10) / 10;
