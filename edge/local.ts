/**
 * The edge's single-node root: builds createApp's deps from DATA_DIR (filesystem store,
 * SQLite queue, secrets) and serves the app with @hono/node-server on 127.0.0.1.
 *
 * `npm start` (single-node/start.ts) calls startLocalEdge in the same process as the runner and
 * hands it the shared adapters and the engine's catalog. Run alone (`npx tsx
 * edge/local.ts`), it opens its own adapters and reads the catalog from an engine in a
 * sampler thread, so onnxruntime never loads on the edge's event loop.
 *
 * It also tells the app where each request comes from (the socket's peer, or the client a
 * trusted reverse proxy names in X-Forwarded-For), so that requests without a valid key and
 * signed-URL requests are limited per address, and how to see at once that `amdm keys
 * revoke` (any process) revoked a key: the key revision, one SQLite row read per request.
 */
import { readFile } from 'node:fs/promises';
import { BlockList, isIP, type AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { pathToFileURL } from 'node:url';
import { serve } from '@hono/node-server';
import { getConnInfo } from '@hono/node-server/conninfo';
import type { Context } from 'hono';
import { SqliteQueue } from '../adapters/embedded/sqlite-queue.ts';
import { keyRevision } from '../shared/api-keys.ts';
import type { ModelInfo } from '../shared/contract/index.ts';
import type { JobAdmission } from '../shared/ports/admission.ts';
import type { JobQueue } from '../shared/ports/queue.ts';
import type { ObjectStore } from '../shared/ports/store.ts';
import { jsonLogger, type Logger } from '../shared/logger.ts';
import { StorageHealth } from '../shared/storage-health.ts';
import { BUILTIN_MODELS_DIR, dataLayout, embeddedQueueInfo, loadSecrets, openEmbedded } from '../single-node/data-dir.ts';
import { tokenCounter } from '../gpu-runner/engine/token-counter.ts';
import { createApp } from './app.ts';
import { answerClientErrors } from './client-error.ts';
import { clientAddress, type ProxyTrust } from './client-address.ts';
import type { EdgeLimits } from './deps.ts';
import type { RateLimiter } from './middleware/rate-limit/index.ts';

export interface LocalEdgeOptions {
  dataDir: string;
  port: number;
  /** loopback by default: the single-node server is not meant to face the internet directly */
  host?: string;
  /** what clients use to reach this server; default http://{host}:{port} */
  publicBaseUrl?: string;
  catalog: () => Promise<ModelInfo[]>;
  /**
   * share the runner's handles in one process; default: open our own. Without `admission`,
   * the cap on active jobs is this process's own count (edge/active-jobs.ts).
   */
  adapters?: { store: ObjectStore; jobs: JobQueue; admission?: JobAdmission };
  /** the model packages' folders: their tokenizers answer POST /v1/models/{id}/tokens (absent: 501) */
  modelsDirs?: string[];
  allowPrivateWebhooks?: boolean;
  limits?: Partial<EdgeLimits>;
  rateLimiter?: RateLimiter;
  /**
   * Reverse proxies in front of this server (addresses or CIDR blocks): only when the direct
   * peer is one of them does X-Forwarded-For say who the client is (edge/client-address.ts).
   * Default none: the peer is the client.
   */
  trustedProxies?: string[];
  /** per client address: requests without a valid key, and signed-URL requests; default 20/s, bursts of 100 */
  addressLimiter?: RateLimiter;
  logger?: Logger;
  env?: NodeJS.ProcessEnv;
  /**
   * Whether the storage is full, for /healthz: share the runner's (and the adapters') in one
   * process; default one of our own, watching the adapters we open.
   */
  storageHealth?: StorageHealth;
}

export interface LocalEdge {
  url: string;
  server: Server;
  app: ReturnType<typeof createApp>;
  /** stop accepting, give open requests a moment, then close everything we opened */
  close(): Promise<void>;
}

export async function startLocalEdge(o: LocalEdgeOptions): Promise<LocalEdge> {
  const host = o.host ?? '127.0.0.1';
  const publicBaseUrl = (o.publicBaseUrl ?? `http://${host}:${o.port}`).replace(/\/+$/, '');
  const trust = proxyTrust(o.trustedProxies ?? [], 'option "trustedProxies"');
  const layout = dataLayout(o.dataDir);
  const secrets = loadSecrets(layout, o.env);
  const storageHealth = o.storageHealth ?? new StorageHealth({ logger: o.logger ?? jsonLogger('edge') });
  const own = o.adapters ? null : openEmbedded(layout, { blobSecret: secrets.blobSecret, publicBaseUrl, storage: storageHealth });
  const adapters = o.adapters ?? own!;
  // the embedded jobs queue can say where a job stands; any other queue leaves it to its counts
  const queueInfo = adapters.jobs instanceof SqliteQueue ? embeddedQueueInfo(adapters.jobs) : null;
  // The catalog changes only when the models folder does. Requests get the last good copy
  // at once and a stale one is refreshed behind them: asking the engine can take as long
  // as one sampling step when its thread is busy.
  let cached: { at: number; value: ModelInfo[] } | null = null;
  let loading: Promise<ModelInfo[]> | null = null;
  const refresh = () =>
    (loading ??= o
      .catalog()
      .then((value) => {
        cached = { at: Date.now(), value };
        return value;
      })
      .finally(() => (loading = null)));
  const catalog = async () => {
    if (!cached) return refresh();
    if (Date.now() - cached.at > 60_000) refresh().catch(() => {});
    return cached.value;
  };
  const app = createApp({
    store: adapters.store,
    queue: adapters.jobs,
    ...(adapters.admission ? { admission: adapters.admission } : {}),
    catalog,
    pepper: secrets.pepper,
    publicBaseUrl,
    localBlobs: { secret: secrets.blobSecret },
    ...(queueInfo ? { queueInfo } : {}),
    ...(o.modelsDirs ? { countTokens: tokenCounter(o.modelsDirs) } : {}),
    allowPrivateWebhooks: o.allowPrivateWebhooks ?? false,
    // the playground may offer the local key only when nothing but this machine can reach us
    ...(isLoopback(host) && isLoopback(new URL(publicBaseUrl).hostname) ? { localApiKey: () => readLocalKey(layout.localKeyFile) } : {}),
    ...(o.limits ? { limits: o.limits } : {}),
    ...(o.rateLimiter ? { rateLimiter: o.rateLimiter } : {}),
    clientAddress: (c) => requestAddress(c, trust),
    // a SQLite row: cheap enough to read on every request, so `amdm keys revoke` takes effect at once
    keyRevision: () => keyRevision(adapters.store),
    ...(o.addressLimiter ? { addressLimiter: o.addressLimiter } : {}),
    ...(o.logger ? { logger: o.logger } : {}),
    storageHealth,
  });

  const server = await new Promise<Server>((resolve, reject) => {
    const s = serve({ fetch: app.fetch, port: o.port, hostname: host }) as Server;
    answerClientErrors(s);
    s.once('listening', () => resolve(s));
    s.once('error', (err: NodeJS.ErrnoException) =>
      reject(err.code === 'EADDRINUSE' ? new Error(`port ${o.port} on ${host} is in use; set PORT to another port`) : err),
    );
  });
  const port = (server.address() as AddressInfo).port;
  let closing: Promise<void> | null = null;
  return {
    url: o.publicBaseUrl ? publicBaseUrl : `http://${host}:${port}`,
    server,
    app,
    close: () =>
      (closing ??= (async () => {
        const closed = new Promise<void>((r) => server.close(() => r()));
        server.closeIdleConnections();
        // a Prefer: wait request may hold on for a minute; do not wait for it
        const force = setTimeout(() => server.closeAllConnections(), 5000);
        await closed;
        clearTimeout(force);
        if (own) await own.close();
      })()),
  };
}

/**
 * The single node's edge settings from its environment, for both roots that start it (this
 * file's main and single-node/start.ts): AMDM_MAX_ACTIVE_JOBS (queued + running jobs per tenant,
 * default 50) and AMDM_TRUSTED_PROXY (comma-separated addresses or CIDR blocks of the
 * reverse proxies in front of the server; default none).
 */
export function localEdgeSettings(env: NodeJS.ProcessEnv): Pick<LocalEdgeOptions, 'limits' | 'trustedProxies'> {
  const out: Pick<LocalEdgeOptions, 'limits' | 'trustedProxies'> = {};
  const raw = env.AMDM_MAX_ACTIVE_JOBS;
  if (raw !== undefined && raw !== '') {
    const n = Number(raw);
    if (!Number.isSafeInteger(n) || n < 1) throw new Error(`AMDM_MAX_ACTIVE_JOBS must be a positive integer (got ${JSON.stringify(raw)})`);
    out.limits = { maxActiveJobs: n };
  }
  const proxies = (env.AMDM_TRUSTED_PROXY ?? '').split(',').map((p) => p.trim()).filter(Boolean);
  if (proxies.length > 0) {
    proxyTrust(proxies, 'AMDM_TRUSTED_PROXY');
    out.trustedProxies = proxies;
  }
  return out;
}

/** An address literal as the socket reports it or a proxy writes it, canonical, or null. */
function parseAddress(literal: string): string | null {
  let a = literal;
  const bracketed = /^\[([^\]]+)\](?::\d{1,5})?$/.exec(a);
  if (bracketed) a = bracketed[1]!;
  else if (/^\d{1,3}(?:\.\d{1,3}){3}:\d{1,5}$/.test(a)) a = a.slice(0, a.lastIndexOf(':'));
  // an IPv4 client of a dual-stack socket
  if (/^::ffff:\d{1,3}(?:\.\d{1,3}){3}$/i.test(a)) a = a.slice(7);
  const family = isIP(a);
  if (family === 4) return a;
  if (family !== 6) return null;
  try {
    // the WHATWG serializer: lowercase, no leading zeros, the longest zero run as '::'
    return new URL(`http://[${a}]/`).hostname.slice(1, -1);
  } catch {
    return a.toLowerCase();
  }
}

