/**
 * The edge's single-node root: builds createApp's deps from DATA_DIR (filesystem store,
 * SQLite queue, secrets) and serves the app with @hono/node-server on 127.0.0.1.
 *
 * `npm start` (tools/start.ts) calls startLocalEdge in the same process as the runner and
 * hands it the shared adapters and the engine's catalog. Run alone (`npx tsx
 * edge/local.ts`), it opens its own adapters and reads the catalog from an engine in a
 * sampler thread, so onnxruntime never loads on the edge's event loop.
 */
import { readFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { pathToFileURL } from 'node:url';
import { serve } from '@hono/node-server';
import type { ModelInfo } from '../shared/contract/index.ts';
import type { JobQueue } from '../shared/ports/queue.ts';
import type { ObjectStore } from '../shared/ports/store.ts';
import { BUILTIN_MODELS_DIR, dataLayout, embeddedQueueInfo, loadSecrets, openEmbedded } from '../tools/single-node.ts';
import { tokenCounter } from '../gpu-runner/engine/token-counter.ts';
import { createApp } from './app.ts';
import { answerClientErrors } from './client-error.ts';
import type { EdgeLimits } from './deps.ts';
import type { Logger } from './middleware/problem/index.ts';
import type { RateLimiter } from './middleware/rate-limit/index.ts';

export interface LocalEdgeOptions {
  dataDir: string;
  port: number;
  /** loopback by default: the single-node server is not meant to face the internet directly */
  host?: string;
  /** what clients use to reach this server; default http://{host}:{port} */
  publicBaseUrl?: string;
  catalog: () => Promise<ModelInfo[]>;
  /** the model packages' folders: their tokenizers answer POST /v1/models/{id}/tokens (absent: 501) */
  modelsDirs?: string[];
  /** share the runner's handles in one process; default: open our own */
  adapters?: { store: ObjectStore; jobs: JobQueue };
  allowPrivateWebhooks?: boolean;
  limits?: Partial<EdgeLimits>;
  rateLimiter?: RateLimiter;
  logger?: Logger;
  env?: NodeJS.ProcessEnv;
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
  const layout = dataLayout(o.dataDir);
  const secrets = loadSecrets(layout, o.env);
  const own = o.adapters ? null : openEmbedded(layout, { blobSecret: secrets.blobSecret, publicBaseUrl });
  const adapters = o.adapters ?? own!;
  const position = embeddedQueueInfo(layout);
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
    catalog,
    pepper: secrets.pepper,
    publicBaseUrl,
    localBlobs: { secret: secrets.blobSecret },
    queueInfo: position.info,
    ...(o.modelsDirs ? { countTokens: tokenCounter(o.modelsDirs) } : {}),
    allowPrivateWebhooks: o.allowPrivateWebhooks ?? false,
    // the playground may offer the local key only when nothing but this machine can reach us
    ...(isLoopback(host) && isLoopback(new URL(publicBaseUrl).hostname) ? { localApiKey: () => readLocalKey(layout.localKeyFile) } : {}),
    ...(o.limits ? { limits: o.limits } : {}),
    ...(o.rateLimiter ? { rateLimiter: o.rateLimiter } : {}),
    ...(o.logger ? { logger: o.logger } : {}),
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
        position.close();
        if (own) await own.close();
      })()),
  };
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
  });
  console.log(JSON.stringify({ level: 'info', component: 'edge', msg: 'listening', url: edge.url }));
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
