/**
 * The RateLimiter conformance suite against every adapter: the edge's in-memory token buckets
 * (each instance its own) and the fixed windows in DynamoDB on dynalite (shared by instances).
 * A DynamoDB limiter is set up as the AWS root maps the token bucket: limit = burst, window =
 * burst / rate.
 */
import { afterAll, beforeAll } from 'vitest';
import { DynamoRateLimiter } from '../../adapters/aws/dynamo-rate-limiter.ts';
import { TokenBucketLimiter } from '../../edge/middleware/rate-limit/index.ts';
import { startDynalite, type Dynalite } from './dynalite-server.ts';
import { describeRateLimitConformance } from './rate-limit.case.ts';

let dynamo: Dynalite;
beforeAll(async () => {
  dynamo = await startDynalite();
});
afterAll(async () => {
  await dynamo?.stop();
});

describeRateLimitConformance('token buckets in memory', {
  shared: false,
  async create({ ratePerSecond, burst, now }) {
    const open = () => new TokenBucketLimiter({ ratePerSecond, burst, now });
    return { limiter: open(), another: open, close: async () => {} };
  },
});

describeRateLimitConformance('fixed windows in DynamoDB (dynalite)', {
  shared: true,
  async create({ ratePerSecond, burst, now }) {
    const table = await dynamo.createCountersTable();
    const open = () => new DynamoRateLimiter({ client: dynamo.client, table, limit: burst, windowSeconds: burst / ratePerSecond, now });
    return { limiter: open(), another: open, close: async () => {} };
  },
});
