/**
 * One leased message of the jobs queue, from parse to ack; the loop around it (receiving,
 * concurrency, shutdown) is worker-loop.ts.
 *
 *  1. parse it; an unparseable message (or one naming no job) is poison: it is released
 *     with a delay until the queue dead-letters it. A job that is already terminal is
 *     acked without rework (its usage record and webhook are made sure of), so a
 *     redelivered finished job is never run or billed twice. A job canceled while queued
 *     never runs; a duplicate message of a job running elsewhere is dropped.
 *  2. write status `running`, then progress at most every `progressIntervalMs`;
 *  3. hold the lease while the engine runs: heartbeat, cancel polling, time limit
 *     (job-lease.ts);
 *  4. write the outputs, then the terminal status, then its aftermath: the slot, exactly one
 *     usage record (keyed by the job id), the webhook into the outbox (job-aftermath.ts);
 *  5. ack.
 * A failed attempt fails the job or goes back to the queue for a retry, as retry-policy.ts
 * decides. A cancel, a shutdown, a lost lease or a full disk is no failure of the job.
 */
import { type JobSpec, type Problem, type Progress, type QueueMessage, isTerminal } from '../shared/contract/index.ts';
import { unetEvalsPerImage } from '../shared/amdm/math.ts';
import type { JobRepository, StoredOutput, StoredRequest, StoredStatus } from '../shared/job-repository.ts';
import { type Logger, errorFields } from '../shared/logger.ts';
import { LeaseLostError, type JobQueue, type Lease } from '../shared/ports/queue.ts';
import { type ObjectStore, StorageFullError } from '../shared/ports/store.ts';
import type { StorageHealth } from '../shared/storage-health.ts';
import type { Engine, EngineProgress } from './engine/types.ts';
import { type HeldWrites, type JobAftermath, parseJobMessage } from './job-aftermath.ts';
import { JobLease } from './job-lease.ts';
import { PreviewWriter } from './preview-writer.ts';
import { PermanentJobError, type RetryPolicy } from './retry-policy.ts';

export interface JobHandlerOptions {
  queue: JobQueue;
  store: ObjectStore;
  engine: Engine;
  repo: JobRepository;
  retry: RetryPolicy;
  aftermath: JobAftermath;
  storage: StorageHealth;
  visibilitySeconds: number;
  cancelPollMs: number;
  jobTimeoutSeconds: number;
  progressIntervalMs: number;
  previewIntervalMs: number | null;
  poisonDelaySeconds: number;
  maxReferenceImageBytes: number;
  storageRetryMs: number;
  clock: () => number;
  logger: Logger;
  /** told of each job this handler brought to a terminal state */
  onFinished: () => void;
}

/** One message being handled: its lease, and the job's status writes. */
export interface Run {
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
}

export class JobHandler {
  constructor(private readonly o: JobHandlerOptions) {}

  /** A new run for a message just leased; handle() it. */
  newRun(message: Lease): Run {
    const lease = new JobLease(message, { queue: this.o.queue, visibilitySeconds: this.o.visibilitySeconds, storageRetryMs: this.o.storageRetryMs, storage: this.o.storage, clock: this.o.clock, logger: this.o.logger });
    const run: Run = {
      lease,
      tenant: '',
      jobId: '',
      terminal: false,
      writes: Promise.resolve(),
      lastWrite: 0,
      held: {
        stored: (write) => lease.untilStored(write),
        putStatus: (status) => this.writeStatus(run, status, true),
      },
    };
    return run;
  }

  /**
   * The message from parse to ack (or release). Throws only what it could not handle (the
   * loop releases the message then).
   */
  async handle(run: Run): Promise<void> {
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
    const [req, status, cancel] = await Promise.all([this.o.repo.getRequest(tenant, jobId), this.o.repo.getStatus(tenant, jobId), this.o.repo.getCancel(tenant, jobId)]);
    if (!req) {
      log.error('poison message: its job does not exist; leaving it to the dead-letter queue', ctx);
      await this.o.queue.release(lease, this.o.poisonDelaySeconds);
      return;
    }

    if (status && isTerminal(status.status)) {
      log.info('redelivered a finished job; acking without rework', { ...ctx, status: status.status });
      await this.o.aftermath.ensure(req, status, run.held);
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
      canceled: async () => (await this.o.repo.getCancel(tenant, req.id)) !== null,
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
          : new PreviewWriter({ repo: this.o.repo, tenant, jobId: req.id, intervalMs: this.o.previewIntervalMs, clock: this.o.clock, logger: this.o.logger, mayWrite: () => !lease.detached && !lease.reason });
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
      if (!lease.reason && (await this.o.repo.getCancel(tenant, req.id))) lease.reason = 'cancel';
      if (lease.reason === 'cancel') throw new DOMException('canceled', 'AbortError');

      const outputs: StoredOutput[] = [];
      for (const o of result.outputs) {
        outputs.push(
          // computed is computed: on a full disk the images wait in memory for room, never redone
          await lease.untilStored(() =>
            this.o.repo.putOutput(
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
      watch.stop();
      if (lease.detached) return; // released by shutdown or lease lost: someone else owns the job now
      if (run.terminal) {
        // the outcome is stored; what failed is the usage record, the webhook or the ack.
        // The redelivery finds the job terminal and completes exactly those steps.
        this.o.logger.error('finishing a terminal job failed; it will be completed on redelivery', { ...ctx, ...errorFields(err) });
        await this.o.queue.release(message, this.o.retry.backoffSeconds(message.receiveCount));
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
        this.o.storage.full(err);
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
    const decision = this.o.retry.decide(err, attempt, lease.reason === 'timeout' ? this.o.jobTimeoutSeconds : null);
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
        retry: { failed_attempt: attempt, max_attempts: this.o.retry.maxAttempts, error: decision.error, next_attempt_at: iso(this.o.clock() + delay * 1000) },
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
    await this.o.aftermath.ensure(req, final, run.held);
    await this.ack(run);
    this.o.onFinished();
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
    const put = () => this.o.repo.putStatus(run.tenant, run.jobId, { ...status, updated_at: iso(this.o.clock()) });
    const next = run.writes.then(async () => {
      if (run.lease.detached) return;
      // a `must` write waits for room on a full disk; progress is dropped (the next one says more)
      await (must ? run.lease.untilStored(put) : put());
    });
    run.writes = next.catch((err) => {
      if (must) return;
      if (err instanceof StorageFullError) this.o.storage.full(err);
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
        if (!key.startsWith(this.o.repo.uploadsPrefix(req.tenant))) throw new PermanentJobError('the reference image is not one of this tenant\'s uploads', `models[${k}].reference_image`);
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
