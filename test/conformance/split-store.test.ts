/**
 * What the split store adds to the shared suite: which keys are blobs, where each key lands,
 * listings merged across both stores in byte order at every page size, and keys left in the
 * wrong store kept out of listings.
 */
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FsStore } from '../../adapters/embedded/fs-store.ts';
import { isBlobKey, prefixMayHoldBlobs, prefixMayHoldRecords, SplitStore } from '../../adapters/embedded/split-store.ts';
import { SqliteStore } from '../../adapters/embedded/sqlite-store.ts';
import { MemoryStore } from '../../adapters/memory/memory-store.ts';
import type { ObjectStore } from '../../shared/ports/store.ts';

const signing = { secret: 'split-store-test-secret-at-least-32-bytes', baseUrl: 'http://127.0.0.1:9/' };

let base: string;
let roots = 0;
beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), 'amdm-split-store-'));
});
afterAll(async () => {
  await rm(base, { recursive: true, force: true });
});

function open(): { store: SplitStore; records: SqliteStore; blobs: FsStore; blobRoot: string } {
  const root = join(base, `root-${++roots}`);
  const blobRoot = join(root, 'blobs');
  const records = new SqliteStore({ dir: root, signing });
  const blobs = new FsStore({ root: blobRoot, signing });
  return { store: new SplitStore({ records, blobs }), records, blobs, blobRoot };
}

async function listAll(store: ObjectStore, prefix: string, limit: number): Promise<string[]> {
  const keys: string[] = [];
  let cursor: string | null = null;
  do {
    const page = await store.list(prefix, { cursor, limit });
    expect(page.keys.length).toBeLessThanOrEqual(limit);
    keys.push(...page.keys);
    cursor = page.cursor;
  } while (cursor !== null);
  return keys;
}

describe('which keys are blobs', () => {
  it('output images and uploads are blobs; every other key of the layout is a record', () => {
    for (const key of ['tenants/acme/jobs/job_1/out/aggregated-0.png', 'tenants/acme/jobs/job_1/out/base-1.f32', 'tenants/acme/uploads/upl_abc', 'tenants/acme/uploads/x/y']) {
      expect(isBlobKey(key), key).toBe(true);
    }
    for (const key of [
      'tenants/acme/jobs/job_1/request.json',
      'tenants/acme/jobs/job_1/status.json',
      'tenants/acme/jobs/job_1/webhook/0001.json',
      'tenants/acme/jobs/job_1/out',
      'tenants/acme/index/000-job_1',
      'tenants/acme/idempotency/abc/000-job_1.json',
      'tenants/acme/usage/2026-01-01/job_1.json',
      'tenants/acme/uploads',
      'apikeys/abc.json',
      'apikey-ids/k.json',
      'tenants',
      'out/tenants/acme/uploads/x',
    ]) {
      expect(isBlobKey(key), key).toBe(false);
    }
  });

  it('a prefix is asked of the store(s) that can hold keys under it', () => {
    const cases: [string, boolean, boolean][] = [
      // prefix, may hold records, may hold blobs
      ['', true, true],
      ['t', true, true],
      ['tenants/acme/', true, true],
      ['tenants/acme/index/', true, false],
      ['tenants/acme/jobs/job_1/', true, true],
      ['tenants/acme/jobs/job_1/o', true, true],
      ['tenants/acme/jobs/job_1/out', true, true],
      ['tenants/acme/jobs/job_1/out/', false, true],
      ['tenants/acme/jobs/job_1/out/agg', false, true],
      ['tenants/acme/jobs/job_1/webhook/', true, false],
      ['tenants/acme/up', true, true],
      ['tenants/acme/uploads/', false, true],
      ['tenants/acme/uploads/upl_', false, true],
      ['apikeys/', true, false],
      ['page/', true, false],
    ];
    for (const [prefix, records, blobs] of cases) {
      expect([prefixMayHoldRecords(prefix), prefixMayHoldBlobs(prefix)], JSON.stringify(prefix)).toEqual([records, blobs]);
    }
  });
});

