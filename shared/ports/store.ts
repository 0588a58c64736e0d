/**
 * The object store port: blobs and JSON records under string keys (S3 semantics).
 *
 * Contract (checked by test/conformance/store.case.ts against every adapter):
 * - keys are '/'-separated, without a leading '/', at most 1024 bytes;
 * - `put` replaces; `get` of a missing key returns null;
 * - `list` returns keys with the prefix in ascending byte order, at most `limit`, and a
 *   cursor to continue after the last key returned (null at the end);
 * - signed URLs grant one method on one key until they expire; a tampered or expired URL
 *   is refused with 403 by whoever serves it (S3, or the local edge for the fs store);
 * - a write (`put`, `delete`) that the storage has no room for rejects with StorageFullError
 *   and changes nothing: the key keeps its old object, or stays absent. Reads and lists keep
 *   working, and the same write succeeds once room is made. Only adapters on a disk of their
 *   own (the filesystem and SQLite stores) can be full; S3 and memory never throw it.
 *
 * Layout rule (see docs/architecture.md): every key has exactly one writer role, so no
 * object is ever written concurrently by two parties and no conditional writes are needed.
 */
export interface StoredObject {
  body: Uint8Array;
  contentType: string;
}

export interface ListResult {
  keys: string[];
  cursor: string | null;
}

export interface ObjectStore {
  put(key: string, body: Uint8Array | string, contentType?: string): Promise<void>;
  get(key: string): Promise<StoredObject | null>;
  delete(key: string): Promise<void>;
  list(prefix: string, opts?: { cursor?: string | null; limit?: number }): Promise<ListResult>;
  signedGetUrl(key: string, ttlSeconds: number): Promise<string>;
  signedPutUrl(key: string, ttlSeconds: number, contentType: string): Promise<string>;
  /**
   * Headers that a PUT to `signedPutUrl(key, ...)` must send besides Content-Type, because
   * the URL signs them (S3: the expiry tag of an upload). Absent or empty: none.
   */
  signedPutHeaders?(key: string): Readonly<Record<string, string>>;
  close(): Promise<void>;
  /**
   * The transactional log that a write of `key` joins, for adapters that have one (the
   * embedded SQLite database); S3, files and memory have none and leave this out. Writes to
   * one log, by any adapter that shares it, made in one turn of the event loop without
   * waiting on I/O in between, commit in one transaction: all of them or none. See JobQueue.
   */
  commitLog?(key: string): CommitLog | undefined;
}

/**
 * A transactional log shared by store, queue and admission adapters; adapters that share one
 * return the same object (compared with ===).
 */
export interface CommitLog {
  /**
   * Runs `fn`. The writes to this log that `fn` makes before it returns (synchronously, by
   * any adapter) are one unit: they commit together, in order, or none of them does. A
   * conditional write among them that finds its condition false (JobAdmission.admit at the
   * cap) makes the whole unit commit nothing; each of its other writes then rejects.
   */
  unit<T>(fn: () => T): T;
}

/** What the system said when it had no room for a write. */
export type StorageFullCode = 'ENOSPC' | 'EDQUOT' | 'SQLITE_FULL';

const STORAGE_FULL_REASONS: Record<StorageFullCode, string> = {
  ENOSPC: 'no space left on the device',
  EDQUOT: 'the disk quota is exhausted',
  SQLITE_FULL: 'the database or its disk is full',
};

/**
 * A write refused because the storage under an adapter is full (a full disk, an exhausted
 * quota). It is never the fault of what was being written: callers answer "insufficient
 * storage" and try again later, and never fail a job or drop a message because of it. Typed,
 * so the edge and the runner recognise it without reading errno strings; thrown by the
 * ObjectStore and JobQueue adapters on a disk of their own (queue.ts says which calls).
 */
export class StorageFullError extends Error {
  override name = 'StorageFullError';
  /** what happened, without the path: safe to show to API clients */
  readonly reason: string;

  constructor(
    /** the directory or database file that refused the write (for logs, never for API clients) */
    readonly where: string,
    readonly code: StorageFullCode,
    options?: { cause?: unknown },
  ) {
    const reason = STORAGE_FULL_REASONS[code];
    super(`${reason} (${code}) for ${where}; the write was not made`, options);
    this.reason = reason;
  }
}

/**
 * Told by adapters on a disk of their own when a write is refused for lack of room, and when
 * a write to the same storage (`where`) succeeds again; the composition root hands one in to
 * report a full disk (shared/storage-health.ts). Called on the write path: keep it cheap.
 */
export interface StorageObserver {
  full(err: StorageFullError): void;
  room(where: string): void;
}
