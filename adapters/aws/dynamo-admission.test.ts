/**
 * What the DynamoDB admission promises beyond the shared suite (test/conformance/admission.*),
 * on dynalite: the cap across instances, slots that come back without a release (a create
 * that died, a job whose message expired), a release that needs no store read, the TTL, and
 * the bounds of one item.
 */
import { GetItemCommand } from '@aws-sdk/client-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JOB_MESSAGE_RETENTION_SECONDS } from '../../infra/queue-settings.ts';
import { JobRepository } from '../../shared/job-repository.ts';
import type { ObjectStore } from '../../shared/ports/store.ts';
import { MemoryStore } from '../memory/memory-store.ts';
import { startDynalite, type Dynalite } from '../../test/conformance/dynalite-server.ts';
import { COUNTERS_KEY, COUNTERS_TTL_ATTRIBUTE, admissionKey } from './counters-table.ts';
import { DEFAULT_ACCEPT_GRACE_MS, DEFAULT_MAX_JOB_AGE_MS, DynamoAdmission, MAX_DYNAMO_CAP } from './dynamo-admission.ts';

let dynamo: Dynalite;
beforeAll(async () => {
  dynamo = await startDynalite();
});
afterAll(async () => {
  await dynamo?.stop();
});

const JOB = (i: number) => `job_${String(i).padStart(26, '0')}`;
const T0 = Date.parse('2026-03-01T10:00:00.000Z');

/** A memory store that counts its reads. */
function countingStore(): { store: ObjectStore; reads: () => number } {
  const store = new MemoryStore();
  let reads = 0;
  const get = store.get.bind(store);
  store.get = (key: string) => {
    reads++;
    return get(key);
  };
  return { store, reads: () => reads };
}

async function world(opts: { minRefreshMs?: number } = {}) {
  const table = await dynamo.createCountersTable();
  const { store, reads } = countingStore();
  const repo = new JobRepository(store);
  let now = T0;
  const open = () => new DynamoAdmission({ client: dynamo.client, table, store, now: () => now, minRefreshMs: opts.minRefreshMs ?? 0 });
  /** stores the job as the edge accepts it: request, then the index entry */
  const store3 = async (tenant: string, id: string, parts: { request?: boolean; index?: boolean } = {}) => {
    if (parts.request !== false) await repo.putRequest({ v: 1, id, tenant, created_at: new Date(now).toISOString(), spec: {} as never, webhook: null });
    if (parts.index !== false) await repo.putIndex(tenant, now, id);
  };
  return { table, store, repo, reads, open, store3, advance: (ms: number) => (now += ms), now: () => now };
}