describe.concurrent('SplitStore', () => {
  it('puts records in SQLite and blobs in files, and reads each back from where it is', async () => {
    const { store, records, blobs, blobRoot } = open();
    try {
      await store.put('tenants/acme/jobs/job_1/request.json', '{"id":"job_1"}', 'application/json');
      await store.put('tenants/acme/jobs/job_1/out/aggregated-0.png', new Uint8Array([0x89, 0x50]), 'image/png');
      await store.put('tenants/acme/uploads/upl_abc', new Uint8Array([0xff, 0xd8, 0xff]), 'image/jpeg');
      expect((await records.list('')).keys).toEqual(['tenants/acme/jobs/job_1/request.json']);
      expect((await blobs.list('')).keys).toEqual(['tenants/acme/jobs/job_1/out/aggregated-0.png', 'tenants/acme/uploads/upl_abc']);
      const files = (await readdir(blobRoot, { recursive: true, withFileTypes: true })).filter((e) => e.isFile());
      expect(files.map((e) => relative(blobRoot, join(e.parentPath, e.name))).sort()).toEqual([
        'tenants@/acme@/jobs@/job_1@/out@/aggregated-0.png',
        'tenants@/acme@/uploads@/upl_abc',
      ]);
      expect((await store.get('tenants/acme/uploads/upl_abc'))?.contentType).toBe('image/jpeg');
      await store.delete('tenants/acme/uploads/upl_abc');
      expect(await blobs.get('tenants/acme/uploads/upl_abc')).toBeNull();
    } finally {
      await store.close();
    }
  });

  it('merges both stores in byte order at every page size', async () => {
    const { store } = open();
    try {
      const job = 'tenants/acme/jobs/job_1/';
      const keys = [
        `${job}cancel.json`,
        `${job}out/aggregated-0.png`,
        `${job}out/aggregated-1.png`,
        `${job}out/base-0.png`,
        `${job}out.json`,
        `${job}request.json`,
        `${job}status.json`,
        `${job}webhook/0001.json`,
        'tenants/acme/index/000-job_1',
        'tenants/acme/uploads/upl_a',
        'tenants/acme/uploads/upl_b',
        'tenants/acme/usage/2026-01-01/job_1.json',
        'tenants/acme/uploadsx',
      ];
      for (const key of [...keys].reverse()) await store.put(key, key);
      const sorted = [...keys].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
      for (const limit of [1, 2, 3, 5, 1000]) {
        expect(await listAll(store, '', limit), `limit ${limit}`).toEqual(sorted);
        expect(await listAll(store, job, limit), `limit ${limit}`).toEqual(sorted.filter((k) => k.startsWith(job)));
        expect(await listAll(store, 'tenants/acme/up', limit), `limit ${limit}`).toEqual(sorted.filter((k) => k.startsWith('tenants/acme/up')));
      }
      // "out.json" sorts before "out/": '.' is 0x2E, '/' 0x2F
      const first = await store.list(job, { limit: 3 });
      expect(first).toEqual({ keys: [`${job}cancel.json`, `${job}out.json`, `${job}out/aggregated-0.png`], cursor: `${job}out/aggregated-0.png` });
    } finally {
      await store.close();
    }
  });

  it('does not list a key found in the store the rule does not route it to', async () => {
    const records = new MemoryStore();
    const blobs = new MemoryStore();
    const store = new SplitStore({ records, blobs });
    await records.put('tenants/acme/uploads/upl_stray', 'left in the wrong store');
    await blobs.put('tenants/acme/jobs/job_1/request.json', 'left in the wrong store');
    await store.put('tenants/acme/jobs/job_1/request.json', 'the record');
    await store.put('tenants/acme/uploads/upl_real', 'the blob');
    expect((await store.list('')).keys).toEqual(['tenants/acme/jobs/job_1/request.json', 'tenants/acme/uploads/upl_real']);
    expect((await store.list('tenants/acme/uploads/')).keys).toEqual(['tenants/acme/uploads/upl_real']);
    // a page whose only key was a stray one still leads on to the rest
    await records.put('tenants/acme/jobs/job_0/request.json', 'r');
    await blobs.put('tenants/acme/jobs/job_0/out/a.png', 'b');
    await blobs.put('tenants/acme/jobs/job_00.json', 'stray');
    expect(await listAll(store, 'tenants/acme/jobs/', 1)).toEqual([
      'tenants/acme/jobs/job_0/out/a.png',
      'tenants/acme/jobs/job_0/request.json',
      'tenants/acme/jobs/job_1/request.json',
    ]);
    // and a page on which every key was a stray one
    const fresh = new SplitStore({ records: new MemoryStore(), blobs: new MemoryStore() });
    await fresh.blobs.put('tenants/a/jobs/j/a.json', 'stray');
    await fresh.put('tenants/a/jobs/j/out/y.png', 'real');
    expect(await fresh.list('tenants/a/jobs/j/', { limit: 1 })).toEqual({ keys: [], cursor: 'tenants/a/jobs/j/a.json' });
    expect(await listAll(fresh, 'tenants/a/jobs/j/', 1)).toEqual(['tenants/a/jobs/j/out/y.png']);
  });

  it('refuses bad options, naming them', () => {
    const one = new MemoryStore();
    expect(() => new SplitStore({ records: one, blobs: one })).toThrow(/two different stores/);
    expect(() => new SplitStore({ records: {} as ObjectStore, blobs: one })).toThrow(/option "records" must be an ObjectStore/);
    expect(() => new SplitStore(undefined as never)).toThrow(/options are required/);
  });
});
