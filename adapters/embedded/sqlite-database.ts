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
 * A full disk (SQLITE_FULL) rejects the writes of that commit with StorageFullError, naming the
 * file; nothing of them is committed. Observers given at acquire() hear of it, and of the next
 * commit that succeeds.
 */
import { mkdirSync, realpathSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import Database from 'better-sqlite3';
import type { StorageObserver } from '../../shared/ports/store.ts';
import { asStorageFull } from './storage-full.ts';

/** A value better-sqlite3 binds: strings, numbers and bigints, bytes (as a Buffer), null. */
export type SqlValue = string | number | bigint | Buffer | null;

/** One statement of a group commit. The same SQL text reuses one prepared statement. */
export interface WriteOp {
  sql: string;
  params: SqlValue[];
}

export type SqliteWriter = 'inline' | 'thread';

export interface SharedDatabaseOptions {
  /** how long a statement waits for another process's write lock; default 5000 ms */
  busyTimeoutMs?: number;
  /** where group commits run (see above); default 'inline'. The first opener of a file decides. */
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

type FromWriter =
  | { batches: number[]; commit: number }
  | { batches: number[]; error: { name: string; message: string; code?: string } }
  | { closed: true };

const WRITER_THREAD = new URL('./sqlite-writer-thread.mjs', import.meta.url);
const DRIVER = createRequire(import.meta.url).resolve('better-sqlite3');

/** Open files of this process, by real path: every adapter on one file shares its handle. */
const open = new Map<string, SharedDatabase>();

export class SharedDatabase {
  readonly file: string;
  readonly writer: SqliteWriter;
  /** the connection for reads, schema migrations and the callers' own short transactions */
  readonly db: Database.Database;
  readonly stats: GroupCommitStats = { commits: 0, ops: 0 };
  private readonly busyTimeoutMs: number;
  private users = 0;
  private readonly observers = new Set<StorageObserver>();
  /** writes made in this turn of the event loop */
  private pending: PendingWrite[] = [];
  private closing: Promise<void> | null = null;
  // inline writer
  private readonly statements = new Map<string, Database.Statement>();
  private readonly commitTx: (batch: PendingWrite[]) => void;
  // thread writer
  private worker: Worker | null = null;
  private readonly inFlight = new Map<number, PendingWrite[]>();
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
    const writer = opts.writer ?? 'inline';
    if (writer !== 'inline' && writer !== 'thread') throw new RangeError(`writer must be "inline" or "thread"; got ${JSON.stringify(opts.writer)}`);
    mkdirSync(dir, { recursive: true });
    const file = join(realpathSync(dir), name);
    let shared = open.get(file);
    if (!shared || shared.users === 0) {
      shared = new SharedDatabase(file, busyTimeoutMs, writer);
      open.set(file, shared);
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
      if (this.pending.length === 1) setImmediate(() => this.dispatch());
    });
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
    try {
      this.commitTx(batch);
    } catch (err) {
      const failure = this.fullOr(err);
      for (const w of batch) w.reject(failure);
      return;
    }
    this.committed(batch);
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

  private committed(batch: PendingWrite[]): void {
    this.roomAgain();
    const commit = ++this.stats.commits;
    for (const w of batch) {
      this.stats.ops += w.ops.length;
      w.resolve(commit);
    }
  }

  private post(batch: PendingWrite[]): void {
    const worker = this.worker ?? this.spawn();
    const id = this.nextBatch++;
    this.inFlight.set(id, batch);
    // a thread with writes in flight keeps the process alive until they are durable
    worker.ref();
    worker.postMessage({ batch: id, ops: batch.length === 1 ? batch[0]!.ops : batch.flatMap((w) => w.ops) });
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
      for (const batch of batches) for (const w of batch) w.reject(err);
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
      for (const batch of batches) for (const w of batch) w.reject(err);
      return;
    }
    this.committed(batches.flat());
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
