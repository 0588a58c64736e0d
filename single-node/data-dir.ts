/**
 * The single-node deployment, shared by its roots (single-node/start.ts, edge/local.ts,
 * gpu-runner/main.ts, `amdm keys`): where things live under DATA_DIR, the secrets created
 * once at first start, and the embedded adapters (SQLite queues, and a store that keeps its
 * records in SQLite and its images on the filesystem).
 *
 *   DATA_DIR/queue/          queues.sqlite: the queues 'jobs', 'jobs-dlq', 'webhooks', the
 *                            store's records (every key of docs/architecture.md that is not an
 *                            output image or an upload) and the admitted jobs of the tenants'
 *                            caps, one database so that a turn of the event loop commits
 *                            admissions, requests, index entries and messages at once
 *   DATA_DIR/store/          the store's blobs: tenants/{t}/jobs/{j}/out/*, tenants/{t}/uploads/*
 *                            (the server and runners sweep the temp files of writes a crash
 *                            cut short at start, once older than 10 minutes: STALE_TEMP_MS)
 *   DATA_DIR/secrets/        pepper, blob-signing-key, webhook-secret (0600, created once)
 *   DATA_DIR/local-api-key   the key `npm start` created for you (0600)
 *
 * A running `npm start` also announces itself in a per-user runtime folder (RUNTIME_DIR/
 * server-{pid}.json: its URL and DATA_DIR, as `jupyter server list` finds its servers), so
 * `amdm keys` run from another folder or shell puts keys where the server reads them.
 *
 * Every process opens its own handles; the fs store writes atomically and the SQLite
 * database uses WAL with short transactions and a busy timeout, so the server, a runner and
 * the CLI can share one DATA_DIR at the same time.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, linkSync, mkdirSync, readdirSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { FsStore, STALE_TEMP_MS } from '../adapters/embedded/fs-store.ts';
import { SqliteAdmission } from '../adapters/embedded/sqlite-admission.ts';
import { SQLITE_QUEUE_FILE, SqliteQueue } from '../adapters/embedded/sqlite-queue.ts';
import { SplitStore } from '../adapters/embedded/split-store.ts';
import { SqliteStore } from '../adapters/embedded/sqlite-store.ts';
import { DEFAULT_SQLITE_WRITER, type SqliteWriter } from '../adapters/embedded/sqlite-database.ts';
import type { QueueInfoValue, StoredRequest } from '../shared/job-repository.ts';
import { jsonLogger } from '../shared/logger.ts';
import type { JobAdmission } from '../shared/ports/admission.ts';
import type { JobQueue } from '../shared/ports/queue.ts';
import type { ObjectStore, StorageObserver } from '../shared/ports/store.ts';

export const QUEUES = { jobs: 'jobs', jobsDeadLetter: 'jobs-dlq', webhooks: 'webhooks' } as const;
/** The jobs queue's redrive threshold: deliveries before a job is dead-lettered. */
export const DEFAULT_MAX_RECEIVES = 5;
/** Webhook messages are released once per retry (and again when a delay is chained). */
const WEBHOOK_MAX_RECEIVES = 100;

export interface DataLayout {
  dataDir: string;
  storeDir: string;
  queueDir: string;
  secretsDir: string;
  localKeyFile: string;
}

export function dataLayout(dataDir: string): DataLayout {
  const root = resolve(dataDir);
  return {
    dataDir: root,
    storeDir: join(root, 'store'),
    queueDir: join(root, 'queue'),
    secretsDir: join(root, 'secrets'),
    localKeyFile: join(root, 'local-api-key'),
  };
}

/** Whether a single node ever started from this layout (its pepper exists). */
export function isInitialized(layout: DataLayout): boolean {
  return existsSync(join(layout.secretsDir, 'pepper'));
}

/**
 * Where running single nodes announce themselves: AMDM_RUNTIME_DIR, else
 * XDG_RUNTIME_DIR/amdm, else TMPDIR/amdm-{uid}. Per user, so nobody else's servers show.
 */
export function runtimeDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.AMDM_RUNTIME_DIR) return resolve(env.AMDM_RUNTIME_DIR);
  if (env.XDG_RUNTIME_DIR) return join(env.XDG_RUNTIME_DIR, 'amdm');
  return join(tmpdir(), `amdm-${process.getuid?.() ?? 'user'}`);
}

export interface RunningServer {
  pid: number;
  url: string;
  data_dir: string;
  started_at: string;
}

