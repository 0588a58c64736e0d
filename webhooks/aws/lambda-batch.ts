/**
 * Webhook delivery for one Lambda invocation: a batch of WebhookQueue messages, handed over by
 * the SQS event source mapping, delivered by the same WebhookDispatcher the single-node runner
 * runs (retry schedule, attempt records, signatures, SSRF guard), unchanged.
 *
 * The seam is the JobQueue port: the dispatcher leases from a queue, acks what is done and
 * releases what must be retried later. LambdaBatchQueue is that queue over the batch:
 * - `receive` hands out the batch's records as leases (the mapping has already received them;
 *   the receipt handles are real), then waits until the dispatcher stops;
 * - `ack` deletes the message from SQS at once, so a later failure of the invocation cannot
 *   bring a delivered webhook back;
 * - `release(lease, delay)` is the backoff: ChangeMessageVisibility to `delay` on SQS, and the
 *   record is reported in `batchItemFailures`, so the mapping leaves it for that long instead
 *   of deleting it. (Partial batch responses must be on: infra/webhooks.ts.)
 * A record whose handling has not finished shortly before the function's deadline is
 * reported as failed too: it comes back after the queue's visibility timeout.
 */
import { type JobQueue, type Lease, type QueueStats, type ReceiveOptions } from '../../shared/ports/queue.ts';
import type { Logger } from '../../shared/logger.ts';
import { WebhookDispatcher, type WebhookDispatcherOptions } from '../dispatcher.ts';

/** The fields of an SQS event record that delivery needs (aws-lambda's SQSRecord). */
export interface SqsRecord {
  messageId: string;
  receiptHandle: string;
  body: string;
  attributes: { ApproximateReceiveCount: string };
}

export interface SqsEvent {
  Records: SqsRecord[];
}

/** The partial batch response (ReportBatchItemFailures). */
export interface BatchResponse {
  batchItemFailures: { itemIdentifier: string }[];
}

type Outcome = 'done' | 'retry';

export class LambdaBatchQueue implements JobQueue {
  private readonly pending: Lease[];
  private readonly outcomes = new Map<string, Outcome>();
  private readonly ids: string[];
  private allSettled!: () => void;
  readonly settled: Promise<void>;

  /** `queue` is the WebhookQueue itself (an SqsQueue), for deleting and re-timing messages. */
  constructor(
    records: readonly SqsRecord[],
    private readonly queue: Pick<JobQueue, 'ack' | 'release' | 'extend'>,
  ) {
    this.pending = records.map((r) => {
      const receiveCount = Number(r.attributes?.ApproximateReceiveCount);
      if (!r.messageId || !r.receiptHandle || typeof r.body !== 'string' || !Number.isInteger(receiveCount) || receiveCount < 1) {
        throw new TypeError(`not an SQS event record: messageId=${String(r.messageId)}, ApproximateReceiveCount=${String(r.attributes?.ApproximateReceiveCount)}`);
      }
      return { messageId: r.messageId, body: r.body, receiveCount, handle: r.receiptHandle };
    });
    this.ids = this.pending.map((l) => l.messageId);
    this.settled = new Promise((resolve) => (this.allSettled = resolve));
    this.check();
  }

  async receive(opts: ReceiveOptions): Promise<Lease[]> {
    const max = opts.max ?? 1;
    if (this.pending.length > 0) return this.pending.splice(0, max);
    // the batch is all there is: wait for the dispatcher to stop
    if (opts.signal?.aborted) return [];
    await new Promise<void>((resolve) => opts.signal?.addEventListener('abort', () => resolve(), { once: true }));
    return [];
  }

  async ack(lease: Lease): Promise<void> {
    await this.queue.ack(lease);
    this.settle(lease, 'done');
  }

  async release(lease: Lease, delaySeconds?: number): Promise<void> {
    // reported as failed whatever SQS says: if the new visibility did not take, the message
    // still comes back, after the queue's own visibility timeout
    this.settle(lease, 'retry');
    await this.queue.release(lease, delaySeconds);
  }

  extend(lease: Lease, visibilitySeconds: number): Promise<void> {
    return this.queue.extend(lease, visibilitySeconds);
  }

  async send(): Promise<string> {
    throw new Error('LambdaBatchQueue: send is not available on a Lambda batch (enqueue on the WebhookQueue itself)');
  }

  async stats(): Promise<QueueStats> {
    throw new Error('LambdaBatchQueue: stats are not available on a Lambda batch');
  }

  async close(): Promise<void> {}

  /** Every record not known to be done: retried by SQS. */
  failures(): BatchResponse {
    return { batchItemFailures: this.ids.filter((id) => this.outcomes.get(id) !== 'done').map((itemIdentifier) => ({ itemIdentifier })) };
  }

  private settle(lease: Lease, outcome: Outcome): void {
    // a retry decided once stays a retry (a failed ack after it must not turn it into done)
    if (this.outcomes.get(lease.messageId) !== 'retry') this.outcomes.set(lease.messageId, outcome);
    this.check();
  }

  private check(): void {
    if (this.ids.every((id) => this.outcomes.has(id))) this.allSettled();
  }
}

export interface DeliverBatchOptions {
  records: readonly SqsRecord[];
  /** the WebhookQueue (an SqsQueue over its URL) */
  queue: Pick<JobQueue, 'ack' | 'release' | 'extend'>;
  /** the dispatcher's options, without a queue: it gets the batch */
  dispatcher: Omit<WebhookDispatcherOptions, 'queue'>;
  /** stop waiting for unfinished records this many ms from now (before the function's timeout) */
  budgetMs: number;
  logger: Logger;
}

export async function deliverWebhookBatch(o: DeliverBatchOptions): Promise<BatchResponse> {
  if (o.records.length === 0) return { batchItemFailures: [] };
  const batch = new LambdaBatchQueue(o.records, o.queue);
  // one delivery per record at once: the batch is small and each waits on a remote server
  const dispatcher = new WebhookDispatcher({ concurrency: Math.min(64, o.records.length), ...o.dispatcher, queue: batch });
  dispatcher.start();
  let timer: NodeJS.Timeout | undefined;
  const outOfTime = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), Math.max(0, o.budgetMs))));
  const finished = await Promise.race([batch.settled.then(() => 'settled' as const), outOfTime]);
  clearTimeout(timer);
  const closing = dispatcher.close().catch((err) => o.logger.error('webhook dispatcher stopped with errors', { error: (err as Error).message }));
  if (finished === 'timeout') {
    // deliveries still running are left behind (each is bounded by the dispatcher's own
    // timeout); the invocation must answer before Lambda's deadline
    o.logger.warn('webhook batch out of time; unfinished records go back to the queue', { failed: batch.failures().batchItemFailures.map((f) => f.itemIdentifier) });
  } else {
    await closing;
  }
  return batch.failures();
}
