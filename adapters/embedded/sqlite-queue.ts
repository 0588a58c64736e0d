/**
 * The JobQueue port on SQLite (better-sqlite3): the queue of the local and single-machine
 * deployments, with SQS semantics (leases with visibility timeouts, receive counts, long
 * polling, delays, redrive to a dead-letter queue).
 *
 * One database file, `queues.sqlite` in the directory the composition root chooses, holds
 * any number of named queues ('jobs', 'jobs-dlq', 'webhooks', ...). WAL mode and a busy
 * timeout let several processes (the local server, the runner, the `amdm` CLI) share it; every
 * state change is one short IMMEDIATE transaction, so two receivers never lease one message.
 *
 * Long polling wakes at once for sends made in this process (any SqliteQueue on the same
 * file), at the moment a delayed or leased message becomes visible, and within
 * `pollIntervalMs` of a commit by another process, noticed through PRAGMA data_version, which
 * costs no table read.
 *
 * better-sqlite3 is synchronous: a call blocks the event loop for the few microseconds of a
 * transaction, or up to `busyTimeoutMs` when another process holds the write lock. Sends are
 * group-committed (sqlite-database.ts): every send made in one turn of the event loop, and every
 * write of a SqliteStore in the same file, is inserted by a single transaction just after that
 * turn, so a burst of API requests shares one WAL fsync, and each send still resolves only after
 * its message is durable.
 *
 * Every call that writes (send, a receive that leases, extend, ack, release) rejects with
 * StorageFullError when the disk is full, and its transaction is not made.
 */
import { randomUUID } from 'node:crypto';
import type Database from 'better-sqlite3';
import { LeaseLostError, type JobQueue, type Lease, type QueueStats, type ReceiveOptions } from '../../shared/ports/queue.ts';
import type { CommitLog, StorageObserver } from '../../shared/ports/store.ts';
import {
  checkBody,
  checkExtendSeconds,
  checkLease,
  checkMaxReceives,
  checkQueueName,
  checkReceiveOptions,
  checkReleaseDelay,
  checkSendDelay,
} from '../queue-rules.ts';
import { SharedDatabase, type SqliteWriter } from './sqlite-database.ts';

export const SQLITE_QUEUE_FILE = 'queues.sqlite';
const SCHEMA_VERSION = 1;

export interface SqliteQueueOptions {
  /** directory of the database file; created when missing */
  dir: string;
  /** the queue within the file */
  queue: string;
  /**
   * A message received `maxReceives` times that becomes visible again moves to the queue
   * named `queue` in the same file instead of being delivered (the SQS redrive policy).
   */
  deadLetter?: { queue: string; maxReceives: number };
  /** how often a waiting receive looks for commits by other processes; default 100 ms */
  pollIntervalMs?: number;
  /** how long a statement waits for another process's write lock; default 5000 ms */
  busyTimeoutMs?: number;
  /** where group commits of this file run in this process (sqlite-database.ts); default DEFAULT_SQLITE_WRITER, or the writer of whoever opened the file first here */
  writer?: SqliteWriter;
  /** told when a write finds the disk full, and when one succeeds again (shared/ports/store.ts) */
  storage?: StorageObserver;
}

const INSERT_SQL = 'INSERT INTO messages (id, queue, body, sent_at, visible_at) VALUES (?, ?, ?, ?, ?)';

/**
 * A message id in the UUIDv7 layout: 48 bits of milliseconds, then the random bits of a v4
 * UUID. Ids that grow with time are appended to the end of the unique index on `id`; random
 * v4 ids land on a random leaf each, so a commit of 30 sends rewrote 30 index pages, twice the
 * WAL bytes per job of the whole create (request, message and index entry).
 */
function timeOrderedId(nowMs: number): string {
  const random = randomUUID();
  const t = nowMs.toString(16).padStart(12, '0');
  return `${t.slice(0, 8)}-${t.slice(8, 12)}-7${random.slice(15)}`;
}

