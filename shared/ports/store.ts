/**
 * The object store port: blobs and JSON records under string keys (S3 semantics).
 *
 * Contract (checked by test/conformance/store.case.ts against every adapter):
 * - keys are '/'-separated, without a leading '/', at most 1024 bytes;
 * - `put` replaces; `get` of a missing key returns null;
 * - `list` returns keys with the prefix in ascending byte order, at most `limit`, and a
 *   cursor to continue after the last key returned (null at the end);
 * - signed URLs grant one method on one key until they expire; a tampered or expired URL
 *   is refused with 403 by whoever serves it (S3, or the local edge for the fs store).
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

/** The identity of a transactional log shared by store and queue adapters (compared with ===). */
export type CommitLog = object;
