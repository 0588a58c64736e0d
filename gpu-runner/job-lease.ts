/**
 * The lease a runner holds on one job's queue message, for as long as it runs the job:
 *
 * - the heartbeat extends it every half visibility timeout (the sampler runs in another
 *   thread, so this timer fires even while onnxruntime blocks);
 * - cancel.json is polled, and the engine aborted between steps when it appears; so it is
 *   when the job runs past its time limit;
 * - a write that finds the storage full is tried again every `storageRetryMs`, with the lease
 *   kept alive meanwhile (untilStored): computed work waits for room, never redone;
 * - a lost lease (another runner holds the message now) detaches the job: nothing more is
 *   written for it. So does a release at shutdown.
 */
import { type Logger, errorFields } from '../shared/logger.ts';
import { LeaseLostError, type JobQueue, type Lease } from '../shared/ports/queue.ts';
import { StorageFullError } from '../shared/ports/store.ts';
import { sleep } from '../shared/sleep.ts';
import type { StorageHealth } from '../shared/storage-health.ts';

export type AbortReason = 'cancel' | 'shutdown' | 'timeout';

export interface JobLeaseOptions {
  queue: JobQueue;
  visibilitySeconds: number;
  /** how often a write that found the storage full is tried again */
  storageRetryMs: number;
  storage: StorageHealth;
  clock: () => number;
  logger: Logger;
}

export class JobLease {
  /** aborts the engine's run: a cancel, a shutdown, the time limit, or a lost lease */
  readonly controller = new AbortController();
  /** why the run was aborted, if it was (a lost lease is not a reason: it detaches) */
  reason: AbortReason | null = null;
  /** the lease is gone (lost, or released by shutdown): this run must not write anymore */
  detached = false;
  /** when the lease was last taken or extended */
  lastExtend: number;
  /** aborted when the run is detached by shutdown or a lost lease: ends a wait for storage */
  readonly stopWaiting = new AbortController();
  /** time spent waiting for a full disk: not the tenant's to pay (usage.runner_ms leaves it out) */
  storageWaitMs = 0;

  constructor(
    /** the queue's lease of the job's message */
    readonly message: Lease,
    private readonly o: JobLeaseOptions,
  ) {
    this.lastExtend = o.clock();
  }

  get messageId(): string {
    return this.message.messageId;
  }

  /** Aborts the run for `reason`; the first reason stays. */
  abort(reason: AbortReason): void {
    if (this.reason) return;
    this.reason = reason;
    this.controller.abort(reason);
  }

  /**
   * Shutdown takes the job back (the caller releases the message): the run is aborted and
   * writes nothing more. False when it was already detached.
   */
  detachForShutdown(): boolean {
    if (this.detached) return false;
    this.detached = true;
    this.reason = 'shutdown';
    this.controller.abort('shutdown');
    this.stopWaiting.abort();
    return true;
  }

  /**
   * While the job runs: the heartbeat (then `onExtended`, after each extension that worked),
   * the cancel poll (`canceled`), and the time limit. `checkCancel` polls once more at once;
   * `stop` ends all three.
   */
  watch(opts: {
    canceled: () => Promise<boolean>;
    cancelPollMs: number;
    timeoutSeconds: number;
    onExtended: () => void;
    /** log fields of the job */
    ctx: Record<string, unknown>;
  }): { checkCancel: () => Promise<void>; stop: () => void } {
    const heartbeat = setInterval(() => void this.beat(opts.onExtended), (this.o.visibilitySeconds * 1000) / 2);
    let polling = false;
    const checkCancel = async () => {
      if (polling || this.reason) return;
      polling = true;
      try {
        if (await opts.canceled()) this.abort('cancel');
      } catch (err) {
        this.o.logger.warn('cancel check failed; will retry', { ...opts.ctx, ...errorFields(err) });
      } finally {
        polling = false;
      }
    };
    const cancelTimer = setInterval(() => void checkCancel(), opts.cancelPollMs);
    const deadline = setTimeout(() => this.abort('timeout'), opts.timeoutSeconds * 1000);
    return {
      checkCancel,
      stop: () => {
        clearInterval(heartbeat);
        clearInterval(cancelTimer);
        clearTimeout(deadline);
      },
    };
  }

  /**
   * One write of the job this lease holds. While the storage is full, the job is kept: the
   * write is tried again every storageRetryMs with the lease kept alive, and no attempt is
   * used up. Only a detached run (shutdown released it, or its lease was lost) stops waiting,
   * with the error.
   */
  async untilStored<T>(write: () => Promise<T>): Promise<T> {
    let fullAt: string | null = null;
    for (;;) {
      try {
        const result = await write();
        // adapters that watch their storage say so themselves; this covers those that do not
        if (fullAt !== null) this.o.storage.room(fullAt);
        return result;
      } catch (err) {
        if (!(err instanceof StorageFullError)) throw err;
        this.o.storage.full(err);
        fullAt = err.where;
        if (this.detached) throw err;
        const waitFrom = this.o.clock();
        await sleep(this.o.storageRetryMs, this.stopWaiting.signal);
        await this.keepAlive();
        this.storageWaitMs += this.o.clock() - waitFrom;
        if (this.detached) throw err;
      }
    }
  }

  private async beat(onExtended: () => void): Promise<void> {
    if (this.detached) return;
    if (await this.extend('lease lost; abandoning the job to its new holder', 'lease extension failed; will retry at the next beat')) onExtended();
  }

  /** Extends the lease of a run waiting for storage, at the heartbeat's pace. */
  private async keepAlive(): Promise<void> {
    if (this.detached || this.o.clock() - this.lastExtend < (this.o.visibilitySeconds * 1000) / 2) return;
    await this.extend('lease lost while waiting for storage; abandoning the job to its new holder', 'lease extension failed; will retry');
  }

  /** True when the lease was extended. */
  private async extend(lostMessage: string, failedMessage: string): Promise<boolean> {
    try {
      await this.o.queue.extend(this.message, this.o.visibilitySeconds);
      this.lastExtend = this.o.clock();
      return true;
    } catch (err) {
      if (err instanceof LeaseLostError) {
        // another runner has the job now: stop, and write nothing more
        this.o.logger.error(lostMessage, { message_id: this.messageId });
        this.detached = true;
        this.controller.abort('lease lost');
        this.stopWaiting.abort();
        return false;
      }
      // the queue on a full disk cannot extend either: the lease outlives its timeout, and the
      // message is still ours until another receiver leases it (which the same disk stops)
      if (err instanceof StorageFullError) this.o.storage.full(err);
      else this.o.logger.warn(failedMessage, { message_id: this.messageId, ...errorFields(err) });
      return false;
    }
  }
}
