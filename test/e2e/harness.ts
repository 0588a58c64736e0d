/**
 * The stack for end-to-end and fault tests, in this process, over real HTTP on 127.0.0.1,
 * with one of two adapter sets:
 *
 * - 'embedded' (default): the local edge (edge/local.ts) and the runner with its webhook
 *   dispatcher over the filesystem store and SQLite queues in a fresh DATA_DIR;
 * - 'aws': the AWS deployment on the wire, against fauxqs (SQS + S3) and dynalite (the
 *   counters table) started here. The edge is the real Lambda module (edge/lambda.ts) behind a
 *   local Function URL with response streaming (lambda-url.ts), reading its links from
 *   SST_RESOURCE_* and reaching fauxqs through AWS_ENDPOINT_URL (dynalite through
 *   AWS_ENDPOINT_URL_DYNAMODB) like a deployed function; the runner is the AWS mode of
 *   gpu-runner/main.ts (S3 store with retention tags, SQS jobs/DLQ/webhooks, releases into
 *   the counters table), which first copies the models from s3://BUCKET/models/ into a cache,
 *   verified by checksum. Webhooks are left in their queue: on AWS the webhook Lambda delivers
 *   them (webhooks/lambda.test.ts).
 *
 * By default the real AMDM engine with the built-in models (or AMDM_MODELS_DIR); `engine`
 * swaps in another Engine module.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { interceptLocalhostDns } from 'fauxqs';
import { vi } from 'vitest';
import { startLocalEdge, type LocalEdge } from '../../edge/local.ts';
import { silentLogger, type Logger } from '../../shared/logger.ts';
import { MODELS_PREFIX, runnerConfigFromEnv, selectAdapters, startRunner, type RunnerAdapters, type RunnerConfig, type RunnerHandle } from '../../gpu-runner/main.ts';
import type { EngineFactoryRef } from '../../gpu-runner/sampler-thread.ts';
import { createApiKey } from '../../shared/api-keys.ts';
import { JobRepository } from '../../shared/job-repository.ts';
import type { JobQueue } from '../../shared/ports/queue.ts';
import { CHECKSUMS_FILE, formatModelCatalog, sha256Hex } from '../../shared/model-catalog.ts';
import { BUILTIN_MODELS_DIR, dataLayout, loadSecrets } from '../../single-node/data-dir.ts';
import { modelCatalogText } from '../../tools/write-model-catalog.ts';
import { startDynalite } from '../conformance/dynalite-server.ts';
import { startFauxqs, type Fauxqs } from '../conformance/fauxqs-server.ts';
import { installLambdaRuntimeGlobal, startFunctionUrl } from './lambda-url.ts';

/** The real engine needs model packages: the built-in models/, or AMDM_MODELS_DIR as everywhere else. */
export const MODELS_DIR = process.env.AMDM_MODELS_DIR || BUILTIN_MODELS_DIR;

export type AdapterSet = 'embedded' | 'aws';
/** Every adapter set the end-to-end tests run against. */
export const ADAPTER_SETS: readonly AdapterSet[] = ['embedded', 'aws'];

export interface Stack {
  adapterSet: AdapterSet;
  url: string;
  /** embedded: the DATA_DIR; aws: the scratch folder (model cache, catalog) */
  dataDir: string;
  /** tenant "alpha" */
  key: string;
  /** tenant "beta" */
  otherKey: string;
  /** a key for another tenant, created on demand */
  keyFor(tenant: string): Promise<string>;
  adapters: RunnerAdapters;
  repo: JobRepository;
  runner: RunnerHandle;
  /** the local edge (embedded only; on 'aws' the edge is the Lambda module) */
  edge: LocalEdge | null;
  /** the emulator (aws only) */
  fauxqs: Fauxqs | null;
  api(path: string, init?: { method?: string; key?: string | null; body?: unknown; headers?: Record<string, string> }): Promise<Response>;
  close(): Promise<void>;
}