/** Node's BlockList over the given addresses and CIDR blocks; a bad entry is an error naming `what`. */
function proxyTrust(entries: string[], what: string): ProxyTrust {
  const list = new BlockList();
  for (const entry of entries) {
    const [addr, prefix, extra] = entry.trim().split('/');
    const address = addr === undefined ? null : parseAddress(addr);
    const family = address === null ? 0 : isIP(address);
    const bits = prefix === undefined ? null : /^\d{1,3}$/.test(prefix) ? Number(prefix) : NaN;
    if (address === null || extra !== undefined || (bits !== null && !(bits >= 0 && bits <= (family === 4 ? 32 : 128)))) {
      throw new Error(`${what}: ${JSON.stringify(entry)} is not an IP address or a CIDR block such as 10.0.0.0/8 or fd00::/8`);
    }
    const type = family === 4 ? 'ipv4' : 'ipv6';
    if (bits === null) list.addAddress(address, type);
    else list.addSubnet(address, bits, type);
  }
  return { parse: parseAddress, trusted: (a) => entries.length > 0 && list.check(a, isIP(a) === 4 ? 'ipv4' : 'ipv6') };
}

/** Who sent the request: the socket's peer, or whom a trusted proxy says it forwarded. */
function requestAddress(c: Context, trust: ProxyTrust): string | undefined {
  let peer: string | undefined;
  try {
    peer = getConnInfo(c).remote.address;
  } catch {
    // not served through @hono/node-server (app.request in a test): no address
    return undefined;
  }
  const canonical = peer === undefined ? null : parseAddress(peer);
  if (canonical === null) return undefined;
  return clientAddress(canonical, c.req.header('x-forwarded-for'), trust);
}

