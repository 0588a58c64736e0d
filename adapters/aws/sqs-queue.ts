/**
 * The JobQueue port on Amazon SQS (or any endpoint speaking its JSON protocol).
 *
 * The composition root builds the SQSClient and passes the queue URL; this adapter never reads
 * the environment. The dead-letter queue is a property of the SQS queue (its RedrivePolicy,
 * set by infra), not of this adapter. Standard queues only: nothing here sends the
 * MessageGroupId a FIFO queue requires.
 *
 * Where SQS differs from the embedded queues (each checked or flagged in
 * test/conformance/queue.case.ts):
 * - DeleteMessage with a stale receipt handle succeeds without deleting anything (AWS
 *   documents this), so `ack` cannot report a lost lease; `extend` and `release` can, because
 *   ChangeMessageVisibility refuses handles whose message is not in flight under them.
 * - A message released with a delay stays "not visible" to SQS, so `stats` counts it in
 *   `inFlight`, where the embedded queues count it as `delayed`.
 * - The server may go on serving a long poll whose client went away, leasing messages to
 *   nobody (fauxqs does; SQS gives no guarantee either way). So an aborted `receive` returns
 *   at once but leaves its request running, and whatever that request still leases is
 *   released straight back (visibility 0). `close()` does cut requests off; a message leased
 *   to one in that instant stays invisible until its visibility timeout.
 */
