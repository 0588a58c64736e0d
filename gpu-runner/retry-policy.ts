/**
 * What a failed attempt at a job leads to. Errors steer the flow: a job that can never run as
 * specified (EngineInputError from the engine, PermanentJobError from the runner) fails at
 * once with a 422 problem naming the field; anything else is retried with exponential backoff
 * and jitter, and the delivery that reaches `maxReceives` (the jobs queue's redrive threshold)
 * fails the job with the reason. Cancels, shutdowns and a full disk never get here: they are no
 * failure of the job (worker-loop.ts).
 */
import type { Problem } from '../shared/contract/index.ts';
import { EngineInputError } from './engine/types.ts';

/** A job that can never run as specified: fail it now, do not retry. */
export class PermanentJobError extends Error {
  override name = 'PermanentJobError';
  constructor(
    message: string,
    readonly field?: string,
  ) {
    super(message);
  }
}

export interface RetryBackoff {
  baseSeconds: number;
  maxSeconds: number;
}

export interface RetryPolicyOptions {
  /** the delivery with this receive count is the last try */
  maxReceives: number;
  /** delay = min(max, base * 2^(attempt-1)), with jitter */
  backoff: RetryBackoff;
  /** uniform in [0, 1): jitter */
  random: () => number;
}

export type RetryDecision =
  /** fail the job with `problem`: `permanent` when no attempt could succeed, else the last attempt failed */
  | { retry: false; permanent: boolean; problem: Problem; cause: unknown }
  /** release the message for another attempt after `delaySeconds`; `error` is what the job's status tells */
  | { retry: true; delaySeconds: number; error: string; cause: unknown };

export class RetryPolicy {
  constructor(private readonly o: RetryPolicyOptions) {}

  get maxAttempts(): number {
    return this.o.maxReceives;
  }

  /**
   * The decision after attempt `attempt` failed with `err`. `timeoutSeconds`: the attempt was
   * aborted for running too long, which is what its status should say (the engine's abort
   * error says nothing); null when it was not.
   */
  decide(err: unknown, attempt: number, timeoutSeconds: number | null): RetryDecision {
    if (err instanceof EngineInputError || err instanceof PermanentJobError) {
      return {
        retry: false,
        permanent: true,
        cause: err,
        problem: {
          type: 'urn:amdm:problem:invalid-job',
          title: 'The job cannot run as specified',
          status: 422,
          detail: cleanMessage(err.message),
          ...(err.field ? { errors: [{ field: err.field, message: cleanMessage(err.message) }] } : {}),
        },
      };
    }
    const cause = timeoutSeconds !== null ? new Error(`the job ran longer than ${timeoutSeconds} s`) : err;
    const message = cleanMessage((cause as Error)?.message ?? String(cause));
    if (attempt >= this.o.maxReceives) {
      return {
        retry: false,
        permanent: false,
        cause,
        problem: {
          type: 'urn:amdm:problem:job-failed',
          title: 'The job failed',
          status: 500,
          detail: `gave up after ${attempt} attempts; the last one failed with: ${message}`,
        },
      };
    }
    return { retry: true, delaySeconds: this.backoffSeconds(attempt), error: message, cause };
  }

  /** Seconds before the next attempt after attempt `attempt` failed. */
  backoffSeconds(attempt: number): number {
    const { baseSeconds, maxSeconds } = this.o.backoff;
    const cap = Math.min(maxSeconds, baseSeconds * 2 ** Math.max(0, attempt - 1));
    // "equal jitter": at least half the delay, so retries never bunch at zero
    return Math.min(43_200, Math.ceil(cap / 2 + (this.o.random() * cap) / 2));
  }
}

/** Error text for clients: one line, no file system paths, bounded. */
export function cleanMessage(message: string): string {
  return message
    .split('\n')[0]!
    .replace(/(?:file:\/\/)?(?:\/[\w.@-]+){2,}/g, '<path>')
    .slice(0, 300);
}
