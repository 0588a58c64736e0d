/**
 * The ObjectStore port on the local filesystem, under a root directory the composition root
 * chooses (e.g. DATA_DIR/store). Same contract as S3 (test/conformance/store.case.ts).
 *
 * On-disk layout. Each key segment is escaped into a file name: bytes of [a-z0-9._-] stay as
 * they are, every other UTF-8 byte (capitals included) becomes %XX. The escaped names are
 * pure ASCII and distinct even on case-insensitive or normalising filesystems (macOS), and the
 * character '@' never occurs in them, which gives room for suffixes:
 *
 *   tenants@/t1@/jobs@/j1@/status.json        blob of key tenants/t1/jobs/j1/status.json
 *   tenants@/t1@/jobs@/j1@/status.json@type   its content type (absent = octet-stream)
 *   tenants@/t1@/jobs@/j1@/@tmp-…             a write in progress (or left by a crash)
 *
 * Directories carry the '@' suffix so that "a/b" and "a/b/c" can both exist, as on S3.
 *
 * Writes are atomic: data goes to a temp file in the target directory, is fsynced, and is
 * renamed over the target, so a reader sees the old or the new object, never a mix. The
 * content type is written (the same way) before the blob; in the instant between the two
 * renames a reader of a key whose content type changes may see the new type with the old
 * body. The layout rule (one writer per key, content types fixed per key) makes that moot.
 *
 * Listing walks the directories in UTF-8 byte order of the keys, so its cost grows with the
 * size of the listed directories; fine for a local deployment, which is what this store is for.
 */
import { constants as fsConstants } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rmdir, unlink } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join, resolve } from 'node:path';
import type { ListResult, ObjectStore, StoredObject } from '../../shared/ports/store.ts';
import { BlobUrlSigner, type BlobSigningOptions } from '../blob-url-signer.ts';
import {
  checkBodyType,
  checkContentType,
  checkKey,
  checkListOptions,
  compareBytes,
  DEFAULT_CONTENT_TYPE,
  showKey,
} from '../store-rules.ts';

export interface FsStoreOptions {
  /** directory holding the objects; created when missing */
  root: string;
  signing: BlobSigningOptions;
  /** clock for URL expiry, in ms; tests may pin it */
  now?: () => number;
}

/**
 * An escaped segment plus its longest suffix ('@type') must fit NAME_MAX, 255 bytes on Linux
 * and macOS; the rest is margin.
 */
export const MAX_ESCAPED_SEGMENT_BYTES = 240;

const DIR_SUFFIX = '@';
const TYPE_SUFFIX = '@type';
/** temp names carry no segment, so they fit NAME_MAX whatever the key */
const TEMP_PREFIX = '@tmp-';
const encoder = new TextEncoder();
const strictDecoder = new TextDecoder('utf-8', { fatal: true });
const PLAIN_BYTE = /^[a-z0-9._-]$/;
const ESCAPED_NAME = /^(?:[a-z0-9._-]|%[0-9A-F]{2})+$/;

