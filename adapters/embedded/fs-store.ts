/**
 * The ObjectStore port on the local filesystem, under a root directory the composition root
 * chooses (e.g. DATA_DIR/store). Same contract as S3 (test/conformance/store.case.ts).
 *
 * On-disk layout. Each key segment is escaped into a file name: bytes of [a-z0-9._-] stay as
 * they are, every other UTF-8 byte (capitals included) becomes %XX. The escaped names are
 * pure ASCII and distinct even on case-insensitive or normalising filesystems (macOS), and the
 * character '@' never occurs in them, which gives room for suffixes:
 *
 *   tenants@/t1@/jobs@/j1@/status.json        the object at key tenants/t1/jobs/j1/status.json
 *   tenants@/t1@/jobs@/j1@/@tmp-…             a write in progress (or left by a crash)
 *
 * Directories carry the '@' suffix so that "a/b" and "a/b/c" can both exist, as on S3.
 *
 * Object file format (version 1): one header line, then the body bytes as given.
 *
 *   #amdm-object v1 length=<body bytes, decimal> type=<content type>\n<body>
 *
 * The content type is 1-255 printable ASCII characters (store-rules.ts), so it never holds
 * the newline that ends the header. `length` lets a reader refuse a file that is not whole.
 * Files without this header (the layout before it kept the type in a `name@type` sidecar)
 * are refused with an error naming the file; that layout was never released, so there is
 * no migration: delete DATA_DIR/store.
 *
 * Durability: a put resolves only once the object survives a process kill and a power cut.
 * Data goes to a temp file in the target directory, the file is fdatasynced, renamed over
 * the target (so a reader sees the old or the new object, never a mix), and the directory is
 * fsynced, together with the parent of every directory this process has not yet seen made
 * durable (a fresh job directory is new in its parent). These steps run as a group commit:
 * puts whose bytes are written while a commit round is in flight wait for the next round,
 * which syncs all their files in parallel and each touched directory once, then resolves
 * them together. Under load one round serves tens of puts; alone, a put is a round of its own.
 *
 * A full disk (ENOSPC, EDQUOT) rejects the put with StorageFullError after the temp file is
 * removed, so the target keeps its old object and no space stays taken.
 *
 * Crash debris: a process killed during a put leaves its temp file behind (readers and listings
 * skip '@' names, so it is invisible, but it holds space). `sweepTempFiles()` removes temp
 * files older than STALE_TEMP_MS; the single node runs it at start (single-node/data-dir.ts).
 *
 * Listing walks the directories in UTF-8 byte order of the keys, so its cost grows with the
 * size of the listed directories; fine for a local deployment, which is what this store is for.
 */
import * as fs from 'node:fs';
import { readdir, rmdir, stat, unlink } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import type { ListResult, ObjectStore, StorageObserver, StoredObject } from '../../shared/ports/store.ts';
import { BlobUrlSigner, type BlobSigningOptions } from '../blob-url-signer.ts';
import {
  checkBodyType,
  checkContentType,
  checkKey,
  checkListOptions,
  compareBytes,
  showKey,
} from '../store-rules.ts';
import { asStorageFull } from './storage-full.ts';

export interface FsStoreOptions {
  /** directory holding the objects; created when missing */
  root: string;
  signing: BlobSigningOptions;
  /** clock for URL expiry, in ms; tests may pin it */
  now?: () => number;
  /** told when a put finds the disk full, and when a put succeeds again (shared/ports/store.ts) */
  storage?: StorageObserver;
}

/** What the group commit has done since the store opened; for tests and the bench. */
export interface FsStoreCommitStats {
  /** commit rounds run */
  rounds: number;
  /** objects made durable */
  files: number;
  /** directory fsyncs */
  dirSyncs: number;
}

/**
 * An escaped segment must fit NAME_MAX, 255 bytes on Linux and macOS; the rest is margin
 * (and room for a suffix should the layout need one again).
 */
export const MAX_ESCAPED_SEGMENT_BYTES = 240;

const DIR_SUFFIX = '@';
/** temp names carry no segment, so they fit NAME_MAX whatever the key */
const TEMP_PREFIX = '@tmp-';
/**
 * A temp file untouched for this long belongs to a write that died: the longest put (a 10 MiB
 * upload: one write, one fdatasync, one rename) takes seconds even on a slow disk. And were a
 * stalled writer to outlive this, its rename would find the file gone and the put would start
 * over (the ENOENT retry in put()), so a sweep never loses an acknowledged write.
 */