/** Announce this process as a running server; returns the function that withdraws it. */
export function announceServer(dir: string, server: Omit<RunningServer, 'pid' | 'started_at'>): () => void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const file = join(dir, `server-${process.pid}.json`);
  const tmp = `${file}.tmp`;
  const entry: RunningServer = { pid: process.pid, url: server.url, data_dir: resolve(server.data_dir), started_at: new Date().toISOString() };
  writeFileSync(tmp, `${JSON.stringify(entry)}\n`, { mode: 0o600 });
  renameSync(tmp, file);
  return () => {
    try {
      unlinkSync(file);
    } catch {
      // already gone
    }
  };
}

/** The servers running now; entries of processes that died without withdrawing (kill -9) are dropped. */
export function runningServers(dir: string): RunningServer[] {
  let names: string[];
  try {
    names = readdirSync(dir).filter((n) => /^server-\d+\.json$/.test(n));
  } catch {
    return [];
  }
  const out: RunningServer[] = [];
  for (const name of names) {
    try {
      const s = JSON.parse(readFileSync(join(dir, name), 'utf8')) as RunningServer;
      if (!Number.isInteger(s.pid) || typeof s.data_dir !== 'string' || typeof s.url !== 'string') continue;
      if (isAlive(s.pid)) out.push(s);
      else unlinkSync(join(dir, name));
    } catch {
      // half-written or removed meanwhile
    }
  }
  return out.sort((a, b) => a.pid - b.pid);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: alive, but another user's (not ours to list; keep it, it is in our folder)
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export interface Secrets {
  pepper: string;
  blobSecret: string;
  webhookSecret: string;
}

/**
 * Secrets from the environment when given, else from DATA_DIR/secrets, created on first use.
 * Creation is race-free across processes: the file is written aside and hard-linked into
 * place, which fails if another process won; then everyone reads the winner's file.
 */
export function loadSecrets(layout: DataLayout, env: NodeJS.ProcessEnv = process.env): Secrets {
  mkdirSync(layout.secretsDir, { recursive: true, mode: 0o700 });
  return {
    pepper: env.AMDM_KEY_PEPPER || readOrCreate(join(layout.secretsDir, 'pepper'), () => randomBytes(32).toString('base64url')),
    blobSecret: env.AMDM_BLOB_SECRET || readOrCreate(join(layout.secretsDir, 'blob-signing-key'), () => randomBytes(32).toString('base64url')),
    webhookSecret: env.AMDM_WEBHOOK_SECRET || readOrCreate(join(layout.secretsDir, 'webhook-secret'), () => `whsec_${randomBytes(32).toString('base64')}`),
  };
}

export function readOrCreate(path: string, make: () => string): string {
  if (!existsSync(path)) {
    const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
    writeFileSync(tmp, make(), { mode: 0o600, flag: 'wx' });
    try {
      linkSync(tmp, path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    } finally {
      unlinkSync(tmp);
    }
  }
  chmodSync(path, 0o600);
  const value = readFileSync(path, 'utf8').trim();
  if (value === '') throw new Error(`${path} is empty; delete it to have it recreated`);
  return value;
}

export interface EmbeddedAdapters {
  store: ObjectStore;
  jobs: JobQueue;
  jobsDeadLetter: JobQueue;
  webhooks: JobQueue;
  /** the tenants' caps on active jobs, in the same file as the records it counts */
  admission: JobAdmission;
  /**
   * Work done in the background at start: removing the temp files of puts that a crash cut
   * short (FsStore.sweepTempFiles). Resolves when done; never rejects (a failure is logged).
   */
  startup: Promise<void>;
  close(): Promise<void>;
}

/**
 * The single node's object store: records in the queues' database, blobs in DATA_DIR/store
 * (adapters/embedded/split-store.ts says which keys are which). `amdm keys` opens it alone,
 * for a short write, and commits inline by default: one write needs no thread.
 */
export function openEmbeddedStore(
  layout: DataLayout,
  opts: { blobSecret: string; publicBaseUrl: string; writer?: SqliteWriter; storage?: StorageObserver },
): SplitStore {
  const signing = { secret: opts.blobSecret, baseUrl: opts.publicBaseUrl };
  const storage = opts.storage ? { storage: opts.storage } : {};
  return new SplitStore({
    // the first opener of the file decides its writer: the records open it before the queues
    records: new SqliteStore({ dir: layout.queueDir, file: SQLITE_QUEUE_FILE, signing, writer: opts.writer ?? 'inline', ...storage }),
    blobs: new FsStore({ root: layout.storeDir, signing, ...storage }),
  });
}

/**
 * The adapters of a long-running process (the server, a runner). `storage` hears of every
 * write refused for lack of room and of the next one that succeeds (shared/storage-health.ts).
 */
export function openEmbedded(
  layout: DataLayout,
  opts: { blobSecret: string; publicBaseUrl: string; maxReceives?: number; writer?: SqliteWriter; storage?: StorageObserver },
): EmbeddedAdapters {
  // the adapters' default: the writer thread, so the WAL fsync never holds the event loop
  const store = openEmbeddedStore(layout, { ...opts, writer: opts.writer ?? DEFAULT_SQLITE_WRITER });
  const storage = opts.storage ? { storage: opts.storage } : {};
  const jobs = new SqliteQueue({ dir: layout.queueDir, queue: QUEUES.jobs, deadLetter: { queue: QUEUES.jobsDeadLetter, maxReceives: opts.maxReceives ?? DEFAULT_MAX_RECEIVES }, ...storage });
  const jobsDeadLetter = new SqliteQueue({ dir: layout.queueDir, queue: QUEUES.jobsDeadLetter, ...storage });
  const webhooks = new SqliteQueue({ dir: layout.queueDir, queue: QUEUES.webhooks, deadLetter: { queue: 'webhooks-dlq', maxReceives: WEBHOOK_MAX_RECEIVES }, ...storage });
  // after the store: it counts the jobs whose records the store's table holds
  const admission = new SqliteAdmission({ dir: layout.queueDir, file: SQLITE_QUEUE_FILE });
  // only long-running processes sweep: the CLI opens the store for one write and must not walk it
  const startup = sweepCrashDebris(store.blobs as FsStore);
  return {
    store,
    jobs,
    jobsDeadLetter,
    webhooks,
    admission,
    startup,
    async close() {
      // a sweep in progress would find the store closed under it
      await startup;
      const results = await Promise.allSettled([jobs.close(), jobsDeadLetter.close(), webhooks.close(), admission.close(), store.close()]);
      const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed.length) throw new AggregateError(failed.map((f) => f.reason), 'closing the embedded adapters failed');
    },
  };
}

/** Removes the temp files of puts cut short by a crash (older than STALE_TEMP_MS), saying so when there were any. */
async function sweepCrashDebris(blobs: FsStore): Promise<void> {
  const logger = jsonLogger('store');
  try {
    const { removed } = await blobs.sweepTempFiles();
    if (removed > 0) logger.info('removed temp files left by writes a crash cut short', { removed, older_than_ms: STALE_TEMP_MS, store: blobs.root });
  } catch (err) {
    logger.error('sweeping temp files left by crashed writes failed; they only take space', { err: String(err), store: blobs.root });
  }
}

/**
 * Where a queued job stands in the embedded jobs queue, in words for the job record: the
 * messages ahead of it in delivery order and the jobs running (SqliteQueue.position, capped
 * at MAX_AHEAD rows each: this runs on the request path).
 */
export function embeddedQueueInfo(jobs: SqliteQueue): (req: StoredRequest, messageId: string | undefined) => Promise<QueueInfoValue> {
  const MAX_AHEAD = 100;
  return async (req, messageId) => {
    try {
      // by body only for jobs another process enqueued (the edge remembers its own message ids)
      const at = jobs.position(messageId ? { id: messageId } : { bodyContains: [`"job_id":"${req.id}"`, `"tenant":"${req.tenant}"`] }, MAX_AHEAD);
      const busy = at.inFlight;
      if (at.ahead === null) return { position: null, reason: `being handed to a runner (${busy} running)` };
      const n = at.ahead;
      const running = `${busy}${busy >= MAX_AHEAD ? '+' : ''} running`;
      return {
        position: n,
        reason: n === 0 ? (busy > 0 ? `next in line; waiting for a free runner (${running})` : 'next in line') : `${n}${n >= MAX_AHEAD ? '+' : ''} job(s) ahead; ${running}`,
      };
    } catch {
      return { position: null, reason: 'waiting for a runner' };
    }
  };
}

/** The built-in models shipped in the repository. */
export const BUILTIN_MODELS_DIR = resolve(new URL('../models', import.meta.url).pathname);
