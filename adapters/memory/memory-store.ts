/**
 * The ObjectStore port in process memory, for fast tests of the edge, the runner and the CLI.
 * It refuses the same keys and lists in the same byte order as the filesystem and S3 stores
 * (test/conformance/store.case.ts holds all three to one contract).
 *
 * Signed URLs are the embedded HMAC URLs (shared/signed-url.ts); give `signing` when the code
 * under test mints them, and serve them with the same verifier the edge uses.
 */
import type { ListResult, ObjectStore, StoredObject } from '../../shared/ports/store.ts';
import { BlobUrlSigner, type BlobSigningOptions } from '../blob-url-signer.ts';
import {
  checkBodyType,
  checkContentType,
  checkKey,
  checkListOptions,
  compareBytes,
} from '../store-rules.ts';

export interface MemoryStoreOptions {
  signing?: BlobSigningOptions;
  /** clock for URL expiry, in ms; tests may pin it */
  now?: () => number;
}

interface Entry {
  body: Uint8Array;
  contentType: string;
  /** the key's UTF-8 bytes, kept for sorting */
  sortKey: Uint8Array;
}

const encoder = new TextEncoder();

export class MemoryStore implements ObjectStore {
  private readonly objects = new Map<string, Entry>();
  private readonly signer: BlobUrlSigner | null;
  private readonly now: () => number;
  private closed = false;

  constructor(opts: MemoryStoreOptions = {}) {
    this.signer = opts.signing === undefined ? null : new BlobUrlSigner('MemoryStore', opts.signing);
    this.now = opts.now ?? Date.now;
  }

  async put(key: string, body: Uint8Array | string, contentType?: string): Promise<void> {
    this.checkOpen();
    checkKey(key);
    const bytes = checkBodyType(body);
    const type = checkContentType(contentType);
    // copies on the way in and out: a caller reusing its buffer must not rewrite the stored object
    this.objects.set(key, { body: bytes.slice(), contentType: type, sortKey: encoder.encode(key) });
  }

  async get(key: string): Promise<StoredObject | null> {
    this.checkOpen();
    checkKey(key);
    const entry = this.objects.get(key);
    return entry ? { body: entry.body.slice(), contentType: entry.contentType } : null;
  }

  async delete(key: string): Promise<void> {
    this.checkOpen();
    checkKey(key);
    this.objects.delete(key);
  }

  async list(prefix: string, opts?: { cursor?: string | null; limit?: number }): Promise<ListResult> {
    this.checkOpen();
    const { cursor, limit } = checkListOptions(prefix, opts);
    const cursorBytes = cursor === null ? null : encoder.encode(cursor);
    const matches: Entry[] = [];
    const keys = new Map<Entry, string>();
    for (const [key, entry] of this.objects) {
      if (!key.startsWith(prefix)) continue;
      if (cursorBytes && compareBytes(entry.sortKey, cursorBytes) <= 0) continue;
      matches.push(entry);
      keys.set(entry, key);
    }
    matches.sort((a, b) => compareBytes(a.sortKey, b.sortKey));
    const page = matches.slice(0, limit).map((e) => keys.get(e)!);
    return { keys: page, cursor: matches.length > limit ? page[page.length - 1]! : null };
  }

  async signedGetUrl(key: string, ttlSeconds: number): Promise<string> {
    this.checkOpen();
    return this.requireSigner().sign('GET', key, ttlSeconds, this.now());
  }

  async signedPutUrl(key: string, ttlSeconds: number, contentType: string): Promise<string> {
    this.checkOpen();
    // the HMAC URL does not bind the content type; the route stores the request's Content-Type
    checkContentType(contentType);
    return this.requireSigner().sign('PUT', key, ttlSeconds, this.now());
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  private requireSigner(): BlobUrlSigner {
    if (!this.signer) {
      throw new Error('MemoryStore was built without `signing` options, so it cannot mint signed URLs');
    }
    return this.signer;
  }

  private checkOpen(): void {
    if (this.closed) throw new Error('MemoryStore is closed');
  }
}
