/**
 * The phases of `npm start`, each logged with its duration, under a watchdog: a start that
 * has not finished within the timeout logs the phase it is stuck in and exits 1, instead of
 * leaving a process that never serves and says nothing.
 *
 * The clock runs in its own thread (start-watchdog-thread.mjs), so it also fires when the
 * main thread's event loop is blocked (a synchronous wait on a lock, a write to a full pipe,
 * a busy loop): a timer on the main thread would never run then. The thread writes its line
 * to stderr itself and asks the main thread to exit 1; a main thread that does not answer
 * within the grace period is blocked, and the thread kills the process.
 */
import { Worker } from 'node:worker_threads';
import type { Logger } from '../shared/logger.ts';

const THREAD = new URL('./start-watchdog-thread.mjs', import.meta.url);

export interface StartWatchdogOptions {
  /** the whole start must finish within this; 0: no watchdog (phases are still logged) */
  timeoutSeconds: number;
  /** the start's logger; the watchdog's own lines carry its component, "start" */
  logger: Logger;
}

/** How long a main thread that is alive gets to exit after the timeout; one that is blocked never does. */
const GRACE_MS = 3000;

export interface StartPhases {
  /** Runs one phase; logs `phase done` with its duration (and `fields` of its value), or lets its error through. */
  run<T>(phase: string, fn: () => T | Promise<T>, fields?: (value: T) => Record<string, unknown>): Promise<T>;
  /** The start is complete: logs the total and stops the watchdog. */
  done(fields?: Record<string, unknown>): void;
}

export function startWatchdog(o: StartWatchdogOptions): StartPhases {
  if (!Number.isInteger(o.timeoutSeconds) || o.timeoutSeconds < 0) {
    throw new RangeError(`startWatchdog: timeoutSeconds must be a non-negative integer (got ${String(o.timeoutSeconds)})`);
  }
  const t0 = Date.now();
  let thread: Worker | null = null;
  if (o.timeoutSeconds > 0) {
    thread = new Worker(THREAD, {
      name: 'amdm-start-watchdog',
      // plain Node: no TypeScript loader, and no preload of the main thread runs in here
      execArgv: [],
      workerData: { timeoutMs: o.timeoutSeconds * 1000, graceMs: GRACE_MS, component: 'start' },
    });
    thread.on('message', (m: { timedOut?: boolean }) => {
      // the thread has written which phase hung; a main thread that is alive exits with 1
      if (m.timedOut) process.exit(1);
    });
    thread.on('error', (err) => o.logger.warn('the start-up watchdog failed; the start goes on unwatched', { error: err.message }));
    // the watchdog never keeps the process alive by itself
    thread.unref();
  }
  return {
    async run(phase, fn, fields) {
      thread?.postMessage({ phase });
      const t = Date.now();
      const value = await fn();
      o.logger.info('phase done', { phase, ms: Date.now() - t, ...fields?.(value) });
      return value;
    },
    done(fields = {}) {
      if (thread) void thread.terminate();
      thread = null;
      o.logger.info('started', { ms: Date.now() - t0, ...fields });
    },
  };
}
