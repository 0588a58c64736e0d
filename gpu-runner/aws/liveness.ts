/**
 * A liveness file for the container health check (gpu-runner/aws/healthcheck.mjs).
 *
 * The runner's composition root starts it next to the worker loop: a timer on the main thread
 * rewrites the file every few seconds, and the health check calls the container unhealthy
 * when the file grows older than its limit. The sampler runs in worker threads, so a long
 * UNet step does not stop the beat; a wedged event loop (the case worth detecting) does.
 */
import { rm, writeFile } from 'node:fs/promises';

export const DEFAULT_LIVENESS_FILE = '/tmp/amdm-runner.alive';
export const DEFAULT_INTERVAL_MS = 10_000;

export interface LivenessOptions {
  path?: string;
  intervalMs?: number;
  log?: (line: string) => void;
}

export class LivenessFile {
  readonly path: string;
  private readonly intervalMs: number;
  private readonly log: (line: string) => void;
  private timer: NodeJS.Timeout | null = null;
  private failing = false;

  constructor(opts: LivenessOptions = {}) {
    this.path = opts.path ?? DEFAULT_LIVENESS_FILE;
    this.intervalMs = opts.intervalMs ?? DEFAULT_INTERVAL_MS;
    this.log = opts.log ?? (() => {});
    if (!Number.isInteger(this.intervalMs) || this.intervalMs < 10) {
      throw new RangeError(`LivenessFile: intervalMs=${opts.intervalMs}; allowed: a whole number of milliseconds >= 10`);
    }
  }

  /** Writes the file now and then on every interval. Starting twice is refused. */
  async start(): Promise<void> {
    if (this.timer !== null) throw new Error('LivenessFile: already started');
    await this.beat();
    this.timer = setInterval(() => void this.beat(), this.intervalMs);
    // The beat must never be what keeps a draining runner alive.
    this.timer.unref();
  }

  /** Stops beating and removes the file, so a stopped runner reads as unhealthy at once. */
  async stop(): Promise<void> {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    await rm(this.path, { force: true });
  }

  async beat(): Promise<void> {
    try {
      await writeFile(this.path, `${new Date().toISOString()}\n`);
      if (this.failing) this.log(`liveness: writing ${this.path} works again`);
      this.failing = false;
    } catch (error) {
      // Logged once per outage: the health check will report it; no need to flood the log.
      if (!this.failing) this.log(`liveness: cannot write ${this.path}: ${(error as Error).message}`);
      this.failing = true;
    }
  }
}
