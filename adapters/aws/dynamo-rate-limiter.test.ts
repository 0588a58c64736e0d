/**
 * What the DynamoDB rate limiter promises beyond the shared suite (test/conformance/rate-limit.*),
 * on dynalite: one write per request and none for a subject already refused in its window, a
 * DynamoDB failure that lets the request through and says so, and items that expire.
 */
import { DynamoDBClient, GetItemCommand } from '@aws-sdk/client-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDynalite, type Dynalite } from '../../test/conformance/dynalite-server.ts';
import { COUNTERS_KEY, COUNTERS_TTL_ATTRIBUTE, rateWindowKey } from './counters-table.ts';
import { DynamoRateLimiter } from './dynamo-rate-limiter.ts';

let dynamo: Dynalite;
beforeAll(async () => {
  dynamo = await startDynalite();
});
afterAll(async () => {
  await dynamo?.stop();
});

const T0 = Date.parse('2026-03-01T10:00:00.000Z');

/** The dynalite client, counting the requests it sends. */
function countingClient(): { client: DynamoDBClient; sent: () => number } {
  let sent = 0;
  const client = new Proxy(dynamo.client, {
    get(target, prop, receiver) {
      if (prop === 'send') {
        return (command: never) => {
          sent++;
          return target.send(command);
        };
      }
      return Reflect.get(target, prop, receiver);
    },
  });
  return { client, sent: () => sent };
}

describe('DynamoRateLimiter beyond the shared suite', () => {
  it('costs one write per request, and none for a subject already refused in its window', async () => {
    const table = await dynamo.createCountersTable();
    const { client, sent } = countingClient();
    let now = T0 + 200;
    const limiter = new DynamoRateLimiter({ client, table, limit: 3, windowSeconds: 10, now: () => now });
    for (let i = 0; i < 3; i++) expect((await limiter.take('acme')).ok).toBe(true);
    expect(sent()).toBe(3);
    expect(await limiter.take('acme')).toEqual({ ok: false, retryAfterSeconds: 10 });
    expect(sent()).toBe(4);
    now += 5000;
    expect(await limiter.take('acme')).toEqual({ ok: false, retryAfterSeconds: 5 });
    expect(sent()).toBe(4);
    // the next window asks DynamoDB again
    now = T0 + 10_000;
    expect((await limiter.take('acme')).ok).toBe(true);
    expect(sent()).toBe(5);
  });

  it('keeps each window in its own item, which expires an hour after the window', async () => {
    const table = await dynamo.createCountersTable();
    const limiter = new DynamoRateLimiter({ client: dynamo.client, table, limit: 5, windowSeconds: 60, now: () => T0 + 1000 });
    await limiter.take('acme', 2);
    const window = Math.floor((T0 + 1000) / 60_000);
    const { Item } = await dynamo.client.send(new GetItemCommand({ TableName: table, Key: { [COUNTERS_KEY]: { S: rateWindowKey('acme', window) } }, ConsistentRead: true }));
    expect(Item?.n?.N).toBe('2');
    expect(Number(Item?.[COUNTERS_TTL_ATTRIBUTE]?.N)).toBe((window + 1) * 60 + 3600);
  });

  it('lets a request through when DynamoDB fails, and reports it', async () => {
    const errors: string[] = [];
    // nothing listens on the reserved port 9 of loopback
    const broken = new DynamoDBClient({ endpoint: 'http://127.0.0.1:9', region: 'us-east-1', credentials: { accessKeyId: 'x', secretAccessKey: 'x' }, maxAttempts: 1 });
    try {
      const limiter = new DynamoRateLimiter({ client: broken, table: 'counters', limit: 1, windowSeconds: 1, onError: (err, subject) => errors.push(`${subject}: ${(err as Error).name}`) });
      expect(await limiter.take('acme')).toEqual({ ok: true });
      expect(await limiter.take('acme')).toEqual({ ok: true });
      expect(errors).toHaveLength(2);
      expect(errors[0]).toMatch(/^acme: /);
    } finally {
      broken.destroy();
    }
  });

  it('refuses bad options and arguments, naming them', async () => {
    const table = await dynamo.createCountersTable();
    expect(() => new DynamoRateLimiter({ client: dynamo.client, table, limit: 0, windowSeconds: 1 })).toThrow(/option "limit"/);
    expect(() => new DynamoRateLimiter({ client: dynamo.client, table, limit: 1, windowSeconds: 0.5 })).toThrow(/option "windowSeconds"/);
    expect(() => new DynamoRateLimiter({ client: dynamo.client, table: 'x', limit: 1, windowSeconds: 1 })).toThrow(/option "table"/);
    const limiter = new DynamoRateLimiter({ client: dynamo.client, table, limit: 1, windowSeconds: 1 });
    await expect(limiter.take('')).rejects.toThrow(/subject/);
    await expect(limiter.take('acme', 0)).rejects.toThrow(/cost/);
  });
});
