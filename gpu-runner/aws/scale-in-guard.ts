/**
 * Keeps ECS task scale-in protection on exactly while the runner holds a job.
 *
 * The worker loop knows nothing about ECS; what it does with the jobs queue says everything:
 * a lease from `receive` means a job is held, and `ack`, `release`, or a lost lease on
 * `extend` means it is not anymore. So the guard wraps the jobs queue (a JobQueue decorator)
 * and turns protection on before `receive` hands the first lease to the loop, renews it while
 * leases are held, and clears it once none has been held for `idleClearMs`.
 *
 * Why each choice:
 * - Protection is requested before the leases are handed over, so the window in which
 *   scale-in could pick this task with a job already taken is the one agent call, not a job.
 *   A failed call is logged and retried on the next tick; the job still runs, because the
 *   SIGTERM drain (worker-loop close) hands a job back if ECS stops the task anyway.
 * - A held lease also ends when its visibility deadline passes without an extension: then
 *   the queue has given the message to someone else, whatever this process believes, and a
 *   stale entry must not pin the task forever.
 * - ECS caps protection at 48 h and a crashed runner cannot clear it, so it is requested for
 *   `expiresInMinutes` and renewed every `renewEveryMs` while a job is held.
 * - `idleClearMs` keeps back-to-back jobs from flapping the protection (each change is an ECS
 *   API call through the agent).
 */
import { LeaseLostError, type JobQueue, type Lease, type ReceiveOptions } from '../../shared/ports/queue.ts';
import type { ProtectionState } from './task-protection.ts';

export interface Protection {
  readonly enabled: boolean;
  protect(expiresInMinutes?: number): Promise<ProtectionState | null>;
  clear(): Promise<ProtectionState | null>;
}

export interface ScaleInGuardOptions {
  protection: Protection;
  expiresInMinutes?: number;
  renewEveryMs?: number;
  idleClearMs?: number;
  /** how often held leases are checked for expiry and protection renewed or cleared */
  tickMs?: number;
  clock?: () => number;
  log: (level: 'info' | 'warn', msg: string, fields?: Record<string, unknown>) => void;
}

export class ScaleInGuard {
  private readonly o: Required<Omit<ScaleInGuardOptions, 'protection' | 'log'>>;
  private readonly protection: Protection;
  private readonly log: ScaleInGuardOptions['log'];
  /** lease handle -> visibility deadline (ms) */
  private readonly held = new Map<string, number>();
  /** when protection was last confirmed on; null: off (or not known to be on) */
  private protectedAt: number | null = null;
  /**
   * A protect call was made and no clear has succeeded since: protection may be on even when
   * the call failed (a timeout after the agent acted), so idleness must clear it.
   */
  private mayBeOn = false;
  private idleSince: number;
  private timer: NodeJS.Timeout | null = null;
  private failing = false;
  private busy: Promise<void> = Promise.resolve();
  private closed = false;

  constructor(options: ScaleInGuardOptions) {
    this.o = { expiresInMinutes: 60, renewEveryMs: 20 * 60_000, idleClearMs: 5_000, tickMs: 1_000, clock: Date.now, ...options };
    const { expiresInMinutes, renewEveryMs, idleClearMs, tickMs } = this.o;
    if (!Number.isInteger(expiresInMinutes) || expiresInMinutes < 1 || expiresInMinutes > 2880) {
      throw new RangeError(`ScaleInGuard: expiresInMinutes=${expiresInMinutes}; allowed: 1..2880 (ECS's limits)`);
    }
    if (!(renewEveryMs > 0) || renewEveryMs >= expiresInMinutes * 60_000) {
      throw new RangeError(`ScaleInGuard: renewEveryMs=${renewEveryMs} must be > 0 and shorter than the ${expiresInMinutes} min expiry`);
    }
    if (!(idleClearMs >= 0) || !(tickMs >= 10)) throw new RangeError(`ScaleInGuard: idleClearMs=${idleClearMs} (>= 0) and tickMs=${tickMs} (>= 10)`);
    this.protection = options.protection;
    this.log = options.log;
    this.idleSince = this.o.clock();
  }

