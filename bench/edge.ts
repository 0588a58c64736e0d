/**
 * `npm run bench:edge`: POST /v1/jobs throughput and latency on loopback, against a bare
 * Hono hello-world measured in the same run, for the ratio (never a timed test).
 *
 * The servers run in a child process (this file with --serve) so autocannon does not
 * share their event loop: the edge with auth on, over the embedded adapters (filesystem
 * store + SQLite queue, fsync'd like production) in a temporary DATA_DIR, and the
 * hello-world on another port. 50 connections; every request is a valid small job with its
 * own prompt (no idempotency key). No runner consumes the queue.
 *
 *   npm run bench:edge -- [--duration 10] [--connections 50]
 *
 * The last line is one JSON object: {"create_rps", "hello_rps", "ratio", "p99_ms"}.
 */
import { fork } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { serve } from '@hono/node-server';
import { createRequire } from 'node:module';
import { Hono } from 'hono';
import { startLocalEdge } from '../edge/local.ts';
import { TokenBucketLimiter } from '../edge/middleware/rate-limit/index.ts';
import { createApiKey } from '../shared/api-keys.ts';
import type { ModelInfo } from '../shared/contract/index.ts';
import { dataLayout, loadSecrets } from '../tools/single-node.ts';

/** The part of autocannon's API used here (the package ships no types). */
interface AutocannonRequest {
  setupRequest?: (req: Record<string, unknown>) => Record<string, unknown>;
}
interface AutocannonOptions {
  url: string;
  connections: number;
  duration: number;
  method?: string;
  headers?: Record<string, string>;
  requests?: AutocannonRequest[];
}
interface Histogram {
  average: number;
  p50: number;
  p99: number;
  total: number;
}
interface AutocannonResult {
  requests: Histogram;
  latency: Histogram;
  non2xx: number;
  errors: number;
  timeouts: number;
}
const autocannon = createRequire(import.meta.url)('autocannon') as (opts: AutocannonOptions, cb: (err: Error | null, result: AutocannonResult) => void) => unknown;

/** The shapes family as the catalog describes it; the bench needs no engine. */
const CATALOG: ModelInfo[] = ['shapes-base', 'shapes-layout', 'shapes-style'].map((id) => ({
  id,
  description: '',
  ecosystem: 'shapes-v1',
  latent: { channels: 4, vae_scale_factor: 4 },
  sizes: { default: [64, 64], min: 32, max: 128, multiple: 16 },
  conditions: {
    prompt: { max_tokens: 32 },
    grounding: id === 'shapes-layout' ? { max_objects: 4 } : null,
    reference_image: id === 'shapes-style' ? { width: 32, height: 32 } : null,
  },
  schedulers: ['ddim', 'euler'],
}));

interface Ready {
  edgeUrl: string;
  helloUrl: string;
  key: string;
}

async function serveBoth(): Promise<void> {
  const dataDir = mkdtempSync(join(tmpdir(), 'amdm-bench-'));
  const env = { DATA_DIR: dataDir };
  const edge = await startLocalEdge({
    dataDir,
    port: 0,
    catalog: async () => CATALOG,
    // the bench measures the request path, not the limits: keep them out of the way
    limits: { maxActiveJobs: 10_000_000 },
    rateLimiter: new TokenBucketLimiter({ ratePerSecond: 1e9, burst: 1e9 }),
    logger: { error: (m, f) => console.error(m, f), warn() {}, info() {} },
    env,
  });
  const { pepper } = loadSecrets(dataLayout(dataDir), env);
  const { FsStore } = await import('../adapters/embedded/fs-store.ts');
  const keyStore = new FsStore({ root: dataLayout(dataDir).storeDir, signing: { secret: loadSecrets(dataLayout(dataDir), env).blobSecret, baseUrl: edge.url } });
  const { key } = await createApiKey(keyStore, { tenant: 'bench', pepper });

  const hello = new Hono();
  hello.get('/', (c) => c.text('Hello Hono!'));
  const helloServer = serve({ fetch: hello.fetch, port: 0, hostname: '127.0.0.1' });
  await new Promise<void>((r) => helloServer.once('listening', () => r()));
  const helloPort = (helloServer.address() as { port: number }).port;

  process.send!({ edgeUrl: edge.url, helloUrl: `http://127.0.0.1:${helloPort}/`, key } satisfies Ready);
  process.on('disconnect', () => {
    void edge.close().finally(() => {
      helloServer.close();
      rmSync(dataDir, { recursive: true, force: true });
      process.exit(0);
    });
  });
}

function run(opts: AutocannonOptions): Promise<AutocannonResult> {
  return new Promise((resolve, reject) => {
    autocannon(opts, (err, result) => (err ? reject(err) : resolve(result)));
  });
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { duration: { type: 'string', default: '10' }, connections: { type: 'string', default: '50' }, serve: { type: 'boolean' } } });
  if (values.serve) return serveBoth();
  const duration = Number(values.duration);
  const connections = Number(values.connections);

  const child = fork(new URL(import.meta.url).pathname, ['--serve'], {
    execArgv: ['--import', 'tsx', ...(process.env.BENCH_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`] : [])],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    // as npm start runs it: the fsync'd store writes need more than libuv's 4 threads
    env: { ...process.env, UV_THREADPOOL_SIZE: process.env.UV_THREADPOOL_SIZE ?? '64' },
  });
  const ready = await new Promise<Ready>((resolve, reject) => {
    child.once('message', (m) => resolve(m as Ready));
    child.once('exit', (code) => reject(new Error(`the server process exited with ${code}`)));
  });

  let n = 0;
  const createOpts = (d: number): AutocannonOptions => ({
    url: `${ready.edgeUrl}/v1/jobs`,
    connections,
    duration: d,
    method: 'POST',
    headers: { authorization: `Bearer ${ready.key}`, 'content-type': 'application/json' },
    // a distinct body per request: nothing can be served from a cache or an idempotency claim
    requests: [
      {
        setupRequest: (req) => ({
          ...req,
          body: JSON.stringify({ models: [{ id: 'shapes-base', role: 'base', prompt: `bench ${n++}` }], sampler: { steps: 20, seed: n } }),
        }),
      },
    ],
  });

  // warm both up (JIT, fs caches, the key cache), then measure
  await run({ url: ready.helloUrl, connections, duration: 2 });
  await run(createOpts(2));
  const hello = await run({ url: ready.helloUrl, connections, duration });
  const create = await run(createOpts(duration));
  child.disconnect();

  const bad = create.non2xx + create.errors + create.timeouts;
  const createRps = create.requests.average;
  const helloRps = hello.requests.average;
  const summary = {
    create_rps: Math.round(createRps),
    hello_rps: Math.round(helloRps),
    ratio: Math.round((createRps / helloRps) * 1000) / 1000,
    p99_ms: create.latency.p99,
  };
  console.log(`hello-world: ${Math.round(helloRps)} req/s, p50 ${hello.latency.p50} ms, p99 ${hello.latency.p99} ms`);
  console.log(`POST /v1/jobs: ${Math.round(createRps)} req/s, p50 ${create.latency.p50} ms, p99 ${create.latency.p99} ms, ${create.requests.total} jobs, ${bad} not 2xx/errors/timeouts`);
  console.log(`targets: ratio >= 0.3 (${summary.ratio >= 0.3 ? 'met' : 'missed'}), p99 <= 25 ms (${summary.p99_ms <= 25 ? 'met' : 'missed'})`);
  console.log(JSON.stringify(summary));
}

main().catch((err) => {
  console.error(`bench:edge: ${(err as Error).message}`);
  process.exit(1);
});