function escapeSegment(segment: string): string {
  let out = '';
  for (const byte of encoder.encode(segment)) {
    const ch = String.fromCharCode(byte);
    out += PLAIN_BYTE.test(ch) ? ch : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** The segment an escaped name stands for, or null for names this store did not write. */
function unescapeSegment(name: string): Uint8Array | null {
  if (!ESCAPED_NAME.test(name)) return null;
  const bytes: number[] = [];
  for (let i = 0; i < name.length; i++) {
    if (name[i] === '%') {
      bytes.push(parseInt(name.slice(i + 1, i + 3), 16));
      i += 2;
    } else {
      bytes.push(name.charCodeAt(i));
    }
  }
  const segment = Uint8Array.from(bytes);
  try {
    // only the canonical spelling counts, so one key never has two names on disk
    return escapeSegment(strictDecoder.decode(segment)) === name ? segment : null;
  } catch {
    return null;
  }
}

function isMissing(err: unknown): boolean {
  return (err as NodeJS.ErrnoException | null)?.code === 'ENOENT';
}

export class FsStore implements ObjectStore {
  readonly root: string;
  private readonly signer: BlobUrlSigner;
  private readonly now: () => number;
  private closed = false;

  constructor(opts: FsStoreOptions) {
    if (typeof opts !== 'object' || opts === null) throw new TypeError('FsStore: options are required');
    if (typeof opts.root !== 'string' || opts.root === '') {
      throw new TypeError(`FsStore: root must be a directory path; got ${JSON.stringify(opts.root)}`);
    }
    this.root = resolve(opts.root);
    this.signer = new BlobUrlSigner('FsStore', opts.signing);
    this.now = opts.now ?? Date.now;
  }

  async put(key: string, body: Uint8Array | string, contentType?: string): Promise<void> {
    this.checkOpen();
    const { dir, name } = this.locate(key);
    const bytes = checkBodyType(body);
    const type = checkContentType(contentType);
    // a concurrent delete may prune the directory between mkdir and the temp file: try again
    for (let attempt = 1; ; attempt++) {
      try {
        await mkdir(dir, { recursive: true });
        const typePath = join(dir, name + TYPE_SUFFIX);
        if ((await this.readType(typePath)) !== type) {
          await this.writeAtomically(dir, name + TYPE_SUFFIX, encoder.encode(type));
        }
        await this.writeAtomically(dir, name, bytes);
        return;
      } catch (err) {
        if (!isMissing(err) || attempt === 3) throw err;
      }
    }
  }

  async get(key: string): Promise<StoredObject | null> {
    this.checkOpen();
    const { dir, name } = this.locate(key);
    let body: Uint8Array;
    try {
      body = new Uint8Array(await readFile(join(dir, name)));
    } catch (err) {
      if (isMissing(err) || (err as NodeJS.ErrnoException).code === 'ENOTDIR') return null;
      throw err;
    }
    return { body, contentType: (await this.readType(join(dir, name + TYPE_SUFFIX))) ?? DEFAULT_CONTENT_TYPE };
  }

  async delete(key: string): Promise<void> {
    this.checkOpen();
    const { dir, name } = this.locate(key);
    // blob first: once it is gone the key is gone, whatever happens to the sidecar
    for (const file of [name, name + TYPE_SUFFIX]) {
      try {
        await unlink(join(dir, file));
      } catch (err) {
        if (!isMissing(err)) throw err;
      }
    }
    await this.pruneEmptyDirs(dir);
  }

  async list(prefix: string, opts?: { cursor?: string | null; limit?: number }): Promise<ListResult> {
    this.checkOpen();
    const { cursor, limit } = checkListOptions(prefix, opts);
    const slash = prefix.lastIndexOf('/');
    const dirPart = prefix.slice(0, slash + 1);
    const partial = encoder.encode(prefix.slice(slash + 1));
    const segments = dirPart === '' ? [] : dirPart.slice(0, -1).split('/');
    // a prefix through a segment no key can have ('', '.', '..') matches nothing
    if (segments.some((s) => s === '' || s === '.' || s === '..')) return { keys: [], cursor: null };
    const startDir = join(this.root, ...segments.map((s) => escapeSegment(s) + DIR_SUFFIX));
    const found: string[] = [];
    const cursorBytes = cursor === null ? null : encoder.encode(cursor);
    // one key beyond the page tells whether there is a next page
    await this.walk(startDir, encoder.encode(dirPart), partial, cursorBytes, limit + 1, found);
    const keys = found.slice(0, limit);
    return { keys, cursor: found.length > limit ? keys[keys.length - 1]! : null };
  }

  async signedGetUrl(key: string, ttlSeconds: number): Promise<string> {
    this.checkOpen();
    this.locate(key);
    return this.signer.sign('GET', key, ttlSeconds, this.now());
  }

  async signedPutUrl(key: string, ttlSeconds: number, contentType: string): Promise<string> {
    this.checkOpen();
    // the HMAC URL does not bind the content type; the blob route stores the request's Content-Type
    checkContentType(contentType);
    this.locate(key);
    return this.signer.sign('PUT', key, ttlSeconds, this.now());
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  /** Checks the key and maps it to its directory and file name. */
  private locate(key: string): { dir: string; name: string } {
    checkKey(key);
    const escaped = key.split('/').map((segment) => {
      const name = escapeSegment(segment);
      if (name.length > MAX_ESCAPED_SEGMENT_BYTES) {
        throw new RangeError(
          `invalid object key ${showKey(key)}: segment ${showKey(segment)} takes ${name.length} bytes on disk; ` +
            `the filesystem store allows ${MAX_ESCAPED_SEGMENT_BYTES} (bytes outside [a-z0-9._-] take 3)`,
        );
      }
      return name;
    });
    const name = escaped.pop()!;
    return { dir: join(this.root, ...escaped.map((s) => s + DIR_SUFFIX)), name };
  }

  /**
   * Depth-first walk in key byte order. Within a directory a blob sorts by its segment and a
   * subdirectory by its segment plus '/', because every key below it continues with '/'; that
   * makes the walk order equal to the byte order of whole keys.
   */
  private async walk(
    dir: string,
    base: Uint8Array,
    mustStartWith: Uint8Array,
    cursor: Uint8Array | null,
    want: number,
    found: string[],
  ): Promise<void> {
    let names: string[];
    try {
      names = await readdir(dir);
    } catch (err) {
      if (isMissing(err) || (err as NodeJS.ErrnoException).code === 'ENOTDIR') return;
      throw err;
    }
    const entries: { sort: Uint8Array; isDir: boolean; name: string }[] = [];
    for (const name of names) {
      const isDir = name.endsWith(DIR_SUFFIX) && name.indexOf('@') === name.length - 1;
      if (!isDir && name.includes('@')) continue; // content types and temp files
      const segment = unescapeSegment(isDir ? name.slice(0, -1) : name);
      if (!segment || !startsWith(segment, mustStartWith)) continue;
      const sort = concat(base, segment, isDir ? SLASH : EMPTY);
      if (cursor && compareBytes(sort, cursor) <= 0 && !(isDir && startsWith(cursor, sort))) continue;
      entries.push({ sort, isDir, name });
    }
    entries.sort((a, b) => compareBytes(a.sort, b.sort));
    for (const entry of entries) {
      if (found.length >= want) return;
      if (entry.isDir) {
        await this.walk(join(dir, entry.name), entry.sort, EMPTY, cursor, want, found);
      } else {
        found.push(strictDecoder.decode(entry.sort));
      }
    }
  }

  private async readType(path: string): Promise<string | null> {
    try {
      return await readFile(path, 'utf8');
    } catch (err) {
      if (isMissing(err)) return null;
      throw err;
    }
  }

  private async writeAtomically(dir: string, name: string, bytes: Uint8Array): Promise<void> {
    const temp = join(dir, `${TEMP_PREFIX}${randomBytes(8).toString('hex')}`);
    const file = await open(temp, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL, 0o644);
    try {
      try {
        await file.writeFile(bytes);
        // data on disk before the rename makes it visible, or a power cut could publish an empty file
        await file.datasync();
      } finally {
        await file.close();
      }
      await rename(temp, join(dir, name));
    } catch (err) {
      await unlink(temp).catch(() => undefined);
      throw err;
    }
    await this.syncDir(dir);
  }

  /** Makes the rename itself durable. */
  private async syncDir(dir: string): Promise<void> {
    const handle = await open(dir, fsConstants.O_RDONLY);
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  }

  /** Removes directories left empty by a delete; rmdir refuses non-empty ones, so this never races a put's data away. */
  private async pruneEmptyDirs(dir: string): Promise<void> {
    let current = dir;
    while (current !== this.root && current.startsWith(this.root)) {
      try {
        await rmdir(current);
      } catch {
        return; // not empty, already gone, or busy: leave it
      }
      current = resolve(current, '..');
    }
  }

  private checkOpen(): void {
    if (this.closed) throw new Error('FsStore is closed');
  }
}

const SLASH = Uint8Array.of(0x2f);
const EMPTY = new Uint8Array(0);

function startsWith(bytes: Uint8Array, prefix: Uint8Array): boolean {
  if (prefix.length > bytes.length) return false;
  for (let i = 0; i < prefix.length; i++) if (bytes[i] !== prefix[i]) return false;
  return true;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
