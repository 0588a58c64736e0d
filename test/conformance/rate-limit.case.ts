/**
 * The RateLimiter contract (shared/ports/rate-limit.ts) as one suite that every adapter runs:
 * rate-limit.test.ts calls it for the edge's in-memory token buckets and for the fixed windows
 * in DynamoDB (on dynalite). Time is the suite's clock, never the wall's.
 */
import { describe, expect, it, type TestContext } from 'vitest';
import type { RateLimiter } from '../../shared/ports/rate-limit.ts';

export interface RateLimitWorld {
  limiter: RateLimiter;
  /** another limiter over the same counts: a second edge instance */
  another(): RateLimiter;
  close(): Promise<void>;
}

export interface RateLimitSuite {
  /** whether limiters of one world count together (shared by edge instances) */
  shared: boolean;
  create(opts: { ratePerSecond: number; burst: number; now: () => number }): Promise<RateLimitWorld>;
}

/** not on a second boundary: windows and buckets must not depend on where the clock starts */
const T0 = Date.parse('2026-03-01T10:00:00.300Z');

export function describeRateLimitConformance(name: string, suite: RateLimitSuite): void {
  const open = async (ctx: TestContext, ratePerSecond: number, burst: number) => {
    let now = T0;
    const world = await suite.create({ ratePerSecond, burst, now: () => now });
    ctx.onTestFinished(() => world.close());
    return { ...world, advance: (ms: number) => (now += ms) };
  };
  const takeAll = async (limiter: RateLimiter, subject: string, n: number) => {
    const out = [];
    for (let i = 0; i < n; i++) out.push(await limiter.take(subject));
    return out;
  };

  describe(`RateLimiter conformance: ${name}`, () => {
    it('a fresh subject passes its burst at once, then is refused with a whole Retry-After', async (ctx) => {
      const w = await open(ctx, 1, 5);
      expect((await takeAll(w.limiter, 'acme', 5)).every((r) => r.ok)).toBe(true);
      const refused = await w.limiter.take('acme');
      expect(refused.ok).toBe(false);
      const after = (refused as { retryAfterSeconds: number }).retryAfterSeconds;
      expect(Number.isInteger(after) && after >= 1).toBe(true);
      // subjects never share an allowance
      expect((await w.limiter.take('other')).ok).toBe(true);
    });

    it('passes again once Retry-After has passed', async (ctx) => {
      const w = await open(ctx, 1, 3);
      await takeAll(w.limiter, 'acme', 3);
      const refused = await w.limiter.take('acme');
      expect(refused.ok).toBe(false);
      w.advance((refused as { retryAfterSeconds: number }).retryAfterSeconds * 1000);
      expect((await w.limiter.take('acme')).ok).toBe(true);
    });

    it('over a long time a subject that keeps asking passes about rate x T: within [rate x T - burst, rate x T + 2 x burst]', async (ctx) => {
      const rate = 10;
      const burst = 20;
      const w = await open(ctx, rate, burst);
      let passed = 0;
      const seconds = 30;
      for (let t = 0; t < seconds * 1000; t += 50) {
        // as many as it lets through at this instant
        for (let k = 0; k < 3 * burst && (await w.limiter.take('acme')).ok; k++) passed++;
        w.advance(50);
      }
      expect(passed).toBeGreaterThanOrEqual(rate * seconds - burst);
      expect(passed).toBeLessThanOrEqual(rate * seconds + 2 * burst);
    });

    it.runIf(suite.shared)('two instances share one limit: parallel takes across both pass exactly the burst', async (ctx) => {
      const w = await open(ctx, 5, 25);
      const other = w.another();
      const results = await Promise.all(Array.from({ length: 60 }, (_, i) => (i % 2 ? w.limiter : other).take('acme')));
      expect(results.filter((r) => r.ok)).toHaveLength(25);
      // and each instance refuses from then on
      expect((await w.limiter.take('acme')).ok).toBe(false);
      expect((await other.take('acme')).ok).toBe(false);
    });
  });
}
