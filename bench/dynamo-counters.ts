/**
 * `npx tsx bench/dynamo-counters.ts`: what the shared counters add to a request on AWS, measured
 * against dynalite on loopback: one rate-limit take (one UpdateItem), one admission below the
 * cap (one UpdateItem), hasRoom (one GetItem), and a release. Sequential calls, median and p99
 * in ms, after a warm-up. Never a timed test.
 *
 * What it shows and what it cannot: dynalite runs in this process and keeps its tables in
 * memory (LevelDB), so the numbers are the SDK's own cost (signing, serialising, HTTP on
 * loopback) plus dynalite's, with no network. In a region DynamoDB answers in single-digit
 * milliseconds (its documentation: "single-digit millisecond latency"), so on Lambda each of
 * these calls is a few ms on top of what is measured here.
 *
 *   npx tsx bench/dynamo-counters.ts -- [--calls 2000]
 */
import { parseArgs } from 'node:util';
import { DynamoAdmission } from '../adapters/aws/dynamo-admission.ts';
import { DynamoRateLimiter } from '../adapters/aws/dynamo-rate-limiter.ts';
import { MemoryStore } from '../adapters/memory/memory-store.ts';
import { startDynalite } from '../test/conformance/dynalite-server.ts';

const { values } = parseArgs({ options: { calls: { type: 'string', default: '2000' } }, allowPositionals: true });
const calls = Number(values.calls);
if (!Number.isInteger(calls) || calls < 10) throw new Error(`--calls must be an integer >= 10 (got ${values.calls})`);

const dynamo = await startDynalite();
const table = await dynamo.createCountersTable();
const limiter = new DynamoRateLimiter({ client: dynamo.client, table, limit: 1e9, windowSeconds: 3600 });
const admission = new DynamoAdmission({ client: dynamo.client, table, store: new MemoryStore() });

const quantile = (xs: number[], q: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * q))]!;

/** Times `op` alone; `after` runs between calls, untimed (to keep the state each call expects). */
async function measure(name: string, op: () => Promise<unknown>, after: () => Promise<unknown> = async () => {}): Promise<void> {
  for (let i = 0; i < 50; i++) {
    await op();
    await after();
  }
  const ms: number[] = [];
  for (let i = 0; i < calls; i++) {
    const t0 = performance.now();
    await op();
    ms.push(performance.now() - t0);
    await after();
  }
  console.log(JSON.stringify({ op: name, calls, median_ms: +quantile(ms, 0.5).toFixed(3), p99_ms: +quantile(ms, 0.99).toFixed(3) }));
}

await measure('rate limit take (UpdateItem)', () => limiter.take('acme'));
// a tenant with 49 active jobs under the default cap of 50, as in production near the cap:
// the measured admission takes the last slot and the untimed release gives it back (and the
// other way round), so the item keeps its size
for (let i = 0; i < 49; i++) await admission.admit('acme', `job_${String(i).padStart(26, '0')}`, 50);
const last = `job_${'z'.repeat(26)}`;
await measure('admit the 50th job (UpdateItem)', () => admission.admit('acme', last, 50), () => admission.release('acme', last));
await admission.admit('acme', last, 50);
await measure('release (UpdateItem)', () => admission.release('acme', last), () => admission.admit('acme', last, 50));
await measure('hasRoom at 50 jobs (GetItem)', () => admission.hasRoom('acme', 51));
await dynamo.stop();