export const STALE_TEMP_MS = 10 * 60_000;
const HEADER_MAGIC = '#amdm-object v1';
/** the magic, the longest length and type, and the separators */
const MAX_HEADER_BYTES = HEADER_MAGIC.length + ' length='.length + 16 + ' type='.length + 255 + 1;
const HEADER_RE = /^#amdm-object v1 length=(0|[1-9]\d{0,15}) type=([\x20-\x7E]{1,255})\n/;
/** directories remembered as durable; beyond this the oldest is forgotten (and synced again if used) */
const MAX_KNOWN_DIRS = 20_000;
const encoder = new TextEncoder();
/**
 * Plain fds and promisified callback calls: a FileHandle call took about 22 us of CPU on the
 * bench machine against 12 us for the callback call, and a put makes six or seven of them.
 */
const openFd = promisify(fs.open);
const writevFd = promisify(fs.writev);
const fdatasyncFd = promisify(fs.fdatasync);
const fsyncFd = promisify(fs.fsync);
const closeFd = promisify(fs.close);
const renameFile = promisify(fs.rename);
const mkdirs = promisify(fs.mkdir);
const readWhole = promisify(fs.readFile);
const { O_WRONLY, O_CREAT, O_EXCL, O_RDONLY, O_DIRECTORY } = fs.constants;
const strictDecoder = new TextDecoder('utf-8', { fatal: true });
const PLAIN_BYTE = /^[a-z0-9._-]$/;
const ESCAPED_NAME = /^(?:[a-z0-9._-]|%[0-9A-F]{2})+$/;

