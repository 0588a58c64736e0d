/**
 * `npm run bench:edge`: POST /v1/jobs throughput and latency on loopback, against a bare
 * Hono hello-world measured in the same run, for the ratio (never a timed test).
 *
 * The servers run in a child process (this file with --serve) so autocannon does not share
 * their event loop: the edge as `npm start` builds it (startLocalEdge with auth on, over the
 * embedded adapters: filesystem store + SQLite queue, every write fsync'd before the 202) in a
 * temporary DATA_DIR, and the hello-world on another port. No runner consumes the queue.
 *
 * Sequence: a check that sample bodies are accepted; warm-up of both (`--warmup` seconds of
 * creates: JIT, caches, the key cache); then hello-world, POST /v1/jobs and hello-world again,
 * and last the floor (the same bodies read and validated by the contract's schema, answered
 * with a job-sized record, nothing else: what this stack costs before our own work),
 * `--duration` seconds each.
 * The ratio uses the mean of the two hello-world runs, which brackets the create run on a
 * machine whose load drifts. Every request body is a distinct, valid job drawn from a seeded
 * mix (one to three models, grounding boxes, a small inline reference image, webhooks,
 * sizes, steps, several images), with no Idempotency-Key. At the end the queue must hold one
 * message per accepted job (index entry), and the client must have seen no other answer.
 *
 *   npm run bench:edge -- [--duration 10] [--warmup 10] [--connections 50] [--adapters embedded|memory]
 *                         [--sqlite-writer inline|thread]
 *
 * `--adapters memory` measures the edge alone (in-memory store and queue, nothing durable).
 * BENCH_CPU_PROF=dir writes a V8 CPU profile of the server's main thread during the create
 * run alone (not the warm-up or the hello-world runs it also serves) there, and prints its
 * hottest functions. The thread pool is libuv's default unless UV_THREADPOOL_SIZE is set,
 * as for `npm start`.
 *
 * The last line is one JSON object: {"create_rps", "hello_rps", "ratio", "p99_ms", "floor_ratio"}.
 */
import { fork } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { serve } from '@hono/node-server';
import { createRequire } from 'node:module';
import { Hono } from 'hono';
import { MemoryQueue } from '../adapters/memory/memory-queue.ts';
import { MemoryStore } from '../adapters/memory/memory-store.ts';
import { startLocalEdge } from '../edge/local.ts';
import { TokenBucketLimiter } from '../edge/middleware/rate-limit/index.ts';
import { createApiKey } from '../shared/api-keys.ts';
import { DEFAULT_SQLITE_WRITER, type SqliteWriter } from '../adapters/embedded/sqlite-database.ts';
import { JobRequest } from '../shared/contract/index.ts';
import { CATALOG, jobBody } from './job-bodies.ts';
import type { JobQueue } from '../shared/ports/queue.ts';
import type { ObjectStore } from '../shared/ports/store.ts';
import { dataLayout, loadSecrets, openEmbedded } from '../single-node/data-dir.ts';

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
  p99_9: number;
  total: number;
}
interface AutocannonResult {
  requests: Histogram;
  latency: Histogram;
  '2xx': number;
  non2xx: number;
  errors: number;
  timeouts: number;
}
const autocannon = createRequire(import.meta.url)('autocannon') as (opts: AutocannonOptions, cb: (err: Error | null, result: AutocannonResult) => void) => unknown;

interface Ready {
  edgeUrl: string;
  helloUrl: string;
  key: string;
}

type ToServer = 'start' | 'stop' | 'count';
type FromServer =
  | { kind: 'ready'; ready: Ready }
  | { kind: 'usage'; userUs: number; systemUs: number; eventLoopUtilization: number; store: unknown; queue: unknown; profile: string | null }
  | { kind: 'count'; queued: number; indexed: number };

