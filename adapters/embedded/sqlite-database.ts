/**
 * One SQLite database file as the embedded adapters share it within a process: the SQLite
 * queues and the SQLite store that live in one file use one connection for their reads and
 * short transactions, and one group commit for their writes. A turn of the event loop in which
 * the edge stores a request, sends the queue message of an earlier request and writes the
 * index entry of a third then costs one transaction and one WAL fsync, not three.
 *
 * Several processes share the file (the server, runner processes, the `amdm keys` CLI): WAL
 * mode lets readers run beside the one writer, and a busy timeout makes a writer wait for
 * another process's transaction instead of failing. synchronous=FULL: a write resolves only
 * once its commit is on disk, so it survives a power cut, not only a crash.
 *
 * better-sqlite3 is synchronous. Reads take microseconds on the caller's turn. Writes are
 * queued and committed together just after the turn in which they were made (setImmediate);
 * the commit blocks the event loop for the inserts plus the WAL fsync.
 */
import { mkdirSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';

/** A value better-sqlite3 binds: strings, numbers and bigints, bytes (as a Buffer), null. */
export type SqlValue = string | number | bigint | Buffer | null;

/** One statement of a group commit. The same SQL text reuses one prepared statement. */
export interface WriteOp {
  sql: string;
  params: SqlValue[];
}

export interface SharedDatabaseOptions {
  /** how long a statement waits for another process's write lock; default 5000 ms */
  busyTimeoutMs?: number;
}

/** Counters of the group commit since the file was opened in this process; for tests and the bench. */
export interface GroupCommitStats {
  /** transactions committed */
  commits: number;
  /** statements they carried */
  ops: number;
}

interface PendingWrite {
  ops: WriteOp[];
  resolve: (commit: number) => void;
  reject: (err: unknown) => void;
}

/** Open files of this process, by real path: every adapter on one file shares its handle. */
const open = new Map<string, SharedDatabase>();

export class SharedDatabase {
  readonly file: string;
  /** the connection for reads, schema migrations and the callers' own short transactions */
  readonly db: Database.Database;
  readonly stats: GroupCommitStats = { commits: 0, ops: 0 };
  private users = 0;
  private pending: PendingWrite[] = [];
  private readonly statements = new Map<string, Database.Statement>();
  private readonly commitTx: (batch: PendingWrite[]) => void;

  /**
   * The file `name` in `dir` (created when missing), shared with every other user of it in
   * this process. Each acquire() needs one release().
   */
  static acquire(dir: string, name: string, opts: SharedDatabaseOptions = {}): SharedDatabase {
    const busyTimeoutMs = opts.busyTimeoutMs ?? 5000;
    if (!Number.isInteger(busyTimeoutMs) || busyTimeoutMs < 0) {
      throw new RangeError(`busyTimeoutMs must be a non-negative integer; got ${String(opts.busyTimeoutMs)}`);
    }
    mkdirSync(dir, { recursive: true });
    const file = join(realpathSync(dir), name);
    let shared = open.get(file);
    if (!shared) {
      shared = new SharedDatabase(file, busyTimeoutMs);
      open.set(file, shared);
    }
    shared.users++;
    return shared;
  }

  private constructor(file: string, busyTimeoutMs: number) {
    this.file = file;
    this.db = new Database(file, { timeout: busyTimeoutMs });
    try {
      this.db.pragma('journal_mode = WAL');
      // FULL: a write acknowledged to an API client survives a power cut, not only a crash
      this.db.pragma('synchronous = FULL');
    } catch (err) {
      this.db.close();
      throw err;
    }
    const run = this.db.transaction((batch: PendingWrite[]) => {
      for (const w of batch) for (const op of w.ops) this.statement(op.sql).run(...op.params);
    });
    // IMMEDIATE: take the write lock first, so a busy file is waited for, not failed mid-way
    this.commitTx = (batch) => run.immediate(batch);
  }

  /**
   * Runs the statements in the group commit that follows this turn of the event loop, in
   * order, after every write queued before them. Resolves with the number of the commit that
   * made them durable. A failure (disk full, another process holding the lock past the busy
   * timeout) rejects every write of that commit: none of them was committed.
   */
  write(ops: WriteOp[]): Promise<number> {
    return new Promise((resolve, reject) => {
      if (this.users === 0) throw new Error(`${this.file} is closed`);
      this.pending.push({ ops, resolve, reject });
      // after the I/O callbacks of this turn: every request parsed in it joins the transaction
      if (this.pending.length === 1) setImmediate(() => this.commit());
    });
  }

  /** Commits what is pending now; each pending write settles before this returns. */
  flush(): void {
    this.commit();
  }

  /** Gives up one acquire(); the last one commits what is pending and closes the file. */
  release(): void {
    if (this.users === 0) return;
    if (--this.users > 0) return;
    this.commit();
    open.delete(this.file);
    this.db.close();
  }

  private commit(): void {
    const batch = this.pending;
    if (batch.length === 0) return;
    this.pending = [];
    try {
      this.commitTx(batch);
    } catch (err) {
      for (const w of batch) w.reject(err);
      return;
    }
    const commit = ++this.stats.commits;
    for (const w of batch) {
      this.stats.ops += w.ops.length;
      w.resolve(commit);
    }
  }

  private statement(sql: string): Database.Statement {
    let s = this.statements.get(sql);
    if (!s) {
      s = this.db.prepare(sql);
      this.statements.set(sql, s);
    }
    return s;
  }
}
