/**
 * What follows a job's terminal status, for every path that ends a job: the worker loop (a run
 * that finished, or a redelivered finished job), the dead-letter drain (a job whose runners
 * kept dying), and a runner that gives up starting (gpu-runner/aws/start-failure.ts fails the
 * jobs waiting in the queue). In this order, each at most once per job:
 *
 *  1. the job's slot in its tenant's active-job count is released (best effort: the admission
 *     also finds the job finished in the store);
 *  2. its usage record is written, keyed by the job id, so a job is never billed twice;
 *  3. its webhook goes into the outbox queue, and the status says so (webhook_enqueued).
 *
 * Also the one reading of a jobs-queue message, and the terminal status of a job that ends
 * without running (again), so those paths cannot drift apart.
 */
import { type Problem, QueueMessage } from '../shared/contract/index.ts';
import { TENANT_RE } from '../shared/api-keys.ts';
import { JOB_ID_RE } from '../shared/ids.ts';
import { type JobRepository, type StoredRequest, type StoredStatus, type UsageRecord, utcDay } from '../shared/job-repository.ts';
import { type Logger, errorFields } from '../shared/logger.ts';
import type { JobQueue, Lease } from '../shared/ports/queue.ts';
import { type WebhookMessage, webhookEventType } from '../webhooks/message.ts';

/** A jobs-queue message naming a well-formed job; throws saying what is wrong otherwise. */
export function parseJobMessage(body: string): QueueMessage {
  const msg = QueueMessage.parse(JSON.parse(body));
  if (!JOB_ID_RE.test(msg.job_id) || !TENANT_RE.test(msg.tenant)) throw new Error('job_id or tenant is not well-formed');
  return msg;
}

/** parseJobMessage, with null for a message that names no job. */
export function jobMessageOrNull(body: string): QueueMessage | null {
  try {
    return parseJobMessage(body);
  } catch {
    return null;
  }
}

/**
 * The terminal status of a job that ends without a run of its own (dead-lettered, or failed
 * because no runner can start): what its last run recorded (start, progress, timings) stays.
 * The caller holds the job's message `lease`, so it is the status's only writer.
 */
export function endedStatus(
  previous: StoredStatus | null,
  lease: Lease,
  finishedAt: string,
  outcome: { status: 'failed'; error: Problem } | { status: 'canceled' },
): StoredStatus {
  return {
    v: 1,
    status: outcome.status,
    message_id: lease.messageId,
    attempt: lease.receiveCount,
    started_at: previous?.started_at ?? null,
    finished_at: finishedAt,
    updated_at: finishedAt,
    progress: previous?.progress ?? null,
    usage: null,
    timings: previous?.timings ?? { queued_ms: null, run_ms: null, onnx_ms: null, outside_onnx_ms: null },
    error: outcome.status === 'failed' ? outcome.error : null,
    outputs: [],
    webhook_enqueued: false,
    retry: null,
  };
}

export interface JobAftermathOptions {
  repo: JobRepository;
  /** the webhook outbox; null: webhooks are not sent (and a job that has one is logged) */
  webhookQueue: JobQueue | null;
  /** JobAdmission.release; null: nothing to release */
  releaseSlot: ((tenant: string, jobId: string) => Promise<void>) | null;
  logger: Logger;
}

/** How the run that holds a job makes its writes (the worker loop: waiting for room on a full disk). */
export interface HeldWrites {
  stored<T>(write: () => Promise<T>): Promise<T>;
  putStatus(status: StoredStatus): Promise<void>;
}

export class JobAftermath {
  constructor(private readonly o: JobAftermathOptions) {}

  /**
   * The release of a terminal job's slot, then its usage record and its webhook if they are
   * not there yet. `held`: the writes of the run that holds the job; without it, plain writes.
   */
  async ensure(req: StoredRequest, status: StoredStatus, held?: HeldWrites): Promise<void> {
    const { repo } = this.o;
    await this.releaseSlot(req);
    const stored = <T>(write: () => Promise<T>): Promise<T> => (held ? held.stored(write) : write());
    const { usage, finished_at: finishedAt } = status;
    if (usage && finishedAt) {
      const day = utcDay(finishedAt);
      if (!(await repo.getUsage(req.tenant, day, req.id))) {
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
        await stored(() => repo.putUsage(record));
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
      if (held) await held.putStatus(marked);
      else await repo.putStatus(req.tenant, req.id, marked);
    }
  }

  /**
   * Ends a job no runner is running, whose message the caller holds (a dead letter, or a
   * waiting job when no runner can start): its terminal status, its aftermath, then `ack`.
   */
  async finish(req: StoredRequest, final: StoredStatus, ack: () => Promise<void>): Promise<void> {
    await this.o.repo.putStatus(req.tenant, req.id, final);
    await this.ensure(req, final);
    await ack();
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
}
