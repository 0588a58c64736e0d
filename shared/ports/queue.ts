/**
 * The job queue port: at-least-once delivery with leases (SQS semantics).
 *
 * Contract (checked by test/conformance/queue.case.ts against every adapter):
 * - `receive` long-polls up to `waitSeconds` and leases each message for
 *   `visibilitySeconds`; a leased message is invisible to other receivers until the lease
 *   ends, is acked, or is released.
 * - `receiveCount` counts deliveries, including this one.
 * - With a dead-letter queue configured, a message that was received `maxReceives` times
 *   and comes up again is moved there instead of being delivered (SQS redrive policy).
 * - `extend` sets the remaining lease to `visibilitySeconds` from now; `release` makes the
 *   message visible again after `delaySeconds` (0 = now); `ack` deletes it. Using a lease
 *   after it was acked, or after another receiver leased the message, throws LeaseLostError.
 * - `close()` is idempotent.
 * - A call that must write (`send`, a `receive` that leases, `extend`, `ack`, `release`) and
 *   finds the storage full rejects with StorageFullError (store.ts) and changes nothing: the
 *   message and its lease stay as they were. Only the embedded SQLite queue can be full.
 */
import type { CommitLog } from './store.ts';

export interface Lease {
  readonly messageId: string;
  readonly body: string;
  readonly receiveCount: number;
  /** adapter-specific handle (SQS receipt handle, SQLite lease token) */
  readonly handle: string;
}

export interface ReceiveOptions {
  max?: number;
  waitSeconds?: number;
  visibilitySeconds: number;
  signal?: AbortSignal;
}

export interface QueueStats {
  /** ready to be received */
  visible: number;
  /** leased (in flight) */
  inFlight: number;
  /** sent with a delay that has not passed */
  delayed: number;
}

export interface JobQueue {
  send(body: string, opts?: { delaySeconds?: number }): Promise<string>;
  receive(opts: ReceiveOptions): Promise<Lease[]>;
  extend(lease: Lease, visibilitySeconds: number): Promise<void>;
  ack(lease: Lease): Promise<void>;
  release(lease: Lease, delaySeconds?: number): Promise<void>;
  stats(): Promise<QueueStats>;
  close(): Promise<void>;
  /** The transactional log `send` joins, when the adapter has one (see ObjectStore.commitLog). */
  commitLog?(): CommitLog | undefined;
}

export class LeaseLostError extends Error {
  constructor(messageId: string) {
    super(`lease on message ${messageId} was lost (acked, expired and re-leased, or unknown)`);
    this.name = 'LeaseLostError';
  }
}