export interface StackOptions {
  adapters?: AdapterSet;
  engine?: EngineFactoryRef;
  /** the model packages (MODELS_DIR unless given): on 'aws' uploaded to the bucket and synced as a deploy does */
  modelsDir?: string;
  config?: Partial<RunnerConfig>;
  logger?: Logger;
  /** wraps the runner's jobs queue, to inject faults between the worker loop and the queue */
  wrapJobs?: (jobs: JobQueue) => JobQueue;
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

export async function startStack(opts: StackOptions = {}): Promise<Stack> {
  return opts.adapters === 'aws' ? startAwsStack(opts) : startEmbeddedStack(opts);
}

function apiClient(base: string, defaultKey: () => string): Stack['api'] {
  return (path, init = {}) =>
    fetch(path.startsWith('http') ? path : `${base}${path}`, {
      method: init.method ?? (init.body !== undefined ? 'POST' : 'GET'),
      headers: {
        ...(init.key === null ? {} : { authorization: `Bearer ${init.key ?? defaultKey()}` }),
        ...(init.body !== undefined ? { 'content-type': 'application/json' } : {}),
        ...init.headers,
      },
      ...(init.body !== undefined ? { body: typeof init.body === 'string' ? init.body : JSON.stringify(init.body) } : {}),
    });
}

async function startEmbeddedStack(opts: StackOptions): Promise<Stack> {
  const dataDir = mkdtempSync(join(tmpdir(), 'amdm-e2e-'));
  const port = await freePort();
  const env = { DATA_DIR: dataDir, PORT: String(port), AMDM_MODELS_DIR: opts.modelsDir ?? MODELS_DIR };
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
  const selected = selectAdapters(config, env);
  const adapters = opts.wrapJobs ? { ...selected, jobs: opts.wrapJobs(selected.jobs) } : selected;
  const logger = opts.logger ?? silentLogger;
  const runner = await startRunner(config, adapters, { logger });
  const edge = await startLocalEdge({
    dataDir,
    port,
    publicBaseUrl: config.publicBaseUrl,
    catalog: () => runner.engine.catalog(),
    modelsDirs: config.modelsDirs,
    adapters: { store: adapters.store, jobs: adapters.jobs },
    allowPrivateWebhooks: true,
    logger,
    env,
  });
  const { pepper } = loadSecrets(dataLayout(dataDir), env);
  const keyFor = async (tenant: string) => (await createApiKey(adapters.store, { tenant, pepper })).key;
  const key = await keyFor('alpha');
  const otherKey = await keyFor('beta');
  let closed = false;
  return {
    adapterSet: 'embedded',
    url: edge.url,
    dataDir,
    key,
    otherKey,
    keyFor,
    adapters,
    repo: new JobRepository(adapters.store),
    runner,
    edge,
    fauxqs: null,
    api: apiClient(edge.url, () => key),
    async close() {
      if (closed) return;
      closed = true;
      await edge.close();
      await runner.abortNow();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

const AWS_PEPPER = 'e2e-aws-key-pepper-0123456789';

/**
 * The AWS deployment on fauxqs. The edge module and the sst SDK read the environment once per
 * module instance, so this sets SST_RESOURCE_* and the SDK variables in process.env, loads a
 * fresh instance of edge/lambda.ts, and puts the environment back on close.
 */
async function startAwsStack(opts: StackOptions): Promise<Stack> {
  const dataDir = mkdtempSync(join(tmpdir(), 'amdm-e2e-aws-'));
  const savedEnv = { ...process.env };
  const fauxqs = await startFauxqs();
  const dynamo = await startDynalite();
  // the Lambda's clients take their endpoint from AWS_ENDPOINT_URL and so call fauxqs's queue
  // URLs (http://sqs.REGION.localhost:PORT/...) by their own host, as with real SQS
  const restoreDns = interceptLocalhostDns();
  const cleanups: (() => Promise<unknown> | unknown)[] = [() => fauxqs.stop(), () => dynamo.stop(), restoreDns, () => rmSync(dataDir, { recursive: true, force: true }), () => (process.env = savedEnv)];
  const cleanup = async () => {
    for (const c of cleanups.splice(0).reverse()) await Promise.resolve(c()).catch(() => {});
  };
  try {
    const port = await freePort();
    const publicBaseUrl = `http://127.0.0.1:${port}`;
    const base = runnerConfigFromEnv({ PORT: String(port), PUBLIC_BASE_URL: publicBaseUrl, AMDM_MODE: 'aws' });
    const config: RunnerConfig = {
      ...base,
      modelsDirs: [join(dataDir, 'models')],
      visibilitySeconds: 10,
      gracePeriodSeconds: 1,
      allowPrivateWebhooks: true,
      intraOpNumThreads: 1,
      ...(opts.engine ? { engine: opts.engine } : {}),
      ...opts.config,
    };

    const bucket = await fauxqs.createBucket();
    const jobsDlq = await fauxqs.createQueue();
    const jobs = await fauxqs.createQueue({ deadLetterUrl: jobsDlq, maxReceives: config.maxReceives });
    const webhooks = await fauxqs.createQueue();
    const links = {
      App: { name: 'amdm', stage: 'e2e' },
      Store: { name: bucket },
      JobQueue: { url: jobs },
      JobDeadLetters: { url: jobsDlq },
      WebhookQueue: { url: webhooks },
      KeyPepper: { value: AWS_PEPPER },
      Counters: { name: await dynamo.createCountersTable() },
    };

    // the models as an operator uploads them (docs/deploy.md): files first, checksums.json last
    const modelsDir = opts.modelsDir ?? MODELS_DIR;
    const checksums = existsSync(join(modelsDir, CHECKSUMS_FILE))
      ? (JSON.parse(readFileSync(join(modelsDir, CHECKSUMS_FILE), 'utf8')) as Record<string, string>)
      : Object.fromEntries(listFiles(modelsDir).map((f) => [f, sha256Hex(readFileSync(join(modelsDir, f)))]));
    for (const path of Object.keys(checksums)) {
      await fauxqs.s3.send(new PutObjectCommand({ Bucket: bucket, Key: `${MODELS_PREFIX}${path}`, Body: readFileSync(join(modelsDir, path)) }));
    }
    await fauxqs.s3.send(new PutObjectCommand({ Bucket: bucket, Key: `${MODELS_PREFIX}${CHECKSUMS_FILE}`, Body: JSON.stringify(checksums) }));

    const logger = opts.logger ?? silentLogger;
    const selected = selectAdapters(config, {}, { links, s3: fauxqs.s3, sqs: fauxqs.sqs, dynamo: dynamo.client, logger });
    const adapters = opts.wrapJobs ? { ...selected, jobs: opts.wrapJobs(selected.jobs) } : selected;
    const runner = await startRunner(config, adapters, { logger });
    cleanups.push(() => runner.abortNow());

    // the catalog the deploy bundles: generated from the same packages (or the test engine's)
    const catalogFile = join(dataDir, 'model-catalog.json');
    writeFileSync(
      catalogFile,
      opts.engine ? formatModelCatalog({ models: await runner.engine.catalog(), modelsChecksumsSha256: null }) : await modelCatalogText(modelsDir),
    );
    Object.assign(process.env, {
      ...Object.fromEntries(Object.entries(links).filter(([name]) => ['App', 'Store', 'JobQueue', 'KeyPepper', 'Counters'].includes(name)).map(([name, v]) => [`SST_RESOURCE_${name}`, JSON.stringify(v)])),
      AWS_ENDPOINT_URL: fauxqs.endpoint,
      AWS_ENDPOINT_URL_DYNAMODB: dynamo.endpoint,
      AWS_REGION: 'us-east-1',
      AWS_ACCESS_KEY_ID: 'test',
      AWS_SECRET_ACCESS_KEY: 'test',
      PUBLIC_BASE_URL: publicBaseUrl,
      AMDM_MODEL_CATALOG: catalogFile,
    });
    installLambdaRuntimeGlobal();
    // a fresh module instance (and sst SDK instance), bound to this stack's links
    vi.resetModules();
    const { handler } = (await import('../../edge/lambda.ts')) as { handler: unknown };
    const fnUrl = await startFunctionUrl(handler, { port });
    cleanups.push(() => fnUrl.close());

    const keyFor = async (tenant: string) => (await createApiKey(adapters.store, { tenant, pepper: AWS_PEPPER })).key;
    const key = await keyFor('alpha');
    const otherKey = await keyFor('beta');
    return {
      adapterSet: 'aws',
      url: fnUrl.url,
      dataDir,
      key,
      otherKey,
      keyFor,
      adapters,
      repo: new JobRepository(adapters.store),
      runner,
      edge: null,
      fauxqs,
      api: apiClient(fnUrl.url, () => key),
      close: cleanup,
    };
  } catch (err) {
    await cleanup();
    throw err;
  }
}

function listFiles(dir: string, root = dir): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? listFiles(join(dir, e.name), root) : e.isFile() && e.name !== CHECKSUMS_FILE && e.name !== 'catalog.json' ? [relative(root, join(dir, e.name))] : [],
  );
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