const changed = (r: Database.RunResult): boolean => r.changes > 0;

/** Where a message stands in its queue (SqliteQueue.position). */
export interface QueuePosition {
  /** messages delivered before it (visible earlier, ties by send order), up to the cap; null when it is not in the queue */
  ahead: number | null;
  /** messages leased now, up to the cap */
  inFlight: number;
}

interface Row {
  seq: number;
  id: string;
  body: string;
  receive_count: number;
}

/**
 * Waiters per (database file, queue) across every SqliteQueue of this process, so a send on
 * one connection wakes a long poll on another without waiting for the poll interval.
 */
const wakeups = new Map<string, Set<() => void>>();

function wake(channel: string): void {
  const set = wakeups.get(channel);
  if (set) for (const fn of [...set]) fn();
}

export class SqliteQueue implements JobQueue {
  readonly name: string;
  private readonly shared: SharedDatabase;
  private readonly db: Database.Database;
  private readonly channel: string;
  private readonly deadLetter: { queue: string; maxReceives: number; channel: string } | undefined;
  private readonly pollIntervalMs: number;
  private readonly waiters = new Set<() => void>();
  private closed = false;
  /** transactions that committed sends, and the sends they carried; for tests and the bench */
  readonly sendStats = { commits: 0, messages: 0 };
  private lastSendCommit = 0;

  private readonly selectReady: Database.Statement<[string, number, number], Row>;
  private readonly moveToDeadLetter: Database.Statement<[string, number, number]>;
  private readonly lease: Database.Statement<[string, number, number]>;
  private readonly deleteLeased: Database.Statement<[string, string, string]>;
  private readonly setVisibleAt: Database.Statement<[number, string, string, string]>;
  private readonly unlease: Database.Statement<[number, string, string, string]>;
  private readonly nextVisible: Database.Statement<[string, number], { next: number | null }>;
  private readonly count: Database.Statement<[number, number, number, string], QueueStats>;
  private readonly placeById: Database.Statement<[string, string], { visible_at: number; seq: number }>;
  private readonly placeByBody = new Map<number, Database.Statement<string[], { visible_at: number; seq: number }>>();
  private readonly countAhead: Database.Statement<[string, number, number, number, number], { n: number }>;
  private readonly countLeased: Database.Statement<[string, number, number], { n: number }>;
  private readonly receiveTx: (max: number, visibilitySeconds: number) => { leases: Lease[]; moved: boolean };