function escapeSegment(segment: string): string {
  // the common case, a segment that is already a plain name, without a byte-by-byte pass
  if (/^[a-z0-9._-]*$/.test(segment)) return segment;
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

/** The header line of an object file. */
function objectHeader(bodyBytes: number, contentType: string): Buffer {
  return Buffer.from(`${HEADER_MAGIC} length=${bodyBytes} type=${contentType}\n`, 'latin1');
}

/** Splits an object file into its body and content type; throws, naming the file, when it is not one. */
function parseObjectFile(file: Buffer, path: string): StoredObject {
  const head = HEADER_RE.exec(file.toString('latin1', 0, Math.min(file.byteLength, MAX_HEADER_BYTES)));
  if (!head) {
    throw new Error(
      `FsStore: ${path} is not an object file of this store (no "${HEADER_MAGIC}" header); ` +
        'it was written by something else or by an unreleased earlier layout: delete it, or the whole store directory',
    );
  }
  const start = head[0].length;
  const length = Number(head[1]);
  if (file.byteLength !== start + length) {
    throw new Error(`FsStore: ${path} is damaged: its header announces ${length} body bytes but ${file.byteLength - start} follow it`);
  }
  // a view, not a copy: the buffer was read for this call alone
  return { body: new Uint8Array(file.buffer, file.byteOffset + start, length), contentType: head[2]! };
}

interface PendingWrite {
  fd: number;
  temp: string;
  target: string;
  /** the target's directory, then any parents whose entries for new directories must be synced */
  dirs: string[];
  done: (err: unknown) => void;
}

/**
 * Rounds of fdatasync -> rename -> directory fsync, one round at a time. Writes that arrive
 * while a round runs form the next one, so the batch size follows the load by itself, with
 * no timer to tune: idle, a write commits alone and at once.
 */
class GroupCommit {
  readonly stats: FsStoreCommitStats = { rounds: 0, files: 0, dirSyncs: 0 };
  private waiting: PendingWrite[] = [];
  private running = false;

  commit(write: Omit<PendingWrite, 'done'>): Promise<void> {
    return new Promise((resolve, reject) => {
      this.waiting.push({ ...write, done: (err) => (err === undefined ? resolve() : reject(err)) });
      if (!this.running) {
        this.running = true;
        // writes finished in this same turn of the event loop join the first round
        setImmediate(() => void this.drain());
      }
    });
  }

  private async drain(): Promise<void> {
    while (this.waiting.length > 0) {
      const round = this.waiting;
      this.waiting = [];
      try {
        await this.run(round);
      } catch (err) {
        // run() settles every write itself; this only keeps a bug from stalling all later puts
        for (const w of round) w.done(err ?? new Error('commit round failed'));
      }
    }
    this.running = false;
  }

  private async run(round: PendingWrite[]): Promise<void> {
    this.stats.rounds++;
    // 1. each file's data on disk before its rename publishes it, or a power cut could
    //    publish an empty or partial file; every file of the round syncs in parallel
    const published = await Promise.all(
      round.map(async (w) => {
        try {
          try {
            await fdatasyncFd(w.fd);
          } finally {
            await closeFd(w.fd);
          }
          await renameFile(w.temp, w.target);
          return null;
        } catch (err) {
          await unlink(w.temp).catch(() => undefined);
          return err ?? new Error('write failed');
        }
      }),
    );
    // 2. each touched directory once: makes the renames (and new directories) durable
    const dirs = new Map<string, Promise<unknown>>();
    round.forEach((w, i) => {
      if (published[i] !== null) return;
      for (const dir of w.dirs) if (!dirs.has(dir)) dirs.set(dir, syncDir(dir).then(() => null, (err: unknown) => err ?? new Error('fsync failed')));
    });
    this.stats.dirSyncs += dirs.size;
    const dirErrors = new Map<string, unknown>();
    await Promise.all([...dirs].map(async ([dir, p]) => {
      const err = await p;
      if (err !== null) dirErrors.set(dir, err);
    }));
    round.forEach((w, i) => {
      const err = published[i] ?? w.dirs.map((d) => dirErrors.get(d)).find((e) => e !== undefined);
      if (err === undefined) this.stats.files++;
      w.done(err);
    });
  }
}

/** Makes the renames in a directory, and the directories created in it, durable. */
async function syncDir(dir: string): Promise<void> {
  const fd = await openFd(dir, O_RDONLY | O_DIRECTORY);
  try {
    await fsyncFd(fd);
  } finally {
    await closeFd(fd);
  }
}

/** Writes every byte, whatever a single writev call manages. */
async function writeAll(fd: number, parts: Uint8Array[]): Promise<void> {
  let pending = parts.filter((p) => p.byteLength > 0);
  while (pending.length > 0) {
    let { bytesWritten } = await writevFd(fd, pending);
    const rest: Uint8Array[] = [];
    for (const p of pending) {
      if (bytesWritten >= p.byteLength) bytesWritten -= p.byteLength;
      else {
        rest.push(p.subarray(bytesWritten));
        bytesWritten = 0;
      }
    }
    pending = rest;
  }
}

export class FsStore implements ObjectStore {
  readonly root: string;
  private readonly signer: BlobUrlSigner;
  private readonly now: () => number;
  private readonly commits = new GroupCommit();
  private readonly storage: StorageObserver | null;
  /**
   * Directories whose entries, up to the root, this process has made or seen made durable.
   * A directory not in here may have been created a moment ago (by us or by another process
   * that has not synced yet), so the first write into it also syncs its parents.
   */
  private readonly knownDirs = new Set<string>();
  /** temp names: unique per store instance, and O_EXCL refuses any clash with another process */
  private readonly tempStem = `${TEMP_PREFIX}${process.pid.toString(36)}-${randomBytes(6).toString('hex')}-`;
  private tempCount = 0;
  private closed = false;

  constructor(opts: FsStoreOptions) {
    if (typeof opts !== 'object' || opts === null) throw new TypeError('FsStore: options are required');
    if (typeof opts.root !== 'string' || opts.root === '') {
      throw new TypeError(`FsStore: root must be a directory path; got ${JSON.stringify(opts.root)}`);
    }
    this.root = resolve(opts.root);
    this.signer = new BlobUrlSigner('FsStore', opts.signing);
    this.now = opts.now ?? Date.now;
    this.storage = opts.storage ?? null;
  }

  /** Counters of the group commit (rounds, files, directory syncs) since the store opened. */
  get commitStats(): Readonly<FsStoreCommitStats> {
    return { ...this.commits.stats };
  }

  async put(key: string, body: Uint8Array | string, contentType?: string): Promise<void> {
    this.checkOpen();
    const { dir, name } = this.locate(key);
    const bytes = checkBodyType(body);
    const header = objectHeader(bytes.byteLength, checkContentType(contentType));
    // a concurrent delete (here or in another process) may prune the directory between
    // mkdir and the temp file: forget it and try again
    for (let attempt = 1; ; attempt++) {
      try {
        await this.writeDurably(dir, name, header, bytes);
        this.storage?.room(this.root);
        return;
      } catch (err) {
        const full = asStorageFull(err, this.root);
        if (full) {
          this.storage?.full(full);
          throw full;
        }
        if (!isMissing(err) || attempt === 3) throw err;
        this.forgetDir(dir);
      }
    }
  }

  async get(key: string): Promise<StoredObject | null> {
    this.checkOpen();
    const { dir, name } = this.locate(key);
    const path = join(dir, name);
    let file: Buffer;
    try {
      file = await readWhole(path);
    } catch (err) {
      if (isMissing(err) || (err as NodeJS.ErrnoException).code === 'ENOTDIR') return null;
      throw err;
    }
    return parseObjectFile(file, path);
  }

  async delete(key: string): Promise<void> {
    this.checkOpen();
    const { dir, name } = this.locate(key);
    try {
      await unlink(join(dir, name));
    } catch (err) {
      if (isMissing(err)) return;
      throw err;
    }
    // a revoked API key must not come back after a power cut
    await syncDir(dir);
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

  /**
   * Removes the temp files of puts that died (kill -9, power cut) and were last written more
   * than `olderThanMs` ago (default STALE_TEMP_MS), anywhere under the root. Fresh ones may
   * belong to a put in flight, here or in another process, and are kept. Safe to run in
   * several processes at once. Resolves with the number removed.
   */
  async sweepTempFiles(opts: { olderThanMs?: number } = {}): Promise<{ removed: number }> {
    this.checkOpen();
    const olderThanMs = opts.olderThanMs ?? STALE_TEMP_MS;
    if (!(olderThanMs >= 0)) throw new RangeError(`FsStore.sweepTempFiles: olderThanMs must be a number >= 0; got ${String(opts.olderThanMs)}`);
    // file times are wall-clock times, whatever clock the URLs are signed with
    const cutoff = Date.now() - olderThanMs;
    let removed = 0;
    const visit = async (dir: string): Promise<void> => {
      let entries: fs.Dirent[];
      try {
        entries = await readdir(dir, { withFileTypes: true });
      } catch (err) {
        if (isMissing(err)) return;
        throw err;
      }
      for (const entry of entries) {
        if (entry.isDirectory()) {
          if (entry.name.endsWith(DIR_SUFFIX)) await visit(join(dir, entry.name));
          continue;
        }
        if (!entry.name.startsWith(TEMP_PREFIX)) continue;
        const path = join(dir, entry.name);
        try {
          if ((await stat(path)).mtimeMs > cutoff) continue;
          await unlink(path);
          removed++;
        } catch (err) {
          // renamed by its writer, or removed by another process's sweep
          if (!isMissing(err)) throw err;
        }
      }
    };
    await visit(this.root);
    return { removed };
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

  private async writeDurably(dir: string, name: string, header: Uint8Array, body: Uint8Array): Promise<void> {
    const fresh = await this.ensureDir(dir);
    const temp = join(dir, `${this.tempStem}${(this.tempCount++).toString(36)}`);
    const fd = await openFd(temp, O_WRONLY | O_CREAT | O_EXCL, 0o644);
    try {
      await writeAll(fd, [header, body]);
    } catch (err) {
      await closeFd(fd).catch(() => undefined);
      await unlink(temp).catch(() => undefined);
      throw err;
    }
    // the directory itself, and the parent of each directory not known durable yet
    const dirs = [dir];
    for (const d of fresh) dirs.push(dirname(d));
    await this.commits.commit({ fd, temp, target: join(dir, name), dirs });
    for (const d of fresh) this.rememberDir(d);
  }

  /**
   * Creates the directory when missing. Returns the directories from `dir` up that are not
   * known durable: their entries in their parents must be synced before a write into `dir`
   * counts as durable.
   */
  private async ensureDir(dir: string): Promise<string[]> {
    if (this.knownDirs.has(dir)) return [];
    await mkdirs(dir, { recursive: true });
    const fresh: string[] = [];
    // the walk stops at the root's parent, which the composition root owns
    for (let d = dir; !this.knownDirs.has(d) && d.startsWith(this.root); d = dirname(d)) fresh.push(d);
    return fresh;
  }

  private rememberDir(dir: string): void {
    if (this.knownDirs.size >= MAX_KNOWN_DIRS) {
      // Set keeps insertion order: the first entry is the oldest
      this.knownDirs.delete(this.knownDirs.values().next().value!);
    }
    this.knownDirs.add(dir);
  }

  /** Forgets a directory and everything below it (it was removed, here or by another process). */
  private forgetDir(dir: string): void {
    for (const d of this.knownDirs) if (d === dir || d.startsWith(dir + '/') || dir.startsWith(d + '/')) this.knownDirs.delete(d);
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
      if (!isDir && name.includes('@')) continue; // temp files (and sidecars of the old layout)
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

  /** Removes directories left empty by a delete; rmdir refuses non-empty ones, so this never races a put's data away. */
  private async pruneEmptyDirs(dir: string): Promise<void> {
    let current = dir;
    while (current !== this.root && current.startsWith(this.root)) {
      try {
        await rmdir(current);
      } catch {
        return; // not empty, already gone, or busy: leave it
      }
      this.forgetDir(current);
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
