/**
 * The single-node deployment, shared by its roots (tools/start.ts, edge/local.ts,
 * gpu-runner/main.ts, `amdm keys`): where things live under DATA_DIR, the secrets created
 * once at first start, and the embedded adapters (SQLite queues, and a store that keeps its
 * records in SQLite and its images on the filesystem).
 *
 *   DATA_DIR/queue/          queues.sqlite: the queues 'jobs', 'jobs-dlq', 'webhooks', and the
 *                            store's records (every key of docs/architecture.md that is not an
 *                            output image or an upload), one database so that a turn of the
 *                            event loop commits requests, index entries and messages at once
 *   DATA_DIR/store/          the store's blobs: tenants/{t}/jobs/{j}/out/*, tenants/{t}/uploads/*
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
import Database from 'better-sqlite3';
import { FsStore } from '../adapters/embedded/fs-store.ts';
import { SQLITE_QUEUE_FILE, SqliteQueue } from '../adapters/embedded/sqlite-queue.ts';
import { SplitStore } from '../adapters/embedded/split-store.ts';
import { SqliteStore } from '../adapters/embedded/sqlite-store.ts';
import type { SqliteWriter } from '../adapters/embedded/sqlite-database.ts';
import type { QueueInfoValue, StoredRequest } from '../shared/job-repository.ts';
import type { JobQueue } from '../shared/ports/queue.ts';
import type { ObjectStore } from '../shared/ports/store.ts';

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
  close(): Promise<void>;
}

/**
 * The single node's object store: records in the queues' database, blobs in DATA_DIR/store
 * (adapters/embedded/split-store.ts says which keys are which). `amdm keys` opens it alone.
 */
export function openEmbeddedStore(layout: DataLayout, opts: { blobSecret: string; publicBaseUrl: string; writer?: SqliteWriter }): SplitStore {
  const signing = { secret: opts.blobSecret, baseUrl: opts.publicBaseUrl };
  const store = new SplitStore({
    // the first opener of the file decides its writer: the records open it before the queues
    records: new SqliteStore({ dir: layout.queueDir, file: SQLITE_QUEUE_FILE, signing, ...(opts.writer ? { writer: opts.writer } : {}) }),
    blobs: new FsStore({ root: layout.storeDir, signing }),
  });
  if (holdsLegacyRecords(layout.storeDir)) {
    // a DATA_DIR from before the records moved to SQLite: its keys and jobs must not vanish
    store.adoptRecordsFromBlobs().then(
      ({ moved }) => console.error(JSON.stringify({ level: 'info', msg: 'moved records from the filesystem store into SQLite', moved, store: layout.storeDir })),
      (err: unknown) => console.error(JSON.stringify({ level: 'error', msg: 'moving records from the filesystem store into SQLite failed', err: String(err), store: layout.storeDir })),
    );
  }
  return store;
}

/**
 * Whether DATA_DIR/store holds records as files (the layout before they moved to SQLite): a
 * single node that ever ran has an API key, and every accepted job an index entry. Two
 * directory probes per tenant; the move deletes what it moved, so this turns false after it.
 */
function holdsLegacyRecords(storeDir: string): boolean {
  // the filesystem store's names: a directory is its key segment plus '@'
  if (existsSync(join(storeDir, 'apikeys@')) || existsSync(join(storeDir, 'apikey-ids@'))) return true;
  const tenants = join(storeDir, 'tenants@');
  if (!existsSync(tenants)) return false;
  return readdirSync(tenants).some((t) => existsSync(join(tenants, t, 'index@')) || existsSync(join(tenants, t, 'usage@')));
}

/** Where the server and the runners commit their SQLite writes (see openEmbedded). */
export const SINGLE_NODE_WRITER: SqliteWriter = 'thread';

export function openEmbedded(
  layout: DataLayout,
  opts: { blobSecret: string; publicBaseUrl: string; maxReceives?: number; writer?: SqliteWriter },
): EmbeddedAdapters {
  // The server and the runners commit in the writer thread: the WAL fsync then never holds
  // the event loop. bench:edge, embedded adapters, two runs each on a quiet machine: 1895 and
  // 1764 creates/s with p99 107 and 110 ms, against 1714 and 1590 with p99 156 and 168 ms
  // inline. (The CLI opens the store alone, inline: one short write needs no thread.)
  const writer = opts.writer ?? SINGLE_NODE_WRITER;
  const store = openEmbeddedStore(layout, { ...opts, writer });
  const jobs = new SqliteQueue({ dir: layout.queueDir, queue: QUEUES.jobs, deadLetter: { queue: QUEUES.jobsDeadLetter, maxReceives: opts.maxReceives ?? DEFAULT_MAX_RECEIVES } });
  const jobsDeadLetter = new SqliteQueue({ dir: layout.queueDir, queue: QUEUES.jobsDeadLetter });
  const webhooks = new SqliteQueue({ dir: layout.queueDir, queue: QUEUES.webhooks, deadLetter: { queue: 'webhooks-dlq', maxReceives: WEBHOOK_MAX_RECEIVES } });
  return {
    store,
    jobs,
    jobsDeadLetter,
    webhooks,
    async close() {
      const results = await Promise.allSettled([jobs.close(), jobsDeadLetter.close(), webhooks.close(), store.close()]);
      const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed.length) throw new AggregateError(failed.map((f) => f.reason), 'closing the embedded adapters failed');
    },
  };
}

