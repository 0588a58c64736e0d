/**
 * The ObjectStore port in a SQLite table: one row per object (key, content type, body). The
 * single node keeps its small records here (job requests, statuses, index entries, claims,
 * API keys, usage; see split-store.ts), because a put is then a row in a group commit rather
 * than a new file, a new directory and three fsyncs. Same contract as S3
 * (test/conformance/store.case.ts), on its own or behind the split store.
 *
 * The table lives in a database file the composition root chooses; the single node shares the
 * queues' file (sqlite-database.ts), so the puts and the queue sends of one turn of the event
 * loop are one transaction. Keys are TEXT compared with SQLite's BINARY collation, which is
 * memcmp of their UTF-8 bytes: the byte order S3 lists in, with no sorting in JavaScript.
 *
 * Durability: a put or a delete resolves once its transaction is committed with
 * synchronous=FULL (WAL fsync'd), so it survives a kill -9 and a power cut. A reader sees the
 * old or the new object, never a mix. Reads run on the caller's turn, in microseconds. On a
 * full disk the put or delete rejects with StorageFullError and its transaction is not made.
 *
 * Signed URLs are the embedded HMAC URLs (shared/signed-url.ts), served by the local edge.
 */
import Database from 'better-sqlite3';
import type { CommitLog, ListResult, ObjectStore, StorageObserver, StoredObject } from '../../shared/ports/store.ts';
import { BlobUrlSigner, type BlobSigningOptions } from '../blob-url-signer.ts';
import { checkBodyType, checkContentType, checkKey, checkListOptions, compareUtf8 } from '../store-rules.ts';
import { SharedDatabase, type GroupCommitStats, type SqliteWriter } from './sqlite-database.ts';

export const SQLITE_STORE_FILE = 'store.sqlite';
/** Version of the `objects` table, kept in `store_meta` (the file's user_version belongs to the queues). */
const SCHEMA_VERSION = 1;

export interface SqliteStoreOptions {
  /** directory of the database file; created when missing */
  dir: string;
  /** the database file in `dir`; default store.sqlite. The single node shares the queues' file. */
  file?: string;
  signing: BlobSigningOptions;
  /** clock for URL expiry, in ms; tests may pin it */
  now?: () => number;
  /** how long a statement waits for another process's write lock; default 5000 ms */
  busyTimeoutMs?: number;
  /** where group commits of this file run in this process (sqlite-database.ts); default DEFAULT_SQLITE_WRITER, or the writer of whoever opened the file first here */
  writer?: SqliteWriter;
  /** told when a write finds the disk full, and when one succeeds again (shared/ports/store.ts) */
  storage?: StorageObserver;
}

const PUT_SQL =
  'INSERT INTO objects (key, content_type, body) VALUES (?, ?, ?) ' +
  'ON CONFLICT (key) DO UPDATE SET content_type = excluded.content_type, body = excluded.body';
const DELETE_SQL = 'DELETE FROM objects WHERE key = ?';
/** Above every byte of UTF-8, so prefix‖0xFF bounds the keys that start with the prefix. */
const BEYOND_UTF8 = Buffer.of(0xff);
const LONE_SURROGATE = /\p{Cs}/u;

export class SqliteStore implements ObjectStore {
  private readonly shared: SharedDatabase;
  private readonly signer: BlobUrlSigner;
  private readonly now: () => number;
  private readonly selectOne: Database.Statement<[string], { content_type: string; body: Buffer }>;
  /** [lower bound inclusive?][upper bound present?] */
  private readonly pages: Record<'after' | 'from', Record<'bounded' | 'open', Database.Statement<SqlListArgs, { key: string }>>>;
  private closed = false;

  constructor(opts: SqliteStoreOptions) {
    if (typeof opts !== 'object' || opts === null) throw new TypeError('SqliteStore: options are required');
    if (typeof opts.dir !== 'string' || opts.dir === '') {
      throw new TypeError(`SqliteStore: dir must be a directory path; got ${JSON.stringify(opts.dir)}`);
    }
    const file = opts.file ?? SQLITE_STORE_FILE;
    if (typeof file !== 'string' || !/^[A-Za-z0-9._-]{1,255}$/.test(file) || file.startsWith('.')) {
      throw new TypeError(`SqliteStore: file must be a plain file name such as "store.sqlite"; got ${JSON.stringify(opts.file)}`);
    }
    this.signer = new BlobUrlSigner('SqliteStore', opts.signing);
    this.now = opts.now ?? Date.now;
    this.shared = SharedDatabase.acquire(opts.dir, file, {
      ...(opts.busyTimeoutMs !== undefined ? { busyTimeoutMs: opts.busyTimeoutMs } : {}),
      ...(opts.writer !== undefined ? { writer: opts.writer } : {}),
      ...(opts.storage ? { storage: opts.storage } : {}),
    });
    const db = this.shared.db;
    try {
      migrate(db, this.shared.file);
      this.selectOne = db.prepare('SELECT content_type, body FROM objects WHERE key = ?');
      const page = (lower: string, upper: string) =>
        db.prepare<SqlListArgs, { key: string }>(`SELECT key FROM objects WHERE ${lower}${upper} ORDER BY key LIMIT ?`);
      // one lower bound each, so SQLite seeks the index to it; CAST keeps the 0xFF bound TEXT
      this.pages = {
        after: { bounded: page('key > ?', ' AND key < CAST(? AS TEXT)'), open: page('key > ?', ' AND ? IS NULL') },
        from: { bounded: page('key >= ?', ' AND key < CAST(? AS TEXT)'), open: page('key >= ?', ' AND ? IS NULL') },
      };
    } catch (err) {
      void this.shared.release();
      throw err;
    }
  }

