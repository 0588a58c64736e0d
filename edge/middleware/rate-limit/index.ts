/**
 * Limits answered with 429 + Retry-After:
 * - `rateLimit`: a token bucket per subject (steady rate plus a burst): per tenant on every
 *   authenticated request, or per client address (edge/app.ts);
 * - `concurrencyCap`: a ceiling on a tenant's jobs that are not terminal yet, on job
 *   creation only, so one tenant cannot fill the queue for everyone. This middleware only
 *   turns a flood away before its bodies are read; the create itself admits the job in one
 *   atomic step with its writes (JobAdmission.admit, answered with the same problem).
 *
 * The limiter is a port (shared/ports/rate-limit.ts). The token buckets here live in memory:
 * with several edge instances each would enforce its own share, so the AWS edge brings one
 * shared by all of them (adapters/aws/dynamo-rate-limiter.ts); the single node keeps these.
 */
import type { MiddlewareHandler } from 'hono';
import type { RateDecision, RateLimiter } from '../../../shared/ports/rate-limit.ts';
import { ProblemError } from '../problem/index.ts';

export type { RateDecision, RateLimiter };

export interface TokenBucketOptions {
  /** tokens added per second */
  ratePerSecond: number;
  /** bucket size: the burst a quiet tenant may spend at once */
  burst: number;
  now?: () => number;
  /** buckets kept at most (the least recently used are dropped: they are full anyway after a pause) */
  maxSubjects?: number;
}

export class TokenBucketLimiter implements RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  private readonly now: () => number;
  private readonly maxSubjects: number;

  constructor(private readonly opts: TokenBucketOptions) {
    if (!(opts?.ratePerSecond > 0) || !Number.isFinite(opts.ratePerSecond)) throw new TypeError(`TokenBucketLimiter: option "ratePerSecond" must be a positive number (got ${opts?.ratePerSecond})`);
    if (!(opts.burst >= 1) || !Number.isFinite(opts.burst)) throw new TypeError(`TokenBucketLimiter: option "burst" must be a number >= 1 (got ${opts.burst})`);
    this.now = opts.now ?? Date.now;
    this.maxSubjects = opts.maxSubjects ?? 100_000;
  }

  take(subject: string, cost = 1): RateDecision {
    const t = this.now();
    const { ratePerSecond: rate, burst } = this.opts;
    let b = this.buckets.get(subject);
    if (b) {
      this.buckets.delete(subject); // re-inserted below: the map stays in recency order
      b.tokens = Math.min(burst, b.tokens + ((t - b.at) / 1000) * rate);
      b.at = t;
    } else {
      b = { tokens: burst, at: t };
      if (this.buckets.size >= this.maxSubjects) this.buckets.delete(this.buckets.keys().next().value!);
    }
    this.buckets.set(subject, b);
    if (b.tokens >= cost) {
      b.tokens -= cost;
      return { ok: true };
    }
    return { ok: false, retryAfterSeconds: Math.max(1, Math.ceil((cost - b.tokens) / rate)) };
  }
}

export interface RateLimitOptions {
  limiter: RateLimiter;
  /** who pays; by default the authenticated tenant (run after auth) */
  subject?: (c: Parameters<MiddlewareHandler>[0]) => string | undefined;
}

export function rateLimit(options: RateLimitOptions): MiddlewareHandler {
  if (!options || typeof options.limiter?.take !== 'function') throw new TypeError('rateLimit: option "limiter" must have a take(subject, cost) method');
  const subject = options.subject ?? ((c) => c.get('tenant' as never) as string | undefined);
  return async function rateLimit(c, next) {
    const who = subject(c);
    if (who !== undefined) {
      const r = await options.limiter.take(who);
      if (!r.ok) throw rateLimited(r.retryAfterSeconds, 'request rate limit reached');
    }
    await next();
  };
}

/** The answer to a request over a rate limit: `what` was reached. */
export function rateLimited(retryAfterSeconds: number, what: string): ProblemError {
  return new ProblemError(429, {
    type: 'rate-limited',
    title: 'Too many requests',
    detail: `${what}; retry in ${retryAfterSeconds} s`,
    headers: { 'retry-after': String(retryAfterSeconds) },
  });
}

export interface ConcurrencyCapOptions {
  /** the admission port's cheap look (JobAdmission.hasRoom) */
  active: { hasRoom(tenant: string, cap: number): Promise<boolean> };
  /** most non-terminal jobs per tenant */
  max: number;
  /** the Retry-After hint when at the cap (jobs take seconds to minutes) */
  retryAfterSeconds?: number;
}

export const CAP_RETRY_AFTER_SECONDS = 5;

/** The answer to a create while the tenant has `max` jobs queued or running. */
export function tooManyActiveJobs(max: number, retryAfterSeconds = CAP_RETRY_AFTER_SECONDS): ProblemError {
  return new ProblemError(429, {
    type: 'too-many-active-jobs',
    title: 'Too many active jobs',
    detail: `at most ${max} jobs may be queued or running at once; wait for one to finish or cancel one`,
    headers: { 'retry-after': String(retryAfterSeconds) },
  });
}

export function concurrencyCap(options: ConcurrencyCapOptions): MiddlewareHandler {
  if (!options || typeof options.active?.hasRoom !== 'function') throw new TypeError('concurrencyCap: option "active" must have a hasRoom(tenant, cap) method');
  if (!Number.isSafeInteger(options.max) || options.max < 1) throw new TypeError(`concurrencyCap: option "max" must be a positive integer (got ${options.max})`);
  const retryAfter = options.retryAfterSeconds ?? CAP_RETRY_AFTER_SECONDS;
  if (!Number.isSafeInteger(retryAfter) || retryAfter < 1) throw new TypeError(`concurrencyCap: option "retryAfterSeconds" must be a positive integer (got ${options.retryAfterSeconds})`);
  return async function concurrencyCap(c, next) {
    const tenant = c.get('tenant' as never) as string | undefined;
    if (tenant !== undefined && !(await options.active.hasRoom(tenant, options.max))) throw tooManyActiveJobs(options.max, retryAfter);
    await next();
  };
}
