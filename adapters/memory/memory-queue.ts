/**
 * The JobQueue port in process memory, for fast tests of the runner, the edge and the webhook
 * dispatcher. Same semantics as the SQLite and SQS queues (test/conformance/queue.case.ts):
 * leases with visibility timeouts, receive counts, long polling, delays and a dead-letter
 * queue. Nothing survives the process.
 */
import { LeaseLostError, type JobQueue, type Lease, type QueueStats, type ReceiveOptions } from '../../shared/ports/queue.ts';
import {
  checkBody,
  checkExtendSeconds,
  checkLease,
  checkMaxReceives,
  checkReceiveOptions,
  checkReleaseDelay,
  checkSendDelay,
} from '../queue-rules.ts';

export interface MemoryQueueOptions {
  /**
   * A message received `maxReceives` times that comes up again moves to `queue` instead of
   * being delivered (the SQS redrive policy).
   */
  deadLetter?: { queue: MemoryQueue; maxReceives: number };
}

interface Message {
  id: string;
  seq: number;
  body: string;
  visibleAt: number;
  receiveCount: number;
  /** token of the latest lease; null when never received or released */
  leaseToken: string | null;
}

export class MemoryQueue implements JobQueue {
  private readonly messages = new Map<string, Message>();
  private readonly waiters = new Set<() => void>();
  private readonly deadLetter: { queue: MemoryQueue; maxReceives: number } | undefined;
  private seq = 0;
  private closed = false;

  constructor(opts: MemoryQueueOptions = {}) {
    if (opts.deadLetter !== undefined) {
      if (!(opts.deadLetter.queue instanceof MemoryQueue) || opts.deadLetter.queue === this) {
        throw new TypeError('MemoryQueue: deadLetter.queue must be another MemoryQueue');
      }
      this.deadLetter = {
        queue: opts.deadLetter.queue,
        maxReceives: checkMaxReceives('MemoryQueue', opts.deadLetter.maxReceives),
      };
    }
  }

  async send(body: string, opts?: { delaySeconds?: number }): Promise<string> {
    this.checkOpen();
    checkBody(body);
    const delaySeconds = checkSendDelay(opts?.delaySeconds);
    const id = crypto.randomUUID();
    this.enqueue({ id, seq: 0, body, visibleAt: Date.now() + delaySeconds * 1000, receiveCount: 0, leaseToken: null });
    return id;
  }

  async receive(opts: ReceiveOptions): Promise<Lease[]> {
    this.checkOpen();
    const { max, waitSeconds, visibilitySeconds, signal } = checkReceiveOptions(opts);
    const deadline = Date.now() + waitSeconds * 1000;
    for (;;) {
      if (signal?.aborted || this.closed) return [];
      const leases = this.take(max, visibilitySeconds);
      if (leases.length > 0) return leases;
      const now = Date.now();
      if (now >= deadline) return [];
      await this.waitForChange(Math.min(deadline, this.nextVisibleAt(now)), signal);
    }
  }

  async extend(lease: Lease, visibilitySeconds: number): Promise<void> {
    this.checkOpen();
    checkLease('extend', lease);
    const seconds = checkExtendSeconds(visibilitySeconds);
    const message = this.leased(lease);
    message.visibleAt = Date.now() + seconds * 1000;
    // a waiter may have planned to wake when the old lease ran out
    this.notify();
  }

  async ack(lease: Lease): Promise<void> {
    this.checkOpen();
    checkLease('ack', lease);
    this.leased(lease);
    this.messages.delete(lease.messageId);
  }

  async release(lease: Lease, delaySeconds?: number): Promise<void> {
    this.checkOpen();
    checkLease('release', lease);
    const delay = checkReleaseDelay(delaySeconds);
    const message = this.leased(lease);
    message.visibleAt = Date.now() + delay * 1000;
    message.leaseToken = null;
    this.notify();
  }

  async stats(): Promise<QueueStats> {
    this.checkOpen();
    const now = Date.now();
    const stats: QueueStats = { visible: 0, inFlight: 0, delayed: 0 };
    for (const m of this.messages.values()) {
      if (m.visibleAt <= now) stats.visible++;
      else if (m.leaseToken !== null) stats.inFlight++;
      else stats.delayed++;
    }
    return stats;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.notify();
  }

  private enqueue(message: Message): void {
    message.seq = ++this.seq;
    this.messages.set(message.id, message);
    this.notify();
  }

  /**
   * The lease's message if the lease is still the latest one. A lease that ran out but was not
   * re-leased by anyone is still honoured: nobody else works on the message, so acking or
   * extending it is safe (SQS behaves the same until another receive happens).
   */
  private leased(lease: Lease): Message {
    const message = this.messages.get(lease.messageId);
    if (!message || message.leaseToken !== lease.handle) throw new LeaseLostError(lease.messageId);
    return message;
  }

  private take(max: number, visibilitySeconds: number): Lease[] {
    const now = Date.now();
    const ready = [...this.messages.values()]
      .filter((m) => m.visibleAt <= now)
      .sort((a, b) => a.visibleAt - b.visibleAt || a.seq - b.seq);
    const leases: Lease[] = [];
    for (const message of ready) {
      if (leases.length === max) break;
      if (this.deadLetter && message.receiveCount >= this.deadLetter.maxReceives) {
        // the receive count travels with the message, as on SQS
        this.messages.delete(message.id);
        message.leaseToken = null;
        message.visibleAt = now;
        this.deadLetter.queue.enqueue(message);
        continue;
      }
      message.receiveCount++;
      message.leaseToken = crypto.randomUUID();
      message.visibleAt = now + visibilitySeconds * 1000;
      leases.push({ messageId: message.id, body: message.body, receiveCount: message.receiveCount, handle: message.leaseToken });
    }
    // other waiters must re-plan around the new lease expiries
    if (leases.length > 0) this.notify();
    return leases;
  }

  private nextVisibleAt(now: number): number {
    let next = Infinity;
    for (const m of this.messages.values()) if (m.visibleAt > now && m.visibleAt < next) next = m.visibleAt;
    return next;
  }

  private waitForChange(wakeAt: number, signal: AbortSignal | undefined): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.waiters.delete(done);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, Math.max(0, wakeAt - Date.now()));
      this.waiters.add(done);
      signal?.addEventListener('abort', done, { once: true });
    });
  }

  private notify(): void {
    for (const wake of [...this.waiters]) wake();
  }

  private checkOpen(): void {
    if (this.closed) throw new Error('MemoryQueue is closed');
  }
}
