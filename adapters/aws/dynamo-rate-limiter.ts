/**
 * The rate-limit port (shared/ports/rate-limit.ts) in DynamoDB: one limit per subject for all
 * edge instances together, where in-memory buckets would give each Lambda instance its own.
 *
 * Fixed windows: the item `rate#{subject}#{window}` (counters-table.ts) counts a subject's
 * requests in window number floor(now / windowSeconds), and a request is one UpdateItem that
 * adds its cost only while the count stays within the limit (`n <= limit - cost`). DynamoDB
 * applies writes to one item one at a time, so the limit is exact across instances.
 *
 * Why fixed windows and not a token bucket or GCRA: each of those needs the stored state and
 * the clock combined with a max() or min(), which an update expression cannot compute, so
 * they take a read and a conditional write (two round trips, and retries under contention).
 * A fixed window is one UpdateItem per request, whatever happens. Its known cost is the edge
 * of a window: a subject may pass `limit` at the end of one window and `limit` again at the
 * start of the next, so 2 x limit at most in any span of one window; over a long time T it
 * passes at most limit x (T / window + 1). With limit = burst and window = burst / rate, that
 * is the same average rate and burst as the in-memory token bucket.
 *
 * Costs: one write request unit per request (the item stays far below 1 KB), refused or not.
 * Once a subject is refused in a window, this instance refuses it without asking DynamoDB
 * until the window ends: the count only grows within a window, so the answer cannot change,
 * and a flood at the limit costs nothing more. Items expire through the table's TTL an hour
 * after their window.
 *
 * DynamoDB failing (throttled, unreachable) lets the request through and logs it: a limiter
 * that could not count must not take the API down with it, and the active-job cap
 * (dynamo-admission.ts) still guards what costs GPU time.
 */
import { ConditionalCheckFailedException, UpdateItemCommand, type DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { RateDecision, RateLimiter } from '../../shared/ports/rate-limit.ts';
import { COUNTERS_KEY, COUNTERS_TTL_ATTRIBUTE, rateWindowKey } from './counters-table.ts';

export interface DynamoRateLimiterOptions {
  client: DynamoDBClient;
  /** the counters table (counters-table.ts) */
  table: string;
  /** requests a subject may make per window */
  limit: number;
  windowSeconds: number;
  now?: () => number;
  /** told of each request let through because DynamoDB could not count it */
  onError?: (err: unknown, subject: string) => void;
  /** subjects remembered as refused until their window ends (the least recent are dropped) */
  maxRefusedSubjects?: number;
}

/** Items outlive their window by this much before the TTL may delete them (TTL deletion is lazy anyway). */
const EXPIRY_AFTER_WINDOW_SECONDS = 3600;

export class DynamoRateLimiter implements RateLimiter {
  private readonly client: DynamoDBClient;
  private readonly table: string;
  private readonly limit: number;
  private readonly windowMs: number;
  private readonly now: () => number;
  private readonly onError: (err: unknown, subject: string) => void;
  private readonly maxRefused: number;
  /** subject -> the end (ms) of the window in which it was refused */
  private readonly refusedUntil = new Map<string, number>();

  constructor(opts: DynamoRateLimiterOptions) {
    if (typeof opts !== 'object' || opts === null) throw new TypeError('DynamoRateLimiter: options are required');
    if (typeof opts.client?.send !== 'function') throw new TypeError('DynamoRateLimiter: option "client" must be a DynamoDBClient');
    if (typeof opts.table !== 'string' || !/^[A-Za-z0-9_.-]{3,255}$/.test(opts.table)) {
      throw new TypeError(`DynamoRateLimiter: option "table" must be a DynamoDB table name (3 to 255 of A-Z a-z 0-9 _ . -); got ${JSON.stringify(opts.table)}`);
    }
    if (!Number.isSafeInteger(opts.limit) || opts.limit < 1) throw new RangeError(`DynamoRateLimiter: option "limit" must be a positive integer; got ${String(opts.limit)}`);
    if (!Number.isSafeInteger(opts.windowSeconds) || opts.windowSeconds < 1 || opts.windowSeconds > 86_400) {
      throw new RangeError(`DynamoRateLimiter: option "windowSeconds" must be an integer from 1 to 86400; got ${String(opts.windowSeconds)}`);
    }
    this.client = opts.client;
    this.table = opts.table;
    this.limit = opts.limit;
    this.windowMs = opts.windowSeconds * 1000;
    this.now = opts.now ?? Date.now;
    this.onError = opts.onError ?? ((err, subject) => console.warn(JSON.stringify({ level: 'warn', msg: 'rate limit not counted: DynamoDB failed; request let through', subject, error: (err as Error)?.message ?? String(err) })));
    this.maxRefused = opts.maxRefusedSubjects ?? 100_000;
  }

  async take(subject: string, cost = 1): Promise<RateDecision> {
    if (typeof subject !== 'string' || subject === '' || subject.length > 512) {
      throw new TypeError(`DynamoRateLimiter.take: subject must be a string of 1 to 512 characters; got ${JSON.stringify(String(subject).slice(0, 40))}`);
    }
    if (!Number.isSafeInteger(cost) || cost < 1) throw new RangeError(`DynamoRateLimiter.take: cost must be a positive integer; got ${String(cost)}`);
    const now = this.now();
    const window = Math.floor(now / this.windowMs);
    const windowEnd = (window + 1) * this.windowMs;
    const refused: RateDecision = { ok: false, retryAfterSeconds: Math.max(1, Math.ceil((windowEnd - now) / 1000)) };
    if ((this.refusedUntil.get(subject) ?? -Infinity) > now) return refused;
    // more than a whole window allows: no window will ever take it
    if (cost > this.limit) return refused;
    try {
      await this.client.send(
        new UpdateItemCommand({
          TableName: this.table,
          Key: { [COUNTERS_KEY]: { S: rateWindowKey(subject, window) } },
          UpdateExpression: 'ADD n :cost SET #ttl = :ttl',
          ConditionExpression: 'attribute_not_exists(n) OR n <= :most',
          ExpressionAttributeNames: { '#ttl': COUNTERS_TTL_ATTRIBUTE },
          ExpressionAttributeValues: {
            ':cost': { N: String(cost) },
            ':most': { N: String(this.limit - cost) },
            ':ttl': { N: String(Math.ceil(windowEnd / 1000) + EXPIRY_AFTER_WINDOW_SECONDS) },
          },
        }),
      );
      return { ok: true };
    } catch (err) {
      if (err instanceof ConditionalCheckFailedException || (err as { name?: unknown } | null)?.name === 'ConditionalCheckFailedException') {
        // a refusal of the least cost refuses every cost until the window ends
        if (cost === 1) {
          this.refusedUntil.delete(subject);
          if (this.refusedUntil.size >= this.maxRefused) this.refusedUntil.delete(this.refusedUntil.keys().next().value!);
          this.refusedUntil.set(subject, windowEnd);
        }
        return refused;
      }
      this.onError(err, subject);
      return { ok: true };
    }
  }
}