  constructor(opts: SqliteQueueOptions) {
    if (typeof opts !== 'object' || opts === null) throw new TypeError('SqliteQueue: options are required');
    if (typeof opts.dir !== 'string' || opts.dir === '') {
      throw new TypeError(`SqliteQueue: dir must be a directory path; got ${JSON.stringify(opts.dir)}`);
    }
    this.name = checkQueueName('SqliteQueue', opts.queue);
    this.pollIntervalMs = opts.pollIntervalMs ?? 100;
    if (!Number.isInteger(this.pollIntervalMs) || this.pollIntervalMs < 10 || this.pollIntervalMs > 60_000) {
      throw new RangeError(`SqliteQueue: pollIntervalMs must be an integer from 10 to 60000; got ${String(opts.pollIntervalMs)}`);
    }
    const busyTimeoutMs = opts.busyTimeoutMs ?? 5000;
    if (!Number.isInteger(busyTimeoutMs) || busyTimeoutMs < 0) {
      throw new RangeError(`SqliteQueue: busyTimeoutMs must be a non-negative integer; got ${String(opts.busyTimeoutMs)}`);
    }

    let deadLetter: { queue: string; maxReceives: number } | undefined;
    if (opts.deadLetter !== undefined) {
      const dlq = checkQueueName('SqliteQueue deadLetter', opts.deadLetter.queue);
      if (dlq === this.name) {
        throw new RangeError(`SqliteQueue: deadLetter.queue must differ from the queue itself ("${dlq}")`);
      }
      deadLetter = { queue: dlq, maxReceives: checkMaxReceives('SqliteQueue', opts.deadLetter.maxReceives) };
    }

    // every queue and store on this file in this process shares one connection and one group commit
    this.shared = SharedDatabase.acquire(opts.dir, SQLITE_QUEUE_FILE, {
      busyTimeoutMs,
      ...(opts.writer ? { writer: opts.writer } : {}),
      ...(opts.storage ? { storage: opts.storage } : {}),
    });
    const file = this.shared.file;
    this.db = this.shared.db;
    this.channel = `${file}\0${this.name}`;
    if (deadLetter) this.deadLetter = { ...deadLetter, channel: `${file}\0${deadLetter.queue}` };
    try {
      this.migrate(file);
    } catch (err) {
      void this.shared.release();
      throw err;
    }

    this.selectReady = this.db.prepare(
      `SELECT seq, id, body, receive_count FROM messages
        WHERE queue = ? AND visible_at <= ? ORDER BY visible_at, seq LIMIT ?`,
    );
    this.moveToDeadLetter = this.db.prepare(
      'UPDATE messages SET queue = ?, visible_at = ?, lease_token = NULL WHERE seq = ?',
    );
    this.lease = this.db.prepare(
      'UPDATE messages SET lease_token = ?, visible_at = ?, receive_count = receive_count + 1 WHERE seq = ?',
    );
    this.deleteLeased = this.db.prepare('DELETE FROM messages WHERE id = ? AND queue = ? AND lease_token = ?');
    this.setVisibleAt = this.db.prepare(
      'UPDATE messages SET visible_at = ? WHERE id = ? AND queue = ? AND lease_token = ?',
    );
    this.unlease = this.db.prepare(
      'UPDATE messages SET visible_at = ?, lease_token = NULL WHERE id = ? AND queue = ? AND lease_token = ?',
    );
    this.nextVisible = this.db.prepare(
      'SELECT MIN(visible_at) AS next FROM messages WHERE queue = ? AND visible_at > ?',
    );
    this.count = this.db.prepare(
      `SELECT COALESCE(SUM(visible_at <= ?), 0) AS visible,
              COALESCE(SUM(visible_at > ? AND lease_token IS NOT NULL), 0) AS inFlight,
              COALESCE(SUM(visible_at > ? AND lease_token IS NULL), 0) AS delayed
         FROM messages WHERE queue = ?`,
    );
    this.placeById = this.db.prepare('SELECT visible_at, seq FROM messages WHERE id = ? AND queue = ?');
    // index range scans capped at `max` rows: position() runs on the request path
    this.countAhead = this.db.prepare(
      'SELECT COUNT(*) AS n FROM (SELECT 1 FROM messages WHERE queue = ? AND (visible_at < ? OR (visible_at = ? AND seq < ?)) LIMIT ?)',
    );
    this.countLeased = this.db.prepare(
      'SELECT COUNT(*) AS n FROM (SELECT 1 FROM messages WHERE queue = ? AND visible_at > ? AND lease_token IS NOT NULL LIMIT ?)',
    );

    const receive = this.db.transaction((max: number, visibilitySeconds: number) => {
      const now = Date.now();
      const leases: Lease[] = [];
      let moved = false;
      while (leases.length < max) {
        const rows = this.selectReady.all(this.name, now, max - leases.length);
        if (rows.length === 0) break;
        for (const row of rows) {
          if (this.deadLetter && row.receive_count >= this.deadLetter.maxReceives) {
            // the receive count travels with the message, as on SQS
            this.moveToDeadLetter.run(this.deadLetter.queue, now, row.seq);
            moved = true;
            continue;
          }
          const token = randomUUID();
          this.lease.run(token, now + visibilitySeconds * 1000, row.seq);
          leases.push({ messageId: row.id, body: row.body, receiveCount: row.receive_count + 1, handle: token });
        }
      }
      return { leases, moved };
    });
    // IMMEDIATE takes the write lock before reading, so two processes cannot pick the same row
    this.receiveTx = (max, visibilitySeconds) => receive.immediate(max, visibilitySeconds);
  }