/**
 * Where a queued job stands in the embedded jobs queue: messages ahead of it in delivery
 * order. Reads the SQLite queue's table directly (read-only), so it checks the schema
 * version it was written for and otherwise answers without a position. Every query is an
 * index range scan capped at MAX_AHEAD rows: this runs on the request path.
 */
export function embeddedQueueInfo(layout: DataLayout): { info: (req: StoredRequest, messageId: string | undefined) => Promise<QueueInfoValue>; close: () => void } {
  const MAX_AHEAD = 100;
  let db: Database.Database | null = null;
  let byId: Database.Statement<[string, string], { visible_at: number; seq: number }> | null = null;
  let byBody: Database.Statement<[string, string, string], { visible_at: number; seq: number }> | null = null;
  let ahead: Database.Statement<[string, number, number, number, number], { n: number }> | null = null;
  let running: Database.Statement<[string, number, number], { n: number }> | null = null;
  let retryAt = 0;
  const open = () => {
    if (db) return true;
    // no sync filesystem probe on every request: look again at most once a second
    if (Date.now() < retryAt) return false;
    retryAt = Date.now() + 1000;
    const file = join(layout.queueDir, SQLITE_QUEUE_FILE);
    if (!existsSync(file)) return false;
    const conn = new Database(file, { readonly: true, fileMustExist: true, timeout: 1000 });
    if (conn.pragma('user_version', { simple: true }) !== 1) {
      conn.close();
      return false;
    }
    db = conn;
    byId = conn.prepare('SELECT visible_at, seq FROM messages WHERE id = ? AND queue = ?');
    // only for jobs another process enqueued (this edge remembers its own message ids)
    byBody = conn.prepare("SELECT visible_at, seq FROM messages WHERE queue = ? AND body LIKE ? ESCAPE '\\' AND body LIKE ? ESCAPE '\\' LIMIT 1");
    ahead = conn.prepare(
      `SELECT COUNT(*) AS n FROM (SELECT 1 FROM messages WHERE queue = ? AND (visible_at < ? OR (visible_at = ? AND seq < ?)) LIMIT ?)`,
    );
    running = conn.prepare('SELECT COUNT(*) AS n FROM (SELECT 1 FROM messages WHERE queue = ? AND visible_at > ? AND lease_token IS NOT NULL LIMIT ?)');
    return true;
  };
  const like = (s: string) => `%${s.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
  return {
    info: async (req, messageId) => {
      try {
        if (!open()) return { position: null, reason: 'waiting for a runner' };
        const row = messageId ? byId!.get(messageId, QUEUES.jobs) : byBody!.get(QUEUES.jobs, like(`"job_id":"${req.id}"`), like(`"tenant":"${req.tenant}"`));
        const busy = running!.get(QUEUES.jobs, Date.now(), MAX_AHEAD)?.n ?? 0;
        if (!row) return { position: null, reason: `being handed to a runner (${busy} running)` };
        // messages that become visible before this one (ties by send order) are delivered first
        const n = ahead!.get(QUEUES.jobs, row.visible_at, row.visible_at, row.seq, MAX_AHEAD)?.n ?? 0;
        const running_ = `${busy}${busy >= MAX_AHEAD ? '+' : ''} running`;
        return {
          position: n,
          reason: n === 0 ? (busy > 0 ? `next in line; waiting for a free runner (${running_})` : 'next in line') : `${n}${n >= MAX_AHEAD ? '+' : ''} job(s) ahead; ${running_}`,
        };
      } catch {
        return { position: null, reason: 'waiting for a runner' };
      }
    },
    close: () => {
      (db as Database.Database | null)?.close();
      db = null;
    },
  };
}

/** The built-in models shipped in the repository. */
export const BUILTIN_MODELS_DIR = resolve(new URL('../models', import.meta.url).pathname);
