/**
 * The JobAdmission conformance suite against every adapter: the edge's in-process count over
 * a memory store, the single node's SQLite admission with either writer, and DynamoDB on
 * dynalite over a memory store. Beyond the suite: processes sharing one SQLite file admit
 * exactly the cap between them (the DynamoDB adapter's own promises: dynamo-admission.test.ts).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DynamoAdmission } from '../../adapters/aws/dynamo-admission.ts';
import { SqliteAdmission } from '../../adapters/embedded/sqlite-admission.ts';
import type { SqliteWriter } from '../../adapters/embedded/sqlite-database.ts';
import { SQLITE_QUEUE_FILE } from '../../adapters/embedded/sqlite-queue.ts';
import { SqliteStore } from '../../adapters/embedded/sqlite-store.ts';
import { MemoryStore } from '../../adapters/memory/memory-store.ts';
import { ActiveJobTracker } from '../../edge/active-jobs.ts';
import { JobRepository } from '../../shared/job-repository.ts';
import { describeAdmissionConformance } from './admission.case.ts';
import { CHILD_SIGNING } from './fixtures/admission-child.ts';
import { startDynalite, type Dynalite } from './dynalite-server.ts';
import { runChild } from './run-child.ts';

let dataRoot: string;
let dirs = 0;
let dynamo: Dynalite;
beforeAll(async () => {
  dataRoot = await mkdtemp(join(tmpdir(), 'amdm-admission-conformance-'));
  dynamo = await startDynalite();
});
afterAll(async () => {
  await rm(dataRoot, { recursive: true, force: true });
  await dynamo?.stop();
});

describeAdmissionConformance('in-process count (memory store)', {
  async create() {
    const store = new MemoryStore();
    // no refresh throttle: the suite reads hasRoom right after a job finishes
    const open = () => new ActiveJobTracker(new JobRepository(store), { minRefreshMs: 0 });
    return { store, admission: open(), reopen: async () => open() };
  },
});

describeAdmissionConformance('DynamoDB (dynalite, memory store)', {
  async create() {
    const store = new MemoryStore();
    const table = await dynamo.createCountersTable();
    // no refresh throttle: the suite reads hasRoom right after a job finishes
    const open = () => new DynamoAdmission({ client: dynamo.client, table, store, minRefreshMs: 0 });
    return { store, admission: open(), reopen: async () => open() };
  },
});

for (const writer of ['inline', 'thread'] as SqliteWriter[]) {
  describeAdmissionConformance(`sqlite (${writer} writer)`, {
    async create() {
      const dir = join(dataRoot, `db-${++dirs}`);
      // the single node's layout: the records and the admissions in one file
      const store = new SqliteStore({ dir, file: SQLITE_QUEUE_FILE, signing: CHILD_SIGNING, writer });
      const open = () => new SqliteAdmission({ dir, file: SQLITE_QUEUE_FILE, writer });
      return { store, admission: open(), reopen: async () => open() };
    },
  });
}

describe('SqliteAdmission beyond the shared suite', () => {
  const CHILD = fileURLToPath(new URL('./fixtures/admission-child.ts', import.meta.url));

  it('processes sharing the file admit exactly the cap between them', async () => {
    const dir = join(dataRoot, `db-${++dirs}`);
    const store = new SqliteStore({ dir, file: SQLITE_QUEUE_FILE, signing: CHILD_SIGNING });
    const admission = new SqliteAdmission({ dir, file: SQLITE_QUEUE_FILE });
    try {
      // two other processes and this one, 120 creates each, against a cap of 50
      const children = [runChild(CHILD, dir, ['accept', 'a', '120', '50']), runChild(CHILD, dir, ['accept', 'b', '120', '50'])];
      const repo = new JobRepository(store);
      let mine = 0;
      for (let round = 0; round < 12; round++) {
        const results = await Promise.all(
          Array.from({ length: 10 }, async (_, i) => {
            const jobId = `job_p${String(round * 10 + i).padStart(25, '0')}`;
            const [admitted, write] = store.commitLog().unit(() => [admission.admit('shared', jobId, 50), repo.putRequest({ v: 1, id: jobId, tenant: 'shared', created_at: new Date().toISOString(), spec: {} as never, webhook: null })]);
            write.catch(() => {});
            return admitted;
          }),
        );
        mine += results.filter(Boolean).length;
      }
      const counts = (await Promise.all(children)).map((c) => Number(c.lines.at(-1)));
      expect(mine + counts[0]! + counts[1]!).toBe(50);
      expect((await store.list('tenants/shared/jobs/', { limit: 1000 })).keys).toHaveLength(50);
      expect(await admission.hasRoom('shared', 50)).toBe(false);
    } finally {
      await admission.close();
      await store.close();
    }
  });

  it('refuses a file without the records it counts, and bad options, naming them', async () => {
    const dir = join(dataRoot, `db-${++dirs}`);
    expect(() => new SqliteAdmission({ dir, file: SQLITE_QUEUE_FILE })).toThrow(/has no objects table/);
    expect(() => new SqliteAdmission({ dir: '', file: SQLITE_QUEUE_FILE })).toThrow(/dir must be a directory path/);
    expect(() => new SqliteAdmission({ dir, file: '../x.sqlite' })).toThrow(/file must be a plain file name/);
  });
});