  /** Jobs held right now, as the guard counts them. */
  get holding(): number {
    return this.held.size;
  }

  /** True while protection is on, as far as the agent has confirmed. */
  get isProtected(): boolean {
    return this.protectedAt !== null;
  }

  /** The jobs queue with protection following its leases; the queue itself when there is no ECS agent. */
  wrap(queue: JobQueue): JobQueue {
    if (!this.protection.enabled) return queue;
    this.timer ??= setInterval(() => void this.tick(), this.o.tickMs);
    // never what keeps a drained runner alive
    this.timer.unref();
    const guard = this;
    const drop = (lease: Lease) => {
      if (guard.held.delete(lease.handle) && guard.held.size === 0) guard.idleSince = guard.o.clock();
    };
    const settle = async <T>(lease: Lease, call: () => Promise<T>): Promise<T> => {
      try {
        const out = await call();
        drop(lease);
        return out;
      } catch (err) {
        // a lost lease is gone too; any other failure leaves it to its visibility deadline
        if (err instanceof LeaseLostError) drop(lease);
        throw err;
      }
    };
    return {
      async receive(opts: ReceiveOptions) {
        const leases = await queue.receive(opts);
        if (leases.length > 0) {
          const until = guard.o.clock() + opts.visibilitySeconds * 1000;
          for (const lease of leases) guard.held.set(lease.handle, until);
          await guard.sync();
        }
        return leases;
      },
      async extend(lease, visibilitySeconds) {
        try {
          await queue.extend(lease, visibilitySeconds);
        } catch (err) {
          if (err instanceof LeaseLostError) drop(lease);
          throw err;
        }
        // still held, with a new deadline
        guard.held.set(lease.handle, guard.o.clock() + visibilitySeconds * 1000);
      },
      ack: (lease) => settle(lease, () => queue.ack(lease)),
      release: (lease, delaySeconds) => settle(lease, () => queue.release(lease, delaySeconds)),
      send: (body, opts) => queue.send(body, opts),
      stats: () => queue.stats(),
      close: () => queue.close(),
    };
  }

  /** Stops the timer and clears protection if it is on. Idempotent; never throws. */
  async close(): Promise<void> {
    if (this.closed) return this.busy;
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.held.clear();
    this.busy = this.busy.then(async () => {
      if (this.mayBeOn) await this.apply('clear');
    });
    return this.busy;
  }

  private tick(): void {
    const now = this.o.clock();
    for (const [handle, until] of this.held) {
      if (until <= now) {
        this.held.delete(handle);
        this.log('warn', 'task protection: a job lease passed its deadline without being settled; counting it as gone', {});
        if (this.held.size === 0) this.idleSince = now;
      }
    }
    void this.sync();
  }

  /** One decision at a time, in order: protect, renew, clear, or nothing. */
  private sync(): Promise<void> {
    this.busy = this.busy.then(async () => {
      if (this.closed) return;
      const now = this.o.clock();
      if (this.held.size > 0) {
        if (this.protectedAt === null || now - this.protectedAt >= this.o.renewEveryMs) await this.apply('protect');
      } else if (this.mayBeOn && now - this.idleSince >= this.o.idleClearMs) {
        await this.apply('clear');
      }
    });
    return this.busy;
  }

  private async apply(action: 'protect' | 'clear'): Promise<void> {
    try {
      if (action === 'protect') {
        this.mayBeOn = true;
        const state = await this.protection.protect(this.o.expiresInMinutes);
        const renewal = this.protectedAt !== null;
        this.protectedAt = this.o.clock();
        if (!renewal) this.log('info', 'task protection on', { expires_at: state?.expirationDate ?? null, jobs: this.held.size });
      } else {
        await this.protection.clear();
        this.protectedAt = null;
        this.mayBeOn = false;
        this.log('info', 'task protection off', {});
      }
      if (this.failing) this.log('info', 'task protection: the agent answers again', {});
      this.failing = false;
    } catch (err) {
      // once per outage; the next tick retries
      if (!this.failing) this.log('warn', `task protection: ${action} failed; retrying`, { error: (err as Error).message });
      this.failing = true;
    }
  }
}