describe('DynamoAdmission beyond the shared suite', () => {
  it('two instances (two Lambdas) admitting 100 jobs at once for one tenant admit exactly the cap', async () => {
    const w = await world();
    const [a, b] = [w.open(), w.open()];
    const results = await Promise.all(Array.from({ length: 100 }, (_, i) => (i % 2 ? a : b).admit('acme', JOB(i), 50)));
    expect(results.filter(Boolean)).toHaveLength(50);
    expect(await a.hasRoom('acme', 50)).toBe(false);
    expect(await b.hasRoom('acme', 50)).toBe(false);
  });

  it('a release frees the slot without reading the store', async () => {
    const w = await world();
    const admission = w.open();
    for (let i = 0; i < 3; i++) {
      expect(await admission.admit('acme', JOB(i), 3)).toBe(true);
      await w.store3('acme', JOB(i));
    }
    await admission.release('acme', JOB(1));
    const before = w.reads();
    expect(await admission.admit('acme', JOB(3), 3)).toBe(true);
    expect(w.reads()).toBe(before);
  });

  it('a create that died after its admission gives the slot back once the grace has passed, not before', async () => {
    const w = await world();
    const admission = w.open();
    // died before writing anything, and died between the request and the index entry
    expect(await admission.admit('acme', JOB(0), 3)).toBe(true);
    expect(await admission.admit('acme', JOB(1), 3)).toBe(true);
    await w.store3('acme', JOB(1), { index: false });
    expect(await admission.admit('acme', JOB(2), 3)).toBe(true);
    await w.store3('acme', JOB(2));
    // within the grace a create may still be writing: the cap holds
    w.advance(DEFAULT_ACCEPT_GRACE_MS);
    expect(await admission.admit('acme', JOB(3), 3)).toBe(false);
    w.advance(1);
    const results = await Promise.all([4, 5, 6].map((i) => admission.admit('acme', JOB(i), 3)));
    expect(results.filter(Boolean)).toHaveLength(2);
  });

  it('a job that never ran keeps counting while its message can still be taken, and stops after', async () => {
    const w = await world();
    const admission = w.open();
    expect(await admission.admit('acme', JOB(0), 1)).toBe(true);
    await w.store3('acme', JOB(0));
    w.advance(DEFAULT_MAX_JOB_AGE_MS);
    expect(await admission.admit('acme', JOB(1), 1)).toBe(false);
    w.advance(1);
    expect(await admission.admit('acme', JOB(1), 1)).toBe(true);
    expect(DEFAULT_MAX_JOB_AGE_MS).toBe(JOB_MESSAGE_RETENTION_SECONDS * 1000);
  });

  it('hasRoom at the cap reads the store at most every minRefreshMs', async () => {
    const w = await world({ minRefreshMs: 1000 });
    const admission = w.open();
    for (let i = 0; i < 2; i++) {
      expect(await admission.admit('acme', JOB(i), 2)).toBe(true);
      await w.store3('acme', JOB(i));
    }
    const before = w.reads();
    expect(await admission.hasRoom('acme', 2)).toBe(false);
    const once = w.reads() - before;
    expect(once).toBeGreaterThan(0);
    for (let i = 0; i < 5; i++) expect(await admission.hasRoom('acme', 2)).toBe(false);
    expect(w.reads() - before).toBe(once);
    w.advance(1000);
    expect(await admission.hasRoom('acme', 2)).toBe(false);
    expect(w.reads() - before).toBe(2 * once);
  });

  it('keeps a tenant in one item whose TTL moves past the longest a job can stay active', async () => {
    const w = await world();
    const admission = w.open();
    expect(await admission.admit('acme', JOB(0), 5)).toBe(true);
    const item = async () =>
      (await dynamo.client.send(new GetItemCommand({ TableName: w.table, Key: { [COUNTERS_KEY]: { S: admissionKey('acme') } }, ConsistentRead: true }))).Item!;
    const first = Number((await item())[COUNTERS_TTL_ATTRIBUTE]!.N);
    expect(first * 1000).toBeGreaterThan(w.now() + DEFAULT_MAX_JOB_AGE_MS);
    w.advance(3600_000);
    expect(await admission.admit('acme', JOB(1), 5)).toBe(true);
    const second = await item();
    expect(Number(second[COUNTERS_TTL_ATTRIBUTE]!.N)).toBe(first + 3600);
    expect(Object.keys(second.jobs!.M!).sort()).toEqual([JOB(0), JOB(1)]);
  });

  it('refuses a cap one item cannot hold, and bad options, naming them', async () => {
    const w = await world();
    await expect(w.open().admit('acme', JOB(0), MAX_DYNAMO_CAP + 1)).rejects.toThrow(/cap must be at most 5000 on DynamoDB/);
    const store = new MemoryStore();
    expect(() => new DynamoAdmission({ client: dynamo.client, table: 'x', store })).toThrow(/option "table"/);
    expect(() => new DynamoAdmission({ client: {} as never, table: w.table, store })).toThrow(/option "client"/);
    expect(() => new DynamoAdmission({ client: dynamo.client, table: w.table, store, acceptGraceMs: -1 })).toThrow(/option "acceptGraceMs"/);
  });
});
