/**
 * One ObjectStore over two: the single node's records in SQLite, its blobs on the filesystem.
 *
 * A job's create writes three small records (request.json, the index entry, a claim with an
 * Idempotency-Key); as files each one cost a new file, often a new directory, and three
 * fsyncs, most of the edge's time per create. As rows (sqlite-store.ts) they join the group
 * commit of the queue's database. Images, the output PNGs and the uploads, stay files in the
 * filesystem store, whose HMAC-signed URLs the local edge serves.
 *
 * Which keys are blobs is a rule on the key alone (`isBlobKey`, the layout of
 * docs/architecture.md), so every process routes a key the same way. `list` asks only the
 * store(s) that can hold keys under the prefix, and merges in UTF-8 byte order; a key found in
 * the store the rule does not route it to (left by a crash, or by hand) is not listed. Same
 * contract as S3 (test/conformance/store.case.ts).
 */
import type { CommitLog, ListResult, ObjectStore, StoredObject } from '../../shared/ports/store.ts';
import { checkListOptions, compareUtf8 } from '../store-rules.ts';

/**
 * Output images and uploads: `tenants/{t}/jobs/{jobId}/out/...` and `tenants/{t}/uploads/...`.
 * Everything else (requests, statuses, cancels, index entries, claims, API keys, usage,
 * webhook attempts) is a record.
 */
export function isBlobKey(key: string): boolean {
  const s = key.split('/', 6);
  if (s[0] !== 'tenants' || s.length < 4) return false;
  if (s[2] === 'uploads') return true;
  return s[2] === 'jobs' && s[4] === 'out' && s.length === 6;
}

/**
 * Whether some blob key starts with `prefix`: every whole segment of the prefix matches the
 * blob layout, and its last, partial segment can still become the segment the layout needs.
 */
export function prefixMayHoldBlobs(prefix: string): boolean {
  const s = prefix.split('/');
  const fits = (i: number, literal: string | null): boolean => {
    if (i >= s.length) return true;
    const segment = s[i]!;
    if (i === s.length - 1) return literal === null || literal.startsWith(segment);
    return segment !== '' && (literal === null || segment === literal);
  };
  const upload = fits(0, 'tenants') && fits(1, null) && fits(2, 'uploads');
  const output = fits(0, 'tenants') && fits(1, null) && fits(2, 'jobs') && fits(3, null) && fits(4, 'out');
  return upload || output;
}

/** Whether some record key starts with `prefix`: all of them, unless the prefix is inside the blob layout. */
export function prefixMayHoldRecords(prefix: string): boolean {
  const s = prefix.split('/');
  // whole segments tenants/{t}/uploads/ or tenants/{t}/jobs/{j}/out/ put every key below them in the blobs
  if (s.length >= 4 && s[0] === 'tenants' && s[1] !== '' && s[2] === 'uploads') return false;
  if (s.length >= 6 && s[0] === 'tenants' && s[1] !== '' && s[2] === 'jobs' && s[3] !== '' && s[4] === 'out') return false;
  return true;
}

export interface SplitStoreOptions {
  /** small records: the SQLite store in the single node */
  records: ObjectStore;
  /** images: the filesystem store in the single node; its signed URLs are the ones handed out */
  blobs: ObjectStore;
}

export class SplitStore implements ObjectStore {
  readonly records: ObjectStore;
  readonly blobs: ObjectStore;
  private closed = false;

  constructor(opts: SplitStoreOptions) {
    if (typeof opts !== 'object' || opts === null) throw new TypeError('SplitStore: options are required');
    for (const name of ['records', 'blobs'] as const) {
      const s = opts[name] as unknown as Record<string, unknown> | undefined;
      if (typeof s !== 'object' || s === null || typeof s.put !== 'function' || typeof s.list !== 'function') {
        throw new TypeError(`SplitStore: option "${name}" must be an ObjectStore`);
      }
    }
    if (opts.records === opts.blobs) throw new TypeError('SplitStore: "records" and "blobs" must be two different stores');
    this.records = opts.records;
    this.blobs = opts.blobs;
  }