import {
  ChangeMessageVisibilityCommand,
  DeleteMessageCommand,
  GetQueueAttributesCommand,
  ReceiveMessageCommand,
  SendMessageCommand,
  type Message,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import { LeaseLostError, type JobQueue, type Lease, type QueueStats, type ReceiveOptions } from '../../shared/ports/queue.ts';
import {
  checkBody,
  checkExtendSeconds,
  checkLease,
  checkReceiveOptions,
  checkReleaseDelay,
  checkSendDelay,
} from '../queue-rules.ts';

export interface SqsQueueOptions {
  client: SQSClient;
  queueUrl: string;
}

/** SQS holds a ReceiveMessage open for at most 20 s. */
const MAX_WAIT_PER_REQUEST = 20;

/** The errors by which SQS (and compatible endpoints) say a receipt handle no longer holds the message. */
function isLostLease(err: unknown): boolean {
  const e = err as { name?: unknown; Code?: unknown; message?: unknown } | null;
  const name = typeof e?.name === 'string' ? e.name : '';
  const code = typeof e?.Code === 'string' ? e.Code : '';
  if (['ReceiptHandleIsInvalid', 'MessageNotInflight'].includes(name)) return true;
  if (/\.(ReceiptHandleIsInvalid|MessageNotInflight)$/.test(code)) return true;
  // "Value ... for parameter ReceiptHandle is invalid. Reason: The receipt handle has expired."
  return name === 'InvalidParameterValue' && typeof e?.message === 'string' && /receipt ?handle/i.test(e.message);
}

const ABORTED = Symbol('aborted');

/** The promise's outcome, or ABORTED as soon as the signal fires (the promise keeps running). */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T | typeof ABORTED> {
  if (!signal) return promise;
  return new Promise((resolve, reject) => {
    const onAbort = (): void => resolve(ABORTED);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

function isAbort(err: unknown): boolean {
  return (err as { name?: unknown } | null)?.name === 'AbortError';
}

export class SqsQueue implements JobQueue {
  private readonly client: SQSClient;
  private readonly queueUrl: string;
  /** cuts off every request in progress when the queue closes */
  private readonly closing = new AbortController();
  /** abandoned long polls, each releasing what it still receives */
  private readonly abandoned = new Set<Promise<void>>();

  constructor(opts: SqsQueueOptions) {
    if (typeof opts !== 'object' || opts === null || typeof opts.client?.send !== 'function') {
      throw new TypeError('SqsQueue: options must include client, an SQSClient');
    }
    if (typeof opts.queueUrl !== 'string' || !/^https?:\/\//.test(opts.queueUrl)) {
      throw new RangeError(`SqsQueue: queueUrl must be the queue's http(s) URL; got ${JSON.stringify(opts.queueUrl)}`);
    }
    this.client = opts.client;
    this.queueUrl = opts.queueUrl;
  }

  async send(body: string, opts?: { delaySeconds?: number }): Promise<string> {
    this.checkOpen();
    checkBody(body);
    const delaySeconds = checkSendDelay(opts?.delaySeconds);
    // always explicit: an omitted delay means none, as on the embedded queues, whatever the
    // queue's default DelaySeconds
    const out = await this.client.send(
      new SendMessageCommand({ QueueUrl: this.queueUrl, MessageBody: body, DelaySeconds: delaySeconds }),
    );
    if (!out.MessageId) throw new Error(`SQS SendMessage to ${this.queueUrl} returned no MessageId`);
    return out.MessageId;
  }

  async receive(opts: ReceiveOptions): Promise<Lease[]> {
    this.checkOpen();
    const { max, waitSeconds, visibilitySeconds, signal } = checkReceiveOptions(opts);
    const deadline = Date.now() + waitSeconds * 1000;
    for (let first = true; ; first = false) {
      if (signal?.aborted || this.closing.signal.aborted) return [];
      const wait = Math.min(MAX_WAIT_PER_REQUEST, Math.round((deadline - Date.now()) / 1000));
      if (!first && wait <= 0) return [];
      const request = this.client.send(
        new ReceiveMessageCommand({
          QueueUrl: this.queueUrl,
          MaxNumberOfMessages: max,
          VisibilityTimeout: visibilitySeconds,
          WaitTimeSeconds: Math.max(0, wait),
          // the current name of AttributeNames for message system attributes
          MessageSystemAttributeNames: ['ApproximateReceiveCount'],
        }),
        { abortSignal: this.closing.signal },
      );
      let messages: Message[] | undefined;
      try {
        const outcome = await untilAborted(request, signal);
        if (outcome === ABORTED) {
          this.releaseWhenAnswered(request);
          return [];
        }
        messages = outcome.Messages;
      } catch (err) {
        if (this.closing.signal.aborted || isAbort(err)) return [];
        throw err;
      }
      if (messages && messages.length > 0) return messages.map((m) => this.toLease(m));
    }
  }

  async extend(lease: Lease, visibilitySeconds: number): Promise<void> {
    this.checkOpen();
    checkLease('extend', lease);
    await this.changeVisibility(lease, checkExtendSeconds(visibilitySeconds));
  }

  /** SQS cannot report a stale handle here: DeleteMessage then succeeds and deletes nothing. */
  async ack(lease: Lease): Promise<void> {
    this.checkOpen();
    checkLease('ack', lease);
    try {
      await this.client.send(new DeleteMessageCommand({ QueueUrl: this.queueUrl, ReceiptHandle: lease.handle }));
    } catch (err) {
      if (isLostLease(err)) throw new LeaseLostError(lease.messageId);
      throw err;
    }
  }

  async release(lease: Lease, delaySeconds?: number): Promise<void> {
    this.checkOpen();
    checkLease('release', lease);
    await this.changeVisibility(lease, checkReleaseDelay(delaySeconds));
  }

  async stats(): Promise<QueueStats> {
    this.checkOpen();
    const out = await this.client.send(
      new GetQueueAttributesCommand({
        QueueUrl: this.queueUrl,
        AttributeNames: [
          'ApproximateNumberOfMessages',
          'ApproximateNumberOfMessagesNotVisible',
          'ApproximateNumberOfMessagesDelayed',
        ],
      }),
    );
    const read = (name: string): number => {
      const value = Number(out.Attributes?.[name as keyof typeof out.Attributes]);
      if (!Number.isInteger(value) || value < 0) {
        throw new Error(`SQS GetQueueAttributes for ${this.queueUrl} returned ${name}=${String(value)}`);
      }
      return value;
    };
    return {
      visible: read('ApproximateNumberOfMessages'),
      inFlight: read('ApproximateNumberOfMessagesNotVisible'),
      delayed: read('ApproximateNumberOfMessagesDelayed'),
    };
  }

  /**
   * The SQSClient belongs to the caller, who destroys it after this resolves. Closing cuts off
   * this queue's requests and waits for the releases of abandoned polls to finish.
   */
  async close(): Promise<void> {
    if (!this.closing.signal.aborted) this.closing.abort();
    await Promise.allSettled([...this.abandoned]);
  }

  /** Hands back, at once, whatever an abandoned long poll still receives. */
  private releaseWhenAnswered(request: Promise<{ Messages?: Message[] }>): void {
    const task = request
      .then(
        async (out) => {
          await Promise.allSettled(
            (out.Messages ?? []).map((m) =>
              this.client.send(
                new ChangeMessageVisibilityCommand({ QueueUrl: this.queueUrl, ReceiptHandle: m.ReceiptHandle, VisibilityTimeout: 0 }),
              ),
            ),
          );
        },
        () => undefined,
      )
      .finally(() => this.abandoned.delete(task));
    this.abandoned.add(task);
  }

  private async changeVisibility(lease: Lease, seconds: number): Promise<void> {
    try {
      await this.client.send(
        new ChangeMessageVisibilityCommand({
          QueueUrl: this.queueUrl,
          ReceiptHandle: lease.handle,
          VisibilityTimeout: seconds,
        }),
      );
    } catch (err) {
      if (isLostLease(err)) throw new LeaseLostError(lease.messageId);
      throw err;
    }
  }

  private toLease(m: Message): Lease {
    const receiveCount = Number(m.Attributes?.ApproximateReceiveCount);
    if (!m.MessageId || !m.ReceiptHandle || m.Body === undefined || !Number.isInteger(receiveCount) || receiveCount < 1) {
      throw new Error(
        `SQS ReceiveMessage from ${this.queueUrl} returned an incomplete message (MessageId=${String(m.MessageId)}, ` +
          `ApproximateReceiveCount=${String(m.Attributes?.ApproximateReceiveCount)})`,
      );
    }
    return { messageId: m.MessageId, body: m.Body, receiveCount, handle: m.ReceiptHandle };
  }

  private checkOpen(): void {
    if (this.closing.signal.aborted) throw new Error(`SqsQueue for ${this.queueUrl} is closed`);
  }
}
