/**
 * Copies the model packages from the bucket's models/ prefix to the runner's local disk
 * cache before the runner takes its first job, verified against models/checksums.json
 * ({relative path: sha256 hex}, written by tools/shapes/export.py).
 *
 * - A file already in the cache with the listed hash is kept: on AWS the cache is a folder of
 *   the instance bind-mounted into the task (infra/gpu.ts), so a task restarted on the same
 *   instance, or the next one after a deploy, starts without downloading gigabytes again.
 * - Files download in parallel (`concurrency`, default 4): one S3 connection carries far less
 *   than an instance's network, and a package is a few large files plus small ones. Tasks
 *   sharing the cache may sync at the same time: each writes its own partial file and
 *   renames it into place, so they only ever waste a download, never corrupt a file.
 * - A download is streamed to a temporary file while being hashed, and renamed into place
 *   only when the hash matches, so the cache never holds a partial or wrong model; on a
 *   mismatch the sync stops with an error naming the file, since sampling with a corrupt or
 *   swapped UNet would produce wrong images rather than fail.
 * - Manifest paths are checked to stay inside the cache directory: the manifest comes from
 *   the bucket, and a path like ../../etc/x must not become a write outside the cache.
 *
 * The caller passes the source (an S3Client for the bucket, or any ObjectStore-like reader)
 * and the directory; this module reads no environment.
 */
import { createHash, randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { dirname, isAbsolute, relative, resolve, sep } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { GetObjectCommand, NoSuchKey, type S3Client } from '@aws-sdk/client-s3';
import { StoreAccessDeniedError } from '../../adapters/aws/s3-store.ts';

export const MANIFEST_NAME = 'checksums.json';
/** Where the packages live in the stage's bucket: s3://BUCKET/models/ (docs/deploy.md). */
export const MODELS_PREFIX = 'models/';

/** Where models come from: relative keys under one prefix. */
export interface ModelSource {
  /** The object's bytes as a stream, or null when there is no such object. */
  open(key: string): Promise<AsyncIterable<Uint8Array> | null>;
  /** How to name `key` in messages, e.g. s3://bucket/models/x. */
  describe(key: string): string;
}

/** Models in S3 under `prefix` (for example "models/"), streamed, never held in memory whole. */
export function s3ModelSource(client: S3Client, bucket: string, prefix: string): ModelSource {
  const base = normalizePrefix(prefix);
  return {
    async open(key) {
      try {
        const res = await client.send(new GetObjectCommand({ Bucket: bucket, Key: base + key }));
        if (!res.Body) throw new Error(`s3://${bucket}/${base}${key} has no body`);
        return res.Body as AsyncIterable<Uint8Array>;
      } catch (error) {
        if (error instanceof NoSuchKey || (error as { name?: string })?.name === 'NoSuchKey') return null;
        // a missing model file without s3:ListBucket reads as 403: say so, never "absent"
        const e = error as { name?: string; $metadata?: { httpStatusCode?: number } };
        if (e?.name === 'AccessDenied' || e?.$metadata?.httpStatusCode === 403) {
          throw new StoreAccessDeniedError(bucket, base + key, 's3:GetObject', { cause: error });
        }
        throw error;
      }
    },
    describe: (key) => `s3://${bucket}/${base}${key}`,
  };
}

/**
 * Models in any store with the ObjectStore `get` (the memory and filesystem adapters). These
 * return whole bodies, which suits tests and small local models, not multi-GB packages.
 */
export function storeModelSource(
  store: { get(key: string): Promise<{ body: Uint8Array } | null> },
  prefix: string,
): ModelSource {
  const base = normalizePrefix(prefix);
  return {
    async open(key) {
      const found = await store.get(base + key);
      return found ? Readable.from([found.body]) : null;
    },
    describe: (key) => `store:${base}${key}`,
  };
}

export interface ModelSyncOptions {
  source: ModelSource;
  cacheDir: string;
  log?: (line: string) => void;
  /** files checked or downloaded at once; default 4 */
  concurrency?: number;
}

export const DEFAULT_SYNC_CONCURRENCY = 4;

export interface ModelSyncReport {
  /** Files fetched from the source in this run. */
  downloaded: string[];
  /** Files already in the cache with the right hash. */
  kept: string[];
}

export class ModelSyncError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ModelSyncError';
  }
}

