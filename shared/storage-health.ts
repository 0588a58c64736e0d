/**
 * What a process knows about its storage being full, for /healthz and for the log. The
 * embedded adapters report every write refused for lack of room and every write that succeeds
 * again (they take it as their StorageObserver); the edge and the runner report the
 * StorageFullErrors they catch as well, so a store that reports nothing itself is covered too.
 *
 * Each storage (a directory, a database file: StorageFullError.where) is logged once when it
 * fills and once when it has room again, however many writes fail in between: a runner retrying
 * every few seconds must not fill the log of a machine whose disk is already full. A storage
 * counts as having room again only when a write to that same storage succeeds, so a database
 * that still has room does not hide a full blob directory on another disk.
 */
import type { Logger } from './logger.ts';
import type { StorageFullError, StorageObserver } from './ports/store.ts';

export type HealthReport =
  | { status: 'ok' }
  | {
      status: 'degraded';
      /** e.g. "store full: no space left on the device (ENOSPC)" */
      reason: string;
      /** when the first storage that is still full filled up */
      since: string;
    };

/** The part of a logger this needs. */
export type HealthLogger = Pick<Logger, 'error' | 'info'>;

interface FullStorage {
  err: StorageFullError;
  since: number;
}

export class StorageHealth implements StorageObserver {
  private readonly fullNow = new Map<string, FullStorage>();
  private readonly logger: HealthLogger;
  private readonly now: () => number;

  constructor(opts: { logger: HealthLogger; now?: () => number }) {
    if (typeof opts?.logger?.error !== 'function' || typeof opts.logger.info !== 'function') {
      throw new TypeError('StorageHealth: option "logger" must have error(msg, fields) and info(msg, fields) methods');
    }
    this.logger = opts.logger;
    this.now = opts.now ?? Date.now;
  }

  /** Whether some storage is full now. */
  get isFull(): boolean {
    return this.fullNow.size > 0;
  }

  full(err: StorageFullError): void {
    if (this.fullNow.has(err.where)) return;
    this.fullNow.set(err.where, { err, since: this.now() });
    this.logger.error('storage full: writes there are refused (the API answers 507) until space is freed; jobs wait for it, none is failed or lost', {
      where: err.where,
      code: err.code,
      reason: err.reason,
    });
  }

  room(where: string): void {
    // every successful write of the embedded adapters lands here: nothing to do while all is well
    if (this.fullNow.size === 0) return;
    const entry = this.fullNow.get(where);
    if (!entry) return;
    this.fullNow.delete(where);
    this.logger.info('storage has room again; writes resume', { where, code: entry.err.code, full_for_ms: this.now() - entry.since });
  }

  report(): HealthReport {
    if (this.fullNow.size === 0) return { status: 'ok' };
    const entries = [...this.fullNow.values()];
    // the same cause in two places (the blobs and the database on one disk) is named once
    const causes = [...new Set(entries.map((e) => `${e.err.reason} (${e.err.code})`))];
    return {
      status: 'degraded',
      reason: `store full: ${causes.join('; ')}`,
      since: new Date(Math.min(...entries.map((e) => e.since))).toISOString(),
    };
  }
}
