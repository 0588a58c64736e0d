/**
 * The admission port (shared/ports/admission.ts) in the single node's SQLite file, next to the
 * store's records and the queues, so that admitting a job is a write of the same group commit
 * as the create's request, queue message and index entry.
 *
 * `active_jobs` holds the admitted jobs of each tenant and `active_counts` their number, kept
 * by triggers in the same transaction as every insert and delete. An admission is a guard
 * (sqlite-database.ts): an INSERT that adds the job only while the tenant's count is below the
 * cap. Inside the create's unit, a refusal commits nothing of the create; every unit runs
 * inside an IMMEDIATE transaction, so the count and the insert are one step for every process
 * sharing the file.
 *
 * The count comes down from durable state, not from a message: before a tenant at its cap is
 * refused, the same statement deletes its admitted jobs that the store's records (the
 * `objects` table of sqlite-store.ts in the same file) show finished: status.json with a
 * terminal status, or cancel.json while not running (derivedStatus in
 * shared/job-repository.ts; the keys are docs/architecture.md's layout). A finish written by a
 * runner in another process, a cancel, a kill -9 between any two writes: the next admission
 * at the cap reads them all. The prune runs only at the cap, so below it an admission costs
 * what a plain insert does (4 us against 3 us on this machine, a loop of 5000); each tenant
 * keeps at most `cap` rows (more only after the cap is lowered).
 */
import type Database from 'better-sqlite3';
import { checkAdmitArgs, type JobAdmission } from '../../shared/ports/admission.ts';
import type { CommitLog } from '../../shared/ports/store.ts';
import { SharedDatabase, UnitRefusedError, type SqliteWriter } from './sqlite-database.ts';

/** Version of the admission tables, kept in `store_meta` next to the store's. */
const SCHEMA_VERSION = 1;

export interface SqliteAdmissionOptions {
  /** directory of the database file: the one whose `objects` table holds the jobs' records */
  dir: string;
  /** the database file in `dir` (the single node's queues.sqlite) */
  file: string;
  busyTimeoutMs?: number;
  writer?: SqliteWriter;
}

/** A status.json whose status is one of `list`; malformed JSON counts as no status. */
const statusIn = (t: string, j: string, list: string) =>
  `EXISTS (SELECT 1 FROM objects WHERE key = 'tenants/' || ${t} || '/jobs/' || ${j} || '/status.json'
     AND (CASE WHEN json_valid(CAST(body AS TEXT)) THEN json_extract(CAST(body AS TEXT), '$.status') END) IN (${list}))`;

/** derivedStatus(status, cancel) is terminal: a terminal status, or a cancel while not running. */
const finished = (t: string, j: string) =>
  `(${statusIn(t, j, "'succeeded', 'failed', 'canceled'")}
    OR (EXISTS (SELECT 1 FROM objects WHERE key = 'tenants/' || ${t} || '/jobs/' || ${j} || '/cancel.json')
        AND NOT ${statusIn(t, j, "'running'")}))`;

/**
 * The guard. A BEFORE trigger (see migrate) lets it through below the cap; at the cap it first
 * deletes the tenant's finished jobs and then, if the tenant is still at the cap, drops the
 * row (RAISE(IGNORE)): no change, so the unit is refused. A job id is admitted once.
 */
const ADMIT_SQL = 'INSERT INTO active_jobs (tenant, job_id, cap) VALUES (?, ?, ?) ON CONFLICT (tenant, job_id) DO NOTHING';
const WITHDRAW_SQL = 'DELETE FROM active_jobs WHERE tenant = ? AND job_id = ?';

export class SqliteAdmission implements JobAdmission {
  private readonly shared: SharedDatabase;
  private readonly countOf: Database.Statement<[string], { n: number }>;
  private readonly liveCount: Database.Statement<[string], { n: number }>;
  private closed = false;

  constructor(opts: SqliteAdmissionOptions) {
    if (typeof opts !== 'object' || opts === null) throw new TypeError('SqliteAdmission: options are required');
    if (typeof opts.dir !== 'string' || opts.dir === '') throw new TypeError(`SqliteAdmission: dir must be a directory path; got ${JSON.stringify(opts.dir)}`);
    if (typeof opts.file !== 'string' || !/^[A-Za-z0-9._-]{1,255}$/.test(opts.file) || opts.file.startsWith('.')) {
      throw new TypeError(`SqliteAdmission: file must be a plain file name such as "queues.sqlite"; got ${JSON.stringify(opts.file)}`);
    }
    this.shared = SharedDatabase.acquire(opts.dir, opts.file, {
      ...(opts.busyTimeoutMs !== undefined ? { busyTimeoutMs: opts.busyTimeoutMs } : {}),
      ...(opts.writer !== undefined ? { writer: opts.writer } : {}),
    });
    const db = this.shared.db;
    try {
      const hasObjects = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'objects'").get();
      if (!hasObjects) {
        throw new Error(`SqliteAdmission: ${this.shared.file} has no objects table; open the SqliteStore that keeps the jobs' records in this file first`);
      }
      migrate(db, this.shared.file);
      this.countOf = db.prepare('SELECT n FROM active_counts WHERE tenant = ?');
      this.liveCount = db.prepare(`SELECT COUNT(*) AS n FROM active_jobs a WHERE a.tenant = ? AND NOT ${finished('a.tenant', 'a.job_id')}`);
      // fail here, not in the first create's transaction, if the statement does not fit the schema
      db.prepare(ADMIT_SQL);
    } catch (err) {
      void this.shared.release();
      throw err;
    }
  }

