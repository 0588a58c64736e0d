/**
 * The local stack for end-to-end and fault tests: the edge over real HTTP on 127.0.0.1,
 * the runner with its sampler threads and the webhook dispatcher, in this process, over
 * the embedded adapters in a fresh temporary DATA_DIR. By default the real AMDM engine
 * with the built-in models; `engine` swaps in another Engine module.
 */
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startLocalEdge, type LocalEdge } from '../../edge/local.ts';
import { silentLogger, type Logger } from '../../gpu-runner/logger.ts';
import { runnerConfigFromEnv, selectAdapters, startRunner, type RunnerAdapters, type RunnerConfig, type RunnerHandle } from '../../gpu-runner/main.ts';
import type { EngineFactoryRef } from '../../gpu-runner/sampler-thread.ts';
import { createApiKey } from '../../shared/api-keys.ts';
import { JobRepository } from '../../shared/job-repository.ts';
import { BUILTIN_MODELS_DIR, dataLayout, loadSecrets } from '../../tools/single-node.ts';

/** The real engine needs model packages: the built-in models/, or AMDM_MODELS_DIR as everywhere else. */
export const MODELS_DIR = process.env.AMDM_MODELS_DIR || BUILTIN_MODELS_DIR;
export const MODELS_PRESENT = existsSync(MODELS_DIR) && readdirSync(MODELS_DIR).length > 0;

export interface Stack {
  url: string;
  dataDir: string;
  /** tenant "alpha" */
  key: string;
  /** tenant "beta" */
  otherKey: string;
  adapters: RunnerAdapters;
  repo: JobRepository;
  runner: RunnerHandle;
  edge: LocalEdge;
  api(path: string, init?: { method?: string; key?: string | null; body?: unknown; headers?: Record<string, string> }): Promise<Response>;
  close(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export async function startStack(opts: { engine?: EngineFactoryRef; config?: Partial<RunnerConfig>; logger?: Logger } = {}): Promise<Stack> {
  const dataDir = mkdtempSync(join(tmpdir(), 'amdm-e2e-'));
  const port = await freePort();
  const env = { DATA_DIR: dataDir, PORT: String(port), AMDM_MODELS_DIR: MODELS_DIR };
  const config: RunnerConfig = {
    ...runnerConfigFromEnv(env),
    visibilitySeconds: 10,
    gracePeriodSeconds: 1,
    allowPrivateWebhooks: true,
    // small ONNX graphs on a shared 2-core machine: one thread each keeps the tests fair to others
    intraOpNumThreads: 1,
    ...(opts.engine ? { engine: opts.engine } : {}),
    ...opts.config,
  };
  const adapters = selectAdapters(config, env);
  const logger = opts.logger ?? silentLogger;
  const runner = await startRunner(config, adapters, { logger });
  const edge = await startLocalEdge({
    dataDir,
    port,
    publicBaseUrl: config.publicBaseUrl,
    catalog: () => runner.engine.catalog(),
    adapters: { store: adapters.store, jobs: adapters.jobs },
    allowPrivateWebhooks: true,
    logger,
    env,
  });
  const { pepper } = loadSecrets(dataLayout(dataDir), env);
  const key = (await createApiKey(adapters.store, { tenant: 'alpha', pepper })).key;
  const otherKey = (await createApiKey(adapters.store, { tenant: 'beta', pepper })).key;
  const api: Stack['api'] = (path, init = {}) =>
    fetch(path.startsWith('http') ? path : `${edge.url}${path}`, {
      method: init.method ?? (init.body !== undefined ? 'POST' : 'GET'),
      headers: {
        ...(init.key === null ? {} : { authorization: `Bearer ${init.key ?? key}` }),
        ...(init.body !== undefined ? { 'content-type': 'application/json' } : {}),
        ...init.headers,
      },
      ...(init.body !== undefined ? { body: typeof init.body === 'string' ? init.body : JSON.stringify(init.body) } : {}),
    });
  let closed = false;
  return {
    url: edge.url,
    dataDir,
    key,
    otherKey,
    adapters,
    repo: new JobRepository(adapters.store),
    runner,
    edge,
    api,
    async close() {
      if (closed) return;
      closed = true;
      await edge.close();
      await runner.abortNow();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Poll until `f` returns a truthy value, or fail naming what did not happen. */
export async function until<T>(f: () => Promise<T | null | undefined | false>, what: string, timeoutMs = 60_000, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