  /** The group commit of the database file (shared with the queues when they live in it). */
  get commitStats(): Readonly<GroupCommitStats> {
    return { ...this.shared.stats };
  }

  /** Every key's writes join the group commit of the database file, which the queues in it share. */
  commitLog(): CommitLog {
    return this.shared;
  }

  async put(key: string, body: Uint8Array | string, contentType?: string): Promise<void> {
    this.checkOpen();
    checkKey(key);
    const type = checkContentType(contentType);
    // text is encoded once; bytes are copied, since the row is written after this turn and
    // the caller may reuse its buffer meanwhile
    const bytes = typeof body === 'string' ? Buffer.from(body, 'utf8') : Buffer.from(checkBodyType(body));
    await this.shared.write([{ sql: PUT_SQL, params: [key, type, bytes] }]);
  }

  async get(key: string): Promise<StoredObject | null> {
    this.checkOpen();
    checkKey(key);
    const row = this.selectOne.get(key);
    if (!row) return null;
    // better-sqlite3 hands out a fresh Buffer per read; a plain Uint8Array view of it
    return { body: new Uint8Array(row.body.buffer, row.body.byteOffset, row.body.byteLength), contentType: row.content_type };
  }

  async delete(key: string): Promise<void> {
    this.checkOpen();
    checkKey(key);
    // committed like a put: a revoked API key must not come back after a power cut
    await this.shared.write([{ sql: DELETE_SQL, params: [key] }]);
  }

  async list(prefix: string, opts?: { cursor?: string | null; limit?: number }): Promise<ListResult> {
    this.checkOpen();
    const { cursor, limit } = checkListOptions(prefix, opts);
    // no key holds a lone surrogate (checkKey), and binding one would turn it into U+FFFD
    if (LONE_SURROGATE.test(prefix)) return { keys: [], cursor: null };
    // start after the cursor when it lies inside or beyond the prefix's range, else at the prefix
    const after = cursor !== null && compareUtf8(cursor, prefix) >= 0;
    const upper = prefix === '' ? null : Buffer.concat([Buffer.from(prefix, 'utf8'), BEYOND_UTF8]);
    const statement = this.pages[after ? 'after' : 'from'][upper === null ? 'open' : 'bounded'];
    // one key beyond the page tells whether there is a next page
    const rows = statement.all(after ? cursor! : prefix, upper, limit + 1);
    const keys = rows.slice(0, limit).map((r) => r.key);
    return { keys, cursor: rows.length > limit ? keys[keys.length - 1]! : null };
  }

  async signedGetUrl(key: string, ttlSeconds: number): Promise<string> {
    this.checkOpen();
    return this.signer.sign('GET', key, ttlSeconds, this.now());
  }

  async signedPutUrl(key: string, ttlSeconds: number, contentType: string): Promise<string> {
    this.checkOpen();
    // the HMAC URL does not bind the content type; the blob route stores the request's Content-Type
    checkContentType(contentType);
    return this.signer.sign('PUT', key, ttlSeconds, this.now());
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // puts already accepted are committed, not dropped
    await this.shared.release();
  }

  private checkOpen(): void {
    if (this.closed) throw new Error('SqliteStore is closed');
  }
}

type SqlListArgs = [string, Buffer | null, number];

function migrate(db: Database.Database, file: string): void {
  db.transaction(() => {
    db.exec('CREATE TABLE IF NOT EXISTS store_meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) STRICT');
    const row = db.prepare<[], { value: number }>("SELECT value FROM store_meta WHERE name = 'schema'").get();
    if (row?.value === SCHEMA_VERSION) return;
    if (row !== undefined) {
      throw new Error(`SqliteStore: ${file} has store schema version ${row.value}; this build reads version ${SCHEMA_VERSION}`);
    }
    db.exec(`
      CREATE TABLE objects (
        -- compared as UTF-8 bytes (BINARY collation): the order S3 lists in
        key          TEXT PRIMARY KEY,
        content_type TEXT NOT NULL,
        body         BLOB NOT NULL
      ) STRICT;
    `);
    db.prepare("INSERT INTO store_meta (name, value) VALUES ('schema', ?)").run(SCHEMA_VERSION);
  }).immediate();
}
