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
 * queued and committed together just after the turn in which they were made (setImmediate),
 * by one of two writers:
 * - 'inline': the transaction runs on the event loop, which it blocks for the inserts, the
 *   WAL fsync and, every thousand pages, a checkpoint (milliseconds, tens at the tail);
 * - 'thread': the transaction runs in a worker thread (sqlite-writer-thread.mjs) with its own
 *   connection, and the event loop goes on parsing requests meanwhile; batches that arrive
 *   while one commits are committed together next.
 * Either way a write resolves only once it is durable.
 *
 * Units. The writes made inside `unit(fn)` commit in the same transaction, or none of them:
 * a write of the unit whose statement is a guard (`WriteOp.guard`) and changes no row rolls
 * the unit back to where it began (a savepoint) and rejects every write of it with
 * UnitRefusedError, while the other writes of the group commit go on. The single node's
 * admission of a job (sqlite-admission.ts) is such a guard: a create at the tenant's cap
 * commits nothing of itself.
 *
 * A full disk (SQLITE_FULL) rejects the writes of that commit with StorageFullError, naming the
 * file; nothing of them is committed. Observers given at acquire() hear of it, and of the next
 * commit that succeeds.
 */
import { mkdirSync, realpathSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import Database from 'better-sqlite3';
import type { CommitLog } from '../../shared/ports/store.ts';
import type { StorageObserver } from '../../shared/ports/store.ts';
import { asStorageFull } from './storage-full.ts';

/** A value better-sqlite3 binds: strings, numbers and bigints, bytes (as a Buffer), null. */
export type SqlValue = string | number | bigint | Buffer | null;

/** One statement of a group commit. The same SQL text reuses one prepared statement. */
export interface WriteOp {
  sql: string;
  params: SqlValue[];
  /** when this statement changes no row, nothing of its unit is committed (see above) */
  guard?: boolean;
}

/** A write that was not committed because a guard of its unit changed no row. */
export class UnitRefusedError extends Error {
  constructor() {
    super('not committed: a guarded write of the same unit was refused');
    this.name = 'UnitRefusedError';
  }
}

export type SqliteWriter = 'inline' | 'thread';

/**
 * The writer of a file whose first opener names none: the one the single node's server and
 * runners use. bench:edge, embedded adapters, two runs each on a quiet machine: 1895 and 1764
 * creates/s with p99 107 and 110 ms in the thread, against 1714 and 1590 with p99 156 and
 * 168 ms inline, whose WAL fsync holds the event loop. A process that only makes a short
 * write and exits (the `amdm keys` CLI) asks for 'inline'.
 */
export const DEFAULT_SQLITE_WRITER: SqliteWriter = 'thread';

export interface SharedDatabaseOptions {
  /** how long a statement waits for another process's write lock; default 5000 ms */
  busyTimeoutMs?: number;
  /**
   * where group commits run (see above); default DEFAULT_SQLITE_WRITER. The first opener of a
   * file in a process decides; a later one that names another writer is refused.
   */
  writer?: SqliteWriter;
  /** told when a write finds the disk full, and when one succeeds again (shared/ports/store.ts) */
  storage?: StorageObserver;
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

/** Writes that commit together or not at all: one write() call, or every write of a unit(). */
interface Unit {
  writes: PendingWrite[];
  guarded: boolean;
}

/** What the writer thread gets per unit (sqlite-writer-thread.mjs). */
export interface UnitMessage {
  ops: WriteOp[];
  guarded: boolean;
}

type FromWriter =
  | { batches: number[]; commit: number; refused: [batch: number, unit: number][] }
  | { batches: number[]; error: { name: string; message: string; code?: string } }
  | { closed: true };

const WRITER_THREAD = new URL('./sqlite-writer-thread.mjs', import.meta.url);
const DRIVER = createRequire(import.meta.url).resolve('better-sqlite3');

/** Thrown inside a unit's savepoint when a guard changed no row. */
const REFUSED = Symbol('refused');

/** Open files of this process, by real path: every adapter on one file shares its handle. */
const open = new Map<string, SharedDatabase>();

export class SharedDatabase implements CommitLog {
  readonly file: string;
  readonly writer: SqliteWriter;
  /** the connection for reads, schema migrations and the callers' own short transactions */
  readonly db: Database.Database;
  readonly stats: GroupCommitStats = { commits: 0, ops: 0 };
  private readonly busyTimeoutMs: number;
  private users = 0;
  private readonly observers = new Set<StorageObserver>();
  /** writes made in this turn of the event loop */
  private pending: Unit[] = [];
  /** the unit whose fn is running: write() adds to it */
  private collecting: Unit | null = null;
  private closing: Promise<void> | null = null;
  // inline writer
  private readonly statements = new Map<string, Database.Statement>();
  private readonly commitTx: (batch: Unit[]) => number[];
  // thread writer
  private worker: Worker | null = null;
  private readonly inFlight = new Map<number, Unit[]>();
  private nextBatch = 1;
  private onWorkerClosed: (() => void) | null = null;

  /**
   * The file `name` in `dir` (created when missing), shared with every other user of it in
   * this process. Each acquire() needs one release().
   */
  static acquire(dir: string, name: string, opts: SharedDatabaseOptions = {}): SharedDatabase {
    const busyTimeoutMs = opts.busyTimeoutMs ?? 5000;
    if (!Number.isInteger(busyTimeoutMs) || busyTimeoutMs < 0) {
      throw new RangeError(`busyTimeoutMs must be a non-negative integer; got ${String(opts.busyTimeoutMs)}`);
    }
    if (opts.writer !== undefined && opts.writer !== 'inline' && opts.writer !== 'thread') {
      throw new RangeError(`writer must be "inline" or "thread"; got ${JSON.stringify(opts.writer)}`);
    }
    mkdirSync(dir, { recursive: true });
    const file = join(realpathSync(dir), name);
    let shared = open.get(file);
    if (!shared || shared.users === 0) {
      shared = new SharedDatabase(file, busyTimeoutMs, opts.writer ?? DEFAULT_SQLITE_WRITER);
      open.set(file, shared);
    } else if (opts.writer !== undefined && opts.writer !== shared.writer) {
      // one group commit per file and process: it cannot run in both places
      throw new Error(`${file} is already open in this process with the "${shared.writer}" writer; this opener asked for "${opts.writer}" (name the same writer, or none)`);
    }
    shared.users++;
    if (opts.storage) shared.observers.add(opts.storage);
    return shared;
  }

  private constructor(file: string, busyTimeoutMs: number, writer: SqliteWriter) {
    this.file = file;
    this.writer = writer;
    this.busyTimeoutMs = busyTimeoutMs;
    this.db = new Database(file, { timeout: busyTimeoutMs });
    try {
      this.db.pragma('journal_mode = WAL');
      // FULL: a write acknowledged to an API client survives a power cut, not only a crash
      this.db.pragma('synchronous = FULL');
    } catch (err) {
      this.db.close();
      throw err;
    }
    // a nested transaction is a savepoint: throwing rolls back the unit alone
    const guarded = this.db.transaction((ops: WriteOp[]) => {
      for (const op of ops) {
        const { changes } = this.statement(op.sql).run(...op.params);
        if (op.guard && changes === 0) throw REFUSED;
      }
    });
    const run = this.db.transaction((batch: Unit[]) => {
      const refused: number[] = [];
      for (const [i, u] of batch.entries()) {
        if (!u.guarded) {
          for (const w of u.writes) for (const op of w.ops) this.statement(op.sql).run(...op.params);
          continue;
        }
        try {
          guarded(u.writes.flatMap((w) => w.ops));
        } catch (err) {
          if (err !== REFUSED) throw err;
          refused.push(i);
        }
      }
      return refused;
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
      const w: PendingWrite = { ops, resolve, reject };
      const guarded = ops.some((op) => op.guard === true);
      if (this.collecting) {
        this.collecting.writes.push(w);
        this.collecting.guarded ||= guarded;
        return;
      }
      this.enqueue({ writes: [w], guarded });
    });
  }

  /**
   * Runs `fn`; the writes to this file that it makes before returning (any adapter's) form
   * one unit: committed in one transaction, in order, or none of them when one of their
   * guards changes no row (then each rejects with UnitRefusedError). A unit inside a unit
   * joins the outer one.
   */
  unit<T>(fn: () => T): T {
    if (this.collecting) return fn();
    const u: Unit = { writes: [], guarded: false };
    this.collecting = u;
    try {
      return fn();
    } finally {
      this.collecting = null;
      if (u.writes.length > 0) this.enqueue(u);
    }
  }

  private enqueue(u: Unit): void {
    this.pending.push(u);
    // after the I/O callbacks of this turn: every request parsed in it joins the transaction
    if (this.pending.length === 1) setImmediate(() => this.dispatch());
  }

  /**
   * Gives up one acquire(); the last one commits what is pending, waits for the writer and
   * closes the file.
   */
  release(): Promise<void> {
    if (this.users === 0) return this.closing ?? Promise.resolve();
    if (--this.users > 0) return Promise.resolve();
    open.delete(this.file);
    this.dispatch();
    this.closing = (async () => {
      if (this.worker) {
        const worker = this.worker;
        await new Promise<void>((resolve) => {
          this.onWorkerClosed = resolve;
          worker.ref();
          worker.postMessage({ close: true });
        });
        await worker.terminate();
      }
      this.db.close();
    })();
    return this.closing;
  }

  private dispatch(): void {
    const batch = this.pending;
    if (batch.length === 0) return;
    this.pending = [];
    if (this.writer === 'thread') return this.post(batch);
    let refused: number[];
    try {
      refused = this.commitTx(batch);
    } catch (err) {
      const failure = this.fullOr(err);
      for (const u of batch) for (const w of u.writes) w.reject(failure);
      return;
    }
    this.committed(batch, new Set(refused));
  }

  /**
   * Runs a write of the caller's own on this connection (a queue's lease, ack or release),
   * turning a full disk into StorageFullError. `wrote` tells whether it changed anything, so
   * only a real write reports that the disk has room again.
   */
  writeNow<T>(fn: () => T, wrote: (result: T) => boolean): T {
    let result: T;
    try {
      result = fn();
    } catch (err) {
      throw this.fullOr(err);
    }
    if (wrote(result)) this.roomAgain();
    return result;
  }

  /** A full disk as StorageFullError (observers told), any other error as it is. */
  private fullOr(err: unknown): unknown {
    const full = asStorageFull(err, this.file);
    if (!full) return err;
    for (const o of this.observers) o.full(full);
    return full;
  }

  private roomAgain(): void {
    for (const o of this.observers) o.room(this.file);
  }

  /** Settles a committed batch; the units at the `refused` indices committed nothing. */
  private committed(batch: Unit[], refused: ReadonlySet<number>): void {
    this.roomAgain();
    const commit = ++this.stats.commits;
    for (const [i, u] of batch.entries()) {
      if (refused.has(i)) {
        for (const w of u.writes) w.reject(new UnitRefusedError());
        continue;
      }
      for (const w of u.writes) {
        this.stats.ops += w.ops.length;
        w.resolve(commit);
      }
    }
  }

  private post(batch: Unit[]): void {
    const worker = this.worker ?? this.spawn();
    const id = this.nextBatch++;
    this.inFlight.set(id, batch);
    // a thread with writes in flight keeps the process alive until they are durable
    worker.ref();
    const units: UnitMessage[] = batch.map((u) => ({ ops: u.writes.length === 1 ? u.writes[0]!.ops : u.writes.flatMap((w) => w.ops), guarded: u.guarded }));
    worker.postMessage({ batch: id, units });
  }

  private spawn(): Worker {
    const worker = new Worker(WRITER_THREAD, {
      name: 'amdm-sqlite-writer',
      workerData: { file: this.file, busyTimeoutMs: this.busyTimeoutMs, driver: DRIVER },
    });
    worker.on('message', (m: FromWriter) => this.onWriterMessage(m));
    const fail = (err: Error) => {
      if (this.worker === worker) this.worker = null;
      const batches = [...this.inFlight.values()];
      this.inFlight.clear();
      for (const batch of batches) for (const u of batch) for (const w of u.writes) w.reject(err);
      this.onWorkerClosed?.();
    };
    worker.on('error', (err) => fail(err));
    worker.on('exit', (code) => fail(new Error(`the SQLite writer thread of ${this.file} exited with code ${code}`)));
    this.worker = worker;
    return worker;
  }

  private onWriterMessage(m: FromWriter): void {
    if ('closed' in m) {
      this.onWorkerClosed?.();
      return;
    }
    const batches = m.batches.map((id) => {
      const batch = this.inFlight.get(id) ?? [];
      this.inFlight.delete(id);
      return batch;
    });
    if (this.inFlight.size === 0) this.worker?.unref();
    if ('error' in m) {
      const err = this.fullOr(Object.assign(new Error(m.error.message), { name: m.error.name, code: m.error.code }));
      for (const batch of batches) for (const u of batch) for (const w of u.writes) w.reject(err);
      return;
    }
    // the units of all these batches, in order, with the refused ones by their place in it
    const units: Unit[] = [];
    const refused = new Set<number>();
    const offsets = new Map<number, number>();
    for (const [k, id] of m.batches.entries()) {
      offsets.set(id, units.length);
      units.push(...batches[k]!);
    }
    for (const [id, unit] of m.refused) refused.add(offsets.get(id)! + unit);
    this.committed(units, refused);
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