  /** Admissions join the group commit of the database file, which its store and queues share. */
  commitLog(): CommitLog {
    return this.shared;
  }

  async admit(tenant: string, jobId: string, cap: number): Promise<boolean> {
    this.checkOpen();
    checkAdmitArgs(tenant, jobId, cap);
    try {
      // inside the caller's unit when there is one: then a refusal commits nothing of it
      await this.shared.write([{ sql: ADMIT_SQL, params: [tenant, jobId, cap], guard: true }]);
      return true;
    } catch (err) {
      if (err instanceof UnitRefusedError) return false;
      throw err;
    }
  }

  async withdraw(tenant: string, jobId: string): Promise<void> {
    this.checkOpen();
    await this.shared.write([{ sql: WITHDRAW_SQL, params: [tenant, jobId] }]);
  }

  /**
   * Nothing to do: the count comes down from the store's records in this same file, read by
   * the next admission at the cap, so a release would be one more write per job for nothing.
   */
  async release(_tenant: string, _jobId: string): Promise<void> {
    this.checkOpen();
  }

  async hasRoom(tenant: string, cap: number): Promise<boolean> {
    this.checkOpen();
    const n = this.countOf.get(tenant)?.n ?? 0;
    if (n < cap) return true;
    // rows of finished jobs stay until an admission at the cap prunes them: look past them
    return (this.liveCount.get(tenant)?.n ?? 0) < cap;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.shared.release();
  }

  private checkOpen(): void {
    if (this.closed) throw new Error('SqliteAdmission is closed');
  }
}

function migrate(db: Database.Database, file: string): void {
  db.transaction(() => {
    // the store's DDL, word for word: whichever adapter opens the file first creates it
    db.exec('CREATE TABLE IF NOT EXISTS store_meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) STRICT');
    const row = db.prepare<[], { value: number }>("SELECT value FROM store_meta WHERE name = 'admission'").get();
    if (row?.value === SCHEMA_VERSION) return;
    if (row !== undefined) {
      throw new Error(`SqliteAdmission: ${file} has admission schema version ${row.value}; this build reads version ${SCHEMA_VERSION}`);
    }
    db.exec(`
      CREATE TABLE active_jobs (
        tenant TEXT NOT NULL,
        job_id TEXT NOT NULL,
        -- the cap the job was admitted under: the triggers cannot see the statement's parameters
        cap    INTEGER NOT NULL,
        PRIMARY KEY (tenant, job_id)
      ) STRICT, WITHOUT ROWID;
      CREATE TABLE active_counts (
        tenant TEXT PRIMARY KEY,
        n      INTEGER NOT NULL
      ) STRICT, WITHOUT ROWID;
      CREATE TRIGGER active_jobs_admit BEFORE INSERT ON active_jobs
      WHEN COALESCE((SELECT n FROM active_counts WHERE tenant = NEW.tenant), 0) >= NEW.cap
      BEGIN
        DELETE FROM active_jobs WHERE tenant = NEW.tenant AND ${finished('tenant', 'job_id')};
        SELECT RAISE(IGNORE) WHERE COALESCE((SELECT n FROM active_counts WHERE tenant = NEW.tenant), 0) >= NEW.cap;
      END;
      CREATE TRIGGER active_jobs_added AFTER INSERT ON active_jobs BEGIN
        INSERT INTO active_counts (tenant, n) VALUES (NEW.tenant, 1) ON CONFLICT (tenant) DO UPDATE SET n = n + 1;
      END;
      CREATE TRIGGER active_jobs_removed AFTER DELETE ON active_jobs BEGIN
        UPDATE active_counts SET n = n - 1 WHERE tenant = OLD.tenant;
      END;
    `);
    db.prepare("INSERT INTO store_meta (name, value) VALUES ('admission', ?)").run(SCHEMA_VERSION);
  }).immediate();
}
