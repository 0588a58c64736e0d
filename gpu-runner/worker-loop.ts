/**
 * The runner's loop: long-poll the jobs queue, hand each message to the job handler (at most
 * `concurrency` at once), drain the dead-letter queue beside it, and stop cleanly. The store
 * and the queue stay truthful whatever happens (crash, cancel, shutdown, bad input).
 *
 * One job each:
 *  - job-handler.ts: one message from parse to ack (its run on the engine, status, outputs);
 *  - job-lease.ts: the message's lease while the job runs (heartbeat, cancel polling, time
 *    limit, waits for a full disk);
 *  - retry-policy.ts: a failed attempt fails the job or is retried with backoff and jitter;
 *  - job-aftermath.ts: what follows a terminal status (slot, usage record, webhook);
 *  - dead-letter-drain.ts: jobs whose runners died during every attempt are failed.
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
import { JobRepository } from '../shared/job-repository.ts';
import type { JobQueue, Lease } from '../shared/ports/queue.ts';
import { type ObjectStore, StorageFullError } from '../shared/ports/store.ts';
import { type HealthReport, StorageHealth } from '../shared/storage-health.ts';
import { type Logger, errorFields, jsonLogger } from '../shared/logger.ts';
import { sleep } from '../shared/sleep.ts';
import type { Engine } from './engine/types.ts';
import { DeadLetterDrain } from './dead-letter-drain.ts';
import { JobAftermath } from './job-aftermath.ts';
import { JobHandler, type Run } from './job-handler.ts';
import { RetryPolicy } from './retry-policy.ts';

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
  private readonly handler: JobHandler;
  /** the messages being handled, each with the promise of its end */
  private readonly runs = new Map<Run, Promise<void>>();
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
    this.handler = new JobHandler({
      queue: o.queue,
      store: o.store,
      engine: o.engine,
      repo: this.repo,
      retry: this.retry,
      aftermath: this.aftermath,
      storage: this.storage,
      visibilitySeconds: o.visibilitySeconds,
      cancelPollMs: o.cancelPollMs,
      jobTimeoutSeconds: o.jobTimeoutSeconds,
      progressIntervalMs: o.progressIntervalMs,
      previewIntervalMs: o.previewIntervalMs,
      poisonDelaySeconds: o.poisonDelaySeconds,
      maxReferenceImageBytes: o.maxReferenceImageBytes,
      storageRetryMs: o.storageRetryMs,
      clock: o.clock,
      logger: o.logger,
      onFinished: () => void this.processed++,
    });
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
        Promise.all(this.runs.values()).then(() => true),
        sleep(this.o.gracePeriodSeconds * 1000).then(() => false),
      ]);
      if (!drained) await this.releaseAll();
    });
    if (errors.length > 0) throw new AggregateError(errors, 'WorkerLoop.close() finished with errors');
  }

  /** Give every running job back to the queue now. We MUST release: a kept lease delays the job by a whole visibility timeout. */
  private async releaseAll(): Promise<void> {
    await Promise.all(
      [...this.runs.keys()].map(async (run) => {
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
    const run = this.handler.newRun(lease);
    const done = this.handler
      .handle(run)
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
    this.runs.set(run, done);
  }
}