  /** Both stores' commit counters, flat (for the bench), when they keep any. */
  get commitStats(): Record<string, number> {
    const flat: Record<string, number> = {};
    for (const [name, store] of [['records', this.records], ['blobs', this.blobs]] as const) {
      const stats = (store as { commitStats?: Record<string, number> }).commitStats;
      if (stats) for (const [k, v] of Object.entries(stats)) flat[`${name}.${k}`] = v;
    }
    return flat;
  }

  /** The records' log for a record key. */
  commitLog(key: string): CommitLog | undefined {
    return this.route(key).commitLog?.(key);
  }

  async put(key: string, body: Uint8Array | string, contentType?: string): Promise<void> {
    return this.route(key).put(key, body, contentType);
  }

  async get(key: string): Promise<StoredObject | null> {
    return this.route(key).get(key);
  }

  async delete(key: string): Promise<void> {
    return this.route(key).delete(key);
  }

  async list(prefix: string, opts?: { cursor?: string | null; limit?: number }): Promise<ListResult> {
    this.checkOpen();
    const { cursor, limit } = checkListOptions(prefix, opts);
    const fromRecords = prefixMayHoldRecords(prefix);
    const fromBlobs = prefixMayHoldBlobs(prefix);
    if (fromRecords !== fromBlobs) {
      const page = await (fromRecords ? this.records : this.blobs).list(prefix, { cursor, limit });
      const keep = page.keys.filter((k) => isBlobKey(k) === fromBlobs);
      return keep.length === page.keys.length ? page : { keys: keep, cursor: page.cursor };
    }
    if (!fromRecords) return { keys: [], cursor: null };
    const [a, b] = await Promise.all([this.records.list(prefix, { cursor, limit }), this.blobs.list(prefix, { cursor, limit })]);
    const recordKeys = a.keys.filter((k) => !isBlobKey(k));
    const blobKeys = b.keys.filter(isBlobKey);
    const merged = mergeSorted(recordKeys, blobKeys, limit + 1);
    const keys = merged.slice(0, limit);
    if (merged.length > limit) return { keys, cursor: keys[keys.length - 1]! };
    // every key either side returned is on this page: more only where a side said so
    const more = [a.cursor, b.cursor].filter((c): c is string => c !== null);
    if (more.length === 0) return { keys, cursor: null };
    if (keys.length > 0) return { keys, cursor: keys[keys.length - 1]! };
    // keys were seen but none kept: continue after what both sides have covered
    return { keys, cursor: more.reduce((x, y) => (compareUtf8(x, y) <= 0 ? x : y)) };
  }

  async signedGetUrl(key: string, ttlSeconds: number): Promise<string> {
    return this.route(key).signedGetUrl(key, ttlSeconds);
  }

  async signedPutUrl(key: string, ttlSeconds: number, contentType: string): Promise<string> {
    return this.route(key).signedPutUrl(key, ttlSeconds, contentType);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const results = await Promise.allSettled([this.records.close(), this.blobs.close()]);
    const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed.length > 0) throw new AggregateError(failed.map((f) => f.reason), 'SplitStore: closing a store failed');
  }

  /**
   * The store a key lives in. Both check the key first thing with the same rules
   * (store-rules.ts), so a bad key is refused alike wherever it goes; a key that is not a
   * string goes to the records store to be refused there.
   */
  private route(key: string): ObjectStore {
    this.checkOpen();
    return typeof key === 'string' && isBlobKey(key) ? this.blobs : this.records;
  }

  private checkOpen(): void {
    if (this.closed) throw new Error('SplitStore is closed');
  }
}

/** The first `max` keys of two byte-ordered lists, in byte order. */
function mergeSorted(a: string[], b: string[], max: number): string[] {
  const out: string[] = [];
  let i = 0;
  let j = 0;
  while (out.length < max && (i < a.length || j < b.length)) {
    if (j >= b.length || (i < a.length && compareUtf8(a[i]!, b[j]!) <= 0)) out.push(a[i++]!);
    else out.push(b[j++]!);
  }
  return out;
}