async function serveBoth(adapterKind: string, writer: SqliteWriter | undefined, profileDir: string | null): Promise<void> {
  const dataDir = mkdtempSync(join(tmpdir(), 'amdm-bench-'));
  const env = { DATA_DIR: dataDir };
  const layout = dataLayout(dataDir);
  const secrets = loadSecrets(layout, env);
  // opened here rather than by startLocalEdge, as `npm start` does, to read their counters
  const embedded = adapterKind === 'embedded' ? openEmbedded(layout, { blobSecret: secrets.blobSecret, publicBaseUrl: 'http://127.0.0.1', ...(writer ? { writer } : {}) }) : null;
  const adapters: { store: ObjectStore; jobs: JobQueue } = embedded ?? {
    store: new MemoryStore({ signing: { secret: secrets.blobSecret, baseUrl: 'http://127.0.0.1' } }),
    jobs: new MemoryQueue(),
  };
  const edge = await startLocalEdge({
    dataDir,
    port: 0,
    catalog: async () => CATALOG,
    adapters,
    // the bench measures the request path, not the limits: keep them out of the way
    limits: { maxActiveJobs: 10_000_000 },
    rateLimiter: new TokenBucketLimiter({ ratePerSecond: 1e9, burst: 1e9 }),
    logger: { error: (m, f) => console.error(m, f), warn() {}, info() {} },
    env,
  });
  const { key } = await createApiKey(adapters.store, { tenant: 'bench', pepper: secrets.pepper });

  const hello = new Hono();
  hello.get('/', (c) => c.text('Hello Hono!'));
  // the floor of a create on this stack: read the JSON, validate it with the contract's
  // schema and answer with a job-sized record; no auth, shaping or storage
  hello.post('/floor', async (c) => {
    const parsed = JobRequest.safeParse(await c.req.json());
    if (!parsed.success) return c.json({ title: 'invalid' }, 422);
    return c.json({ id: 'job_00000000000000000000000000', object: 'job', status: 'queued', created_at: new Date().toISOString(), request: parsed.data }, 202);
  });
  const helloServer = serve({ fetch: hello.fetch, port: 0, hostname: '127.0.0.1' });
  await new Promise<void>((r) => helloServer.once('listening', () => r()));
  const helloPort = (helloServer.address() as { port: number }).port;

  const send = (m: FromServer) => process.send!(m);
  const counters = () => ({
    store: (adapters.store as { commitStats?: unknown }).commitStats ?? null,
    queue: (adapters.jobs as { sendStats?: unknown }).sendStats ?? null,
  });
  let cpu0 = process.cpuUsage();
  let elu0 = performance.eventLoopUtilization();
  let before = JSON.stringify(counters());
  const profiler = profileDir ? { session: new Session(), dir: profileDir } : null;
  profiler?.session.connect();
  process.on('message', async (m: ToServer) => {
    if (m === 'start') {
      if (profiler) {
        await profiler.session.post('Profiler.enable');
        await profiler.session.post('Profiler.start');
      }
      cpu0 = process.cpuUsage();
      elu0 = performance.eventLoopUtilization();
      before = JSON.stringify(counters());
    } else if (m === 'stop') {
      const cpu = process.cpuUsage(cpu0);
      const elu = performance.eventLoopUtilization(elu0).utilization;
      let profile: string | null = null;
      if (profiler) {
        const { profile: p } = await profiler.session.post('Profiler.stop');
        mkdirSync(profiler.dir, { recursive: true });
        profile = join(profiler.dir, `bench-edge-create-${Date.now()}.cpuprofile`);
        writeFileSync(profile, JSON.stringify(p));
      }
      const now = counters();
      const was = JSON.parse(before) as typeof now;
      const delta = (a: unknown, b: unknown) =>
        a && b ? Object.fromEntries(Object.entries(a as Record<string, number>).map(([k, v]) => [k, v - (b as Record<string, number>)[k]!])) : null;
      send({
        kind: 'usage',
        userUs: cpu.user,
        systemUs: cpu.system,
        eventLoopUtilization: elu,
        store: delta(now.store, was.store),
        queue: delta(now.queue, was.queue),
        profile,
      });
    } else if (m === 'count') {
      void (async () => {
        const s = await adapters.jobs.stats();
        // index entries are the edge's mark of an accepted job (docs/architecture.md)
        let indexed = 0;
        let cursor: string | null = null;
        do {
          const page = await adapters.store.list('tenants/bench/index/', { cursor, limit: 1000 });
          indexed += page.keys.length;
          cursor = page.cursor;
        } while (cursor !== null);
        send({ kind: 'count', queued: s.visible + s.inFlight + s.delayed, indexed });
      })();
    }
  });
  send({ kind: 'ready', ready: { edgeUrl: edge.url, helloUrl: `http://127.0.0.1:${helloPort}/`, key } });
  process.on('disconnect', () => {
    void edge
      .close()
      .then(() => embedded?.close())
      .finally(() => {
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

/** The hottest functions of a V8 CPU profile, by self and by inclusive samples. */
function summarizeProfile(file: string, top = 25): string[] {
  interface Node {
    id: number;
    callFrame: { functionName: string; url: string; lineNumber: number };
    children?: number[];
  }
  const profile = JSON.parse(readFileSync(file, 'utf8')) as { nodes: Node[]; samples: number[] };
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const name = (n: Node) =>
    `${n.callFrame.functionName || '(anonymous)'} ${n.callFrame.url.replace(/^file:\/\/.*?\/(node_modules\/)?/, '').replace(/^.*node_modules\//, '')}:${n.callFrame.lineNumber + 1}`;
  const self = new Map<string, number>();
  const inclusive = new Map<string, number>();
  for (const id of profile.samples) {
    const leaf = byId.get(id)!;
    self.set(name(leaf), (self.get(name(leaf)) ?? 0) + 1);
    const seen = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const nm = name(byId.get(at)!);
      if (!seen.has(nm)) inclusive.set(nm, (inclusive.get(nm) ?? 0) + 1);
      seen.add(nm);
    }
  }
  const total = profile.samples.length;
  const lines = (m: Map<string, number>) =>
    [...m].sort((a, b) => b[1] - a[1]).slice(0, top).map(([k, v]) => `  ${((100 * v) / total).toFixed(1).padStart(5)}%  ${k}`);
  return [`profile ${file} (${total} samples, wall-clock sampling: idle and preemption included)`, 'self:', ...lines(self), 'inclusive:', ...lines(inclusive)];
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      duration: { type: 'string', default: '10' },
      connections: { type: 'string', default: '50' },
      adapters: { type: 'string', default: 'embedded' },
      warmup: { type: 'string', default: '10' },
      serve: { type: 'string' },
      'sqlite-writer': { type: 'string' },
    },
  });
  const writer = values['sqlite-writer'];
  if (writer !== undefined && writer !== 'inline' && writer !== 'thread') throw new Error(`--sqlite-writer must be inline or thread (got ${writer})`);
  if (values.serve !== undefined) return serveBoth(values.serve, writer, process.env.BENCH_CPU_PROF || null);
  const duration = Number(values.duration);
  const connections = Number(values.connections);
  const warmup = Number(values.warmup);
  if (!(duration >= 1) || !(warmup >= 1) || !Number.isInteger(connections) || connections < 1) {
    throw new Error('--duration, --warmup and --connections must be positive numbers');
  }
  if (values.adapters !== 'embedded' && values.adapters !== 'memory') throw new Error(`--adapters must be embedded or memory (got ${values.adapters})`);

  const child = fork(new URL(import.meta.url).pathname, ['--serve', values.adapters, ...(writer ? ['--sqlite-writer', writer] : [])], {
    execArgv: ['--import', 'tsx'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const messages: FromServer[] = [];
  let wake: (() => void) | null = null;
  let exited: string | null = null;
  const gone = new Promise<void>((resolve) =>
    child.once('exit', (code, signal) => {
      exited = `the server process exited with ${signal ?? code}`;
      wake?.();
      resolve();
    }),
  );
  child.on('message', (m) => {
    messages.push(m as FromServer);
    wake?.();
  });
  const next = async <K extends FromServer['kind']>(kind: K): Promise<Extract<FromServer, { kind: K }>> => {
    for (;;) {
      const i = messages.findIndex((m) => m.kind === kind);
      if (i >= 0) return messages.splice(i, 1)[0] as Extract<FromServer, { kind: K }>;
      if (exited) throw new Error(exited);
      await new Promise<void>((resolve) => (wake = resolve));
    }
  };
  const { ready } = await next('ready');

  let n = 0;
  let accepted = 0;
  const headers = { authorization: `Bearer ${ready.key}`, 'content-type': 'application/json' };
  const createOpts = (d: number): AutocannonOptions => ({
    url: `${ready.edgeUrl}/v1/jobs`,
    connections,
    duration: d,
    method: 'POST',
    headers,
    requests: [{ setupRequest: (req) => ({ ...req, body: JSON.stringify(jobBody(n++)) }) }],
  });

  console.log(
    `bench:edge: ${values.adapters} adapters${values.adapters === 'embedded' ? ` (SQLite writer ${writer ?? `${DEFAULT_SQLITE_WRITER}, the default`})` : ''}, ${connections} connections, ${duration} s per run after ${warmup} s of warm-up; ` +
      `${availableParallelism()} CPUs, load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}, ` +
      `UV_THREADPOOL_SIZE=${process.env.UV_THREADPOOL_SIZE ?? '4 (default)'}`,
  );
  // every kind of body must be accepted, or the numbers measure error paths
  for (let i = 0; i < 40; i++) {
    const res = await fetch(`${ready.edgeUrl}/v1/jobs`, { method: 'POST', headers, body: JSON.stringify(jobBody(n++)) });
    if (res.status !== 202) throw new Error(`sample body ${n - 1} got ${res.status}: ${await res.text()}`);
    accepted++;
  }
  // Warm both up, then measure. The create path needs thousands of requests before V8 stops
  // optimizing it: after 2 s of warm-up, TurboFan still took a fifth of the server's CPU in
  // the measured run (perf record), against 6% after 12 s.
  await run({ url: ready.helloUrl, connections, duration: 2 });
  const warm = await run(createOpts(warmup));
  accepted += warm['2xx'];
  const hello1 = await run({ url: ready.helloUrl, connections, duration });
  child.send('start' satisfies ToServer);
  const create = await run(createOpts(duration));
  child.send('stop' satisfies ToServer);
  const usage = await next('usage');
  accepted += create['2xx'];
  const hello2 = await run({ url: ready.helloUrl, connections, duration });
  const floor = await run({ ...createOpts(duration), url: `${ready.helloUrl}floor` });
  child.send('count' satisfies ToServer);
  const { queued, indexed } = await next('count');
  child.disconnect();
  // the server writes its CPU profile as it exits
  await gone;

  // the floor must accept every body too, or it measures a cheaper refusal
  const bad = [create, warm, floor].reduce((n, r) => n + r.non2xx + r.errors + r.timeouts, 0);
  const createRps = create.requests.average;
  const helloRps = (hello1.requests.average + hello2.requests.average) / 2;
  const perCreate = (us: number) => Math.round(us / Math.max(1, create['2xx']));
  const summary = {
    create_rps: Math.round(createRps),
    hello_rps: Math.round(helloRps),
    ratio: Math.round((createRps / helloRps) * 1000) / 1000,
    p99_ms: create.latency.p99,
    floor_ratio: Math.round((floor.requests.average / helloRps) * 1000) / 1000,
  };
  for (const [label, h] of [['hello-world (before)', hello1], ['hello-world (after)', hello2], ['floor: validate and answer, nothing stored', floor]] as const) {
    console.log(`${label}: ${Math.round(h.requests.average)} req/s, p50 ${h.latency.p50} ms, p99 ${h.latency.p99} ms`);
  }
  console.log(
    `POST /v1/jobs: ${Math.round(createRps)} req/s, p50 ${create.latency.p50} ms, p99 ${create.latency.p99} ms, p99.9 ${create.latency.p99_9} ms, ` +
      `${create['2xx']} accepted, ${bad} not 2xx/errors/timeouts`,
  );
  console.log(
    `server during the create run: ${perCreate(usage.userUs + usage.systemUs)} us CPU per create (user ${perCreate(usage.userUs)}, system ${perCreate(usage.systemUs)}), ` +
      `event loop busy ${Math.round(usage.eventLoopUtilization * 100)}%` +
      (usage.store ? `; store ${JSON.stringify(usage.store)}` : '') +
      (usage.queue ? `; queue sends ${JSON.stringify(usage.queue)}` : ''),
  );
  // autocannon stops counting at the deadline: up to one request per connection per run is
  // accepted after it, so the server's count may exceed the client's by that much
  const consistent = queued === indexed && indexed >= accepted && indexed <= accepted + 2 * connections;
  console.log(
    `durability check: ${indexed} jobs accepted by the server (${accepted} answers counted by the client), ` +
      `${queued} queue messages${consistent ? '' : ' (MISMATCH)'}`,
  );
  if (usage.profile) for (const line of summarizeProfile(usage.profile)) console.log(line);
  console.log(`targets: ratio >= 0.3 (${summary.ratio >= 0.3 ? 'met' : 'missed'}), p99 <= 25 ms (${summary.p99_ms <= 25 ? 'met' : 'missed'})`);
  console.log(JSON.stringify(summary));
  if (bad > 0 || !consistent) process.exitCode = 1;
}

main().catch((err) => {
  console.error(`bench:edge: ${(err as Error).message}`);
  process.exit(1);
});