export async function syncModels(opts: ModelSyncOptions): Promise<ModelSyncReport> {
  const { source } = opts;
  const log = opts.log ?? (() => {});
  const concurrency = opts.concurrency ?? DEFAULT_SYNC_CONCURRENCY;
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 64) {
    throw new RangeError(`syncModels: concurrency=${concurrency}; allowed: a whole number from 1 to 64`);
  }
  const cacheDir = resolve(opts.cacheDir);
  const manifest = await readManifest(source);
  const report: ModelSyncReport = { downloaded: [], kept: [] };

  await mkdir(cacheDir, { recursive: true });
  // largest first would need sizes the manifest does not have; manifest order it is
  const queue = Object.entries(manifest);
  let failure: unknown = null;
  const worker = async () => {
    // after the first failure no new file starts; the ones in flight finish or fail
    for (let next = queue.shift(); next && failure === null; next = queue.shift()) {
      const [path, expected] = next;
      try {
        if (await syncFile(source, cacheDir, path, expected)) {
          report.downloaded.push(path);
          log(`model sync: ${path} downloaded and verified`);
        } else {
          report.kept.push(path);
        }
      } catch (error) {
        failure ??= error;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, queue.length) }, worker));
  if (failure !== null) throw failure;
  log(`model sync: ${report.downloaded.length} downloaded, ${report.kept.length} already cached, into ${cacheDir}`);
  return report;
}

/** Makes one cached file match its hash; true when it had to be downloaded. */
async function syncFile(source: ModelSource, cacheDir: string, path: string, expected: string): Promise<boolean> {
  const target = resolve(cacheDir, path);
  if ((await fileHash(target)) === expected) return false;
  const body = await source.open(path);
  if (body === null) {
    throw new ModelSyncError(`model file ${path} is listed in ${source.describe(MANIFEST_NAME)} but ${source.describe(path)} does not exist`);
  }
  await mkdir(dirname(target), { recursive: true });
  const partial = `${target}.partial-${process.pid}-${randomUUID()}`;
  const hash = createHash('sha256');
  try {
    await pipeline(
      Readable.from(body),
      async function* (chunks: AsyncIterable<Uint8Array>) {
        for await (const chunk of chunks) {
          hash.update(chunk);
          yield chunk;
        }
      },
      createWriteStream(partial, { flags: 'wx' }),
    );
    const actual = hash.digest('hex');
    if (actual !== expected) {
      throw new ModelSyncError(
        `model file ${path} from ${source.describe(path)} has sha256 ${actual}, but ${MANIFEST_NAME} lists ${expected}; refusing to use it`,
      );
    }
    await rename(partial, target);
  } finally {
    await rm(partial, { force: true });
  }
  return true;
}

export async function readManifest(source: ModelSource): Promise<Record<string, string>> {
  const where = source.describe(MANIFEST_NAME);
  const body = await source.open(MANIFEST_NAME);
  if (body === null) throw new ModelSyncError(`model manifest ${where} does not exist; upload models with their checksums first`);
  const chunks: Uint8Array[] = [];
  for await (const chunk of body) chunks.push(chunk);
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch (error) {
    throw new ModelSyncError(`model manifest ${where} is not JSON: ${(error as Error).message}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new ModelSyncError(`model manifest ${where} must be an object of {path: sha256}`);
  }
  const entries = Object.entries(parsed as Record<string, unknown>);
  if (entries.length === 0) throw new ModelSyncError(`model manifest ${where} lists no files`);
  for (const [path, hash] of entries) {
    if (typeof hash !== 'string' || !/^[0-9a-f]{64}$/.test(hash)) {
      throw new ModelSyncError(`model manifest ${where}: ${path} has sha256 ${JSON.stringify(hash)}; expected 64 lowercase hex digits`);
    }
    checkRelativePath(path, where);
  }
  return Object.fromEntries(entries) as Record<string, string>;
}

function checkRelativePath(path: string, where: string): void {
  const bad =
    path === '' ||
    path === MANIFEST_NAME ||
    isAbsolute(path) ||
    path.includes('\\') ||
    path.split('/').some((part) => part === '' || part === '.' || part === '..');
  // The resolve check is the guarantee; the part check above gives the clearer message first.
  const escapes = relative('/cache', resolve('/cache', path)).split(sep)[0] === '..';
  if (bad || escapes) {
    throw new ModelSyncError(`model manifest ${where} lists "${path}"; allowed: a relative path inside the models prefix (no "..", no leading "/")`);
  }
}

async function fileHash(path: string): Promise<string | null> {
  const info = await stat(path).catch(() => null);
  if (!info?.isFile()) return null;
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

function normalizePrefix(prefix: string): string {
  if (prefix.startsWith('/')) throw new TypeError(`model prefix "${prefix}" must not start with "/"`);
  return prefix === '' || prefix.endsWith('/') ? prefix : `${prefix}/`;
}