  private migrate(file: string): void {
    this.db
      .transaction(() => {
        const version = this.db.pragma('user_version', { simple: true }) as number;
        if (version === SCHEMA_VERSION) return;
        if (version !== 0) {
          throw new Error(
            `SqliteQueue: ${file} has schema version ${version}; this build reads version ${SCHEMA_VERSION}`,
          );
        }
        this.db.exec(`
          CREATE TABLE messages (
            seq           INTEGER PRIMARY KEY AUTOINCREMENT,
            id            TEXT NOT NULL UNIQUE,
            queue         TEXT NOT NULL,
            body          TEXT NOT NULL,
            sent_at       INTEGER NOT NULL,
            -- ms since the epoch; a message is visible when visible_at <= now
            visible_at    INTEGER NOT NULL,
            receive_count INTEGER NOT NULL DEFAULT 0,
            -- the latest lease; kept after the lease runs out so a late ack still works
            -- until someone else receives the message
            lease_token   TEXT
          ) STRICT;
          CREATE INDEX messages_by_visibility ON messages (queue, visible_at, seq);
        `);
        this.db.pragma(`user_version = ${SCHEMA_VERSION}`);
      })
      .immediate();
  }

  /** Sends join the group commit of the database file, shared with the SQLite store in it. */
  commitLog(): CommitLog {
    return this.shared;
  }

  async send(body: string, opts?: { delaySeconds?: number }): Promise<string> {
    this.checkOpen();
    checkBody(body);
    const delaySeconds = checkSendDelay(opts?.delaySeconds);
    const now = Date.now();
    const id = timeOrderedId(now);
    // joins the group commit after this turn; a failure there fails every write of that commit
    const commit = await this.shared.write([{ sql: INSERT_SQL, params: [id, this.name, body, now, now + delaySeconds * 1000] }]);
    if (commit !== this.lastSendCommit) {
      this.lastSendCommit = commit;
      this.sendStats.commits++;
    }
    this.sendStats.messages++;
    wake(this.channel);
    return id;
  }

  async receive(opts: ReceiveOptions): Promise<Lease[]> {
    this.checkOpen();
    const { max, waitSeconds, visibilitySeconds, signal } = checkReceiveOptions(opts);
    const deadline = Date.now() + waitSeconds * 1000;
    for (;;) {
      if (signal?.aborted || this.closed) return [];
      // read before receiving: a commit by another process after this point wakes the wait
      const version = this.dataVersion();
      const { leases, moved } = this.shared.writeNow(() => this.receiveTx(max, visibilitySeconds), (r) => r.leases.length > 0 || r.moved);
      if (moved && this.deadLetter) wake(this.deadLetter.channel);
      if (leases.length > 0) {
        // waiters of this queue must re-plan around the new lease expiries
        wake(this.channel);
        return leases;
      }
      const now = Date.now();
      if (now >= deadline) return [];
      const next = this.nextVisible.get(this.name, now)?.next ?? Infinity;
      await this.waitForChange(Math.min(deadline, next), version, signal);
    }
  }

  async extend(lease: Lease, visibilitySeconds: number): Promise<void> {
    this.checkOpen();
    checkLease('extend', lease);
    const seconds = checkExtendSeconds(visibilitySeconds);
    const { changes } = this.shared.writeNow(() => this.setVisibleAt.run(Date.now() + seconds * 1000, lease.messageId, this.name, lease.handle), changed);
    if (changes === 0) throw new LeaseLostError(lease.messageId);
    wake(this.channel);
  }