function isLoopback(hostname: string): boolean {
  return /^(?:127(?:\.\d{1,3}){3}|localhost|::1|\[::1\])$/i.test(hostname);
}

/** The key `npm start` wrote (DATA_DIR/local-api-key), read on each offer so a new key shows at once. */
async function readLocalKey(file: string): Promise<string | null> {
  try {
    return (await readFile(file, 'utf8')).trim() || null;
  } catch {
    return null;
  }
}

async function main(): Promise<void> {
  const env = process.env;
  const port = Number(env.PORT ?? 8787);
  if (!Number.isInteger(port) || port < 0 || port > 65_535) throw new Error(`PORT must be a port number (got ${JSON.stringify(env.PORT)})`);
  const { SamplerThread } = await import('../gpu-runner/sampler-thread.ts');
  const catalogThread = new SamplerThread({
    name: 'amdm-catalog',
    engine: { module: new URL('../gpu-runner/engine/index.ts', import.meta.url).href, options: { modelsDirs: [env.AMDM_MODELS_DIR || BUILTIN_MODELS_DIR], provider: 'cpu' } },
  });
  const edge = await startLocalEdge({
    dataDir: env.DATA_DIR || './data',
    port,
    ...(env.PUBLIC_BASE_URL ? { publicBaseUrl: env.PUBLIC_BASE_URL } : {}),
    catalog: () => catalogThread.catalog(),
    modelsDirs: [env.AMDM_MODELS_DIR || BUILTIN_MODELS_DIR],
    allowPrivateWebhooks: env.AMDM_ALLOW_PRIVATE_WEBHOOKS === '1',
    ...localEdgeSettings(env),
  });
  jsonLogger('edge').info('listening', { url: edge.url });
  let signals = 0;
  const stop = () => {
    if (++signals > 1) process.exit(1);
    void Promise.allSettled([edge.close(), catalogThread.dispose()]).then(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err) => {
    console.error(`edge: ${(err as Error).message}`);
    process.exit(1);
  });
}
