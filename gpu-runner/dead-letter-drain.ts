/**
 * The jobs queue's dead letters: messages the queue moved aside after `maxReceives`
 * deliveries without an ack, because the runner died during every attempt (a crash, a kill,
 * an instance gone) and so never failed the job itself. Each one's job is marked failed, with
 * its aftermath (slot, webhook: job-aftermath.ts), and the dead letter acked. A dead letter
 * that names no job is parked in the queue for an operator, out of the way for 12 h.
 */
import type { JobRepository } from '../shared/job-repository.ts';
import { isTerminal } from '../shared/contract/index.ts';
import { type Logger, errorFields } from '../shared/logger.ts';
import type { JobQueue, Lease } from '../shared/ports/queue.ts';
import { StorageFullError } from '../shared/ports/store.ts';
import { sleep } from '../shared/sleep.ts';
import type { StorageHealth } from '../shared/storage-health.ts';
import { type JobAftermath, endedStatus, jobMessageOrNull } from './job-aftermath.ts';

export interface DeadLetterDrainOptions {
  deadLetterQueue: JobQueue;
  repo: JobRepository;
  aftermath: JobAftermath;
  /** the jobs queue's redrive threshold, for the reason the job's status gives */
  maxReceives: number;
  receiveWaitSeconds: number;
  /** how often a receive that found the storage full is tried again */
  storageRetryMs: number;
  storage: StorageHealth;
  clock: () => number;
  logger: Logger;
  /** told of each job this drain marked failed */
  onFinished: () => void;
}

export class DeadLetterDrain {
  constructor(private readonly o: DeadLetterDrainOptions) {}

  /** Drains until `signal` aborts. */
  async run(signal: AbortSignal): Promise<void> {
    const dlq = this.o.deadLetterQueue;
    let failures = 0;
    while (!signal.aborted) {
      let leases: Lease[];
      try {
        leases = await dlq.receive({ max: 10, waitSeconds: this.o.receiveWaitSeconds, visibilitySeconds: 60, signal });
        failures = 0;
      } catch (err) {
        if (signal.aborted) break;
        if (err instanceof StorageFullError) {
          this.o.storage.full(err);
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
          await this.handle(lease);
        } catch (err) {
          if (err instanceof StorageFullError) this.o.storage.full(err);
          else this.o.logger.error('handling a dead letter failed; it comes back later', { message_id: lease.messageId, ...errorFields(err) });
          await dlq.release(lease, 60).catch(() => {});
        }
      }
    }
  }

  private async handle(lease: Lease): Promise<void> {
    const { repo, aftermath } = this.o;
    const dlq = this.o.deadLetterQueue;
    const msg = jobMessageOrNull(lease.body);
    const req = msg ? await repo.getRequest(msg.tenant, msg.job_id) : null;
    if (!msg || !req) {
      // nothing to fail: keep it parked in the DLQ for an operator, out of the way for 12 h
      this.o.logger.error('dead letter that names no job; parked', { message_id: lease.messageId, body: lease.body.slice(0, 200) });
      await dlq.release(lease, 43_200);
      return;
    }
    const status = await repo.getStatus(msg.tenant, msg.job_id);
    if (status && isTerminal(status.status)) {
      await aftermath.ensure(req, status);
      await dlq.ack(lease);
      return;
    }
    // The message is in the DLQ, so no runner holds the job: this drain is its only writer.
    const final = endedStatus(status, lease, new Date(this.o.clock()).toISOString(), {
      status: 'failed',
      error: {
        type: 'urn:amdm:problem:dead-lettered',
        title: 'The job failed',
        status: 500,
        detail: `dead-lettered after ${Math.max(lease.receiveCount - 1, this.o.maxReceives)} deliveries: every attempt ended without a result (the runner stopped or crashed while running it)`,
      },
    });
    await aftermath.finish(req, final, () => dlq.ack(lease));
    this.o.onFinished();
    this.o.logger.error('dead-lettered job marked failed', { job_id: msg.job_id, tenant: msg.tenant, message_id: lease.messageId });
  }
}