  /**
   * Succeeds while the lease is the message's latest one, even after it ran out, as long as no
   * other receiver has leased the message since: nobody else is working on it.
   */
  async ack(lease: Lease): Promise<void> {
    this.checkOpen();
    checkLease('ack', lease);
    const { changes } = this.shared.writeNow(() => this.deleteLeased.run(lease.messageId, this.name, lease.handle), changed);
    if (changes === 0) throw new LeaseLostError(lease.messageId);
  }

  async release(lease: Lease, delaySeconds?: number): Promise<void> {
    this.checkOpen();
    checkLease('release', lease);
    const delay = checkReleaseDelay(delaySeconds);
    const { changes } = this.shared.writeNow(() => this.unlease.run(Date.now() + delay * 1000, lease.messageId, this.name, lease.handle), changed);
    if (changes === 0) throw new LeaseLostError(lease.messageId);
    wake(this.channel);
  }

  /**
   * A message released with a delay counts as `delayed` (nobody holds it). A message due for
   * the dead-letter queue counts as `visible` until a receive moves it, as on SQS.
   */
  async stats(): Promise<QueueStats> {
    this.checkOpen();
    const now = Date.now();
    const row = this.count.get(now, now, now, this.name)!;
    return { visible: row.visible, inFlight: row.inFlight, delayed: row.delayed };
  }

  /**
   * Where a message of this queue stands: how many messages are delivered before it and how
   * many are leased now, each counted up to `max`. The message is named by its id, or, when
   * the caller does not know the id (another process sent it), by strings its body contains
   * (the first message that has them all). Reads only, on this connection.
   */
  position(message: { id: string } | { bodyContains: readonly [string, ...string[]] }, max: number): QueuePosition {
    this.checkOpen();
    if (!Number.isInteger(max) || max < 1) throw new RangeError(`SqliteQueue.position: max must be a positive integer; got ${String(max)}`);
    const now = Date.now();
    const row = 'id' in message ? this.placeById.get(message.id, this.name) : this.findByBody(message.bodyContains);
    const inFlight = this.countLeased.get(this.name, now, max)?.n ?? 0;
    if (!row) return { ahead: null, inFlight };
    return { ahead: this.countAhead.get(this.name, row.visible_at, row.visible_at, row.seq, max)?.n ?? 0, inFlight };
  }

  private findByBody(parts: readonly string[]): { visible_at: number; seq: number } | undefined {
    let find = this.placeByBody.get(parts.length);
    if (!find) {
      const likes = parts.map(() => "body LIKE ? ESCAPE '\\'").join(' AND ');
      find = this.db.prepare(`SELECT visible_at, seq FROM messages WHERE queue = ? AND ${likes} LIMIT 1`);
      this.placeByBody.set(parts.length, find);
    }
    const like = (p: string) => `%${p.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
    return find.get(this.name, ...parts.map(like));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const done of [...this.waiters]) done();
    // sends already accepted are committed, not dropped
    await this.shared.release();
  }

  private dataVersion(): number {
    return this.db.pragma('data_version', { simple: true }) as number;
  }

  private waitForChange(wakeAt: number, version: number, signal: AbortSignal | undefined): Promise<void> {
    return new Promise((resolve) => {
      let listeners = wakeups.get(this.channel);
      if (!listeners) wakeups.set(this.channel, (listeners = new Set()));
      const set = listeners;
      const done = (): void => {
        clearTimeout(timer);
        clearInterval(poll);
        set.delete(done);
        if (set.size === 0 && wakeups.get(this.channel) === set) wakeups.delete(this.channel);
        this.waiters.delete(done);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, Math.max(0, wakeAt - Date.now()));
      const poll = setInterval(() => {
        if (this.closed || this.dataVersion() !== version) done();
      }, this.pollIntervalMs);
      set.add(done);
      this.waiters.add(done);
      signal?.addEventListener('abort', done, { once: true });
    });
  }

  private checkOpen(): void {
    if (this.closed) throw new Error(`SqliteQueue "${this.name}" is closed`);
  }
}
