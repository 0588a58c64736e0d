/**
 * The rate-limit port: how many requests a subject (a tenant, a client address) may make.
 *
 * Contract (checked by test/conformance/rate-limit.case.ts against every adapter):
 * - `take(subject, cost)` spends `cost` (default 1) of the subject's allowance and answers
 *   `{ ok: true }`, or refuses with `retryAfterSeconds` (a whole number >= 1) after which a
 *   request of that cost can pass again. Subjects never share an allowance.
 * - A fresh subject may spend `burst` at once; over any long time T a subject passes at most
 *   rate x T + 2 x burst and, while it keeps asking, at least rate x T - burst.
 * - An adapter shared by several edge instances enforces the limit for all of them together:
 *   n parallel takes of a fresh subject across instances pass exactly `burst`.
 * - The answer may be immediate (in-memory buckets) or a promise (a round trip to a shared
 *   store); callers await it either way.
 *
 * Adapters: token buckets in the edge's memory (edge/middleware/rate-limit/index.ts, per
 * instance: the single node's), and fixed windows in DynamoDB (adapters/aws/dynamo-rate-limiter.ts,
 * shared by every Lambda instance).
 */
export type RateDecision = { ok: true } | { ok: false; retryAfterSeconds: number };

export interface RateLimiter {
  /** takes `cost` from `subject`'s allowance; when refused, how long until enough is back */
  take(subject: string, cost?: number): RateDecision | Promise<RateDecision>;
}
