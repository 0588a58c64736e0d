/**
 * The runner's composition root: reads the environment, picks the adapters (one function,
 * `selectAdapters`), hosts the engine in sampler threads, and runs the worker loop (and, on a
 * single node, the webhook dispatcher) until a signal. The first SIGTERM/SIGINT drains
 * (running jobs get the grace period, then go back to the queue); a second one forces the exit.
 *
 *   npx tsx gpu-runner/main.ts                  # single node, DATA_DIR=./data
 *   AMDM_MODE=aws node --import tsx gpu-runner/main.ts   # an ECS task of the AWS stack
 *
 * AMDM_MODE=aws (set by the task definition, infra/gpu.ts) takes the bucket and the queues
 * from the SST links in the environment (SST_RESOURCE_*, read through the sst SDK's
 * `Resource`), copies the models from s3://BUCKET/models/ into AMDM_MODELS_DIR (verified
 * against checksums.json) before warm-up, and keeps ECS task scale-in protection on while a
 * job is held (through ECS_AGENT_URI), and frees each finished job's slot in its tenant's
 * active-job count (the `Counters` table, adapters/aws/dynamo-admission.ts) at once, rather
 * than at the edge's next look at the store. Webhooks are delivered there by the webhook Lambda
 * (infra/webhooks.ts), not by this process: it only enqueues them. The mode is never
 * guessed from the environment: `npm start` under `sst shell` stays a single node.
 *
 * Environment: AMDM_MODE (single-node | aws), DATA_DIR, PUBLIC_BASE_URL (or PORT),
 * AMDM_MODELS_DIR (instead of the built-in models/), AMDM_LIVENESS_FILE (rewritten every 10 s
 * for the container health check), RUNNER_CONCURRENCY, RUNNER_VISIBILITY_SECONDS,
 * RUNNER_GRACE_SECONDS, RUNNER_JOB_TIMEOUT_SECONDS, RUNNER_RETRY_BASE_SECONDS and
 * RUNNER_RETRY_MAX_SECONDS (backoff of a failed attempt; 10 and 600),
 * AMDM_MAX_RECEIVES, AMDM_ALLOW_PRIVATE_WEBHOOKS=1, AMDM_WEBHOOK_RETRY_SCHEDULE (seconds,
 * comma-separated), ORT_PROVIDER, ORT_INTRA_OP_THREADS, ORT_CPU_MEM_ARENA (0: arena off), AMDM_ENGINE_MODULE and
 * AMDM_ENGINE_OPTIONS (JSON) to host another Engine implementation (tests, experiments),
 * plus the secrets of single-node/data-dir.ts; on AWS also ECS_AGENT_URI and
 * ECS_CONTAINER_METADATA_URI_V4 (set by ECS), AMDM_START_FAILURE_LIMIT and
 * AMDM_START_FAILURE_WINDOW_MINUTES (when a runner that cannot start gives up for the fleet:
 * gpu-runner/aws/start-failure.ts), and the AWS SDK's own variables (AWS_REGION, credentials
 * from the task role).
 */
import { pathToFileURL } from 'node:url';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { ECSClient } from '@aws-sdk/client-ecs';
import { S3Client } from '@aws-sdk/client-s3';
import { SQSClient } from '@aws-sdk/client-sqs';
import { Resource } from 'sst/resource';
import { type Links, linkedAdmission, linkedQueue, linkedStore, linkedString } from '../adapters/aws/links.ts';
import type { JobAdmission } from '../shared/ports/admission.ts';
import type { JobQueue } from '../shared/ports/queue.ts';
import type { ObjectStore, StorageObserver } from '../shared/ports/store.ts';
import { type HealthReport, StorageHealth } from '../shared/storage-health.ts';
import { BUILTIN_MODELS_DIR, DEFAULT_MAX_RECEIVES, dataLayout, loadSecrets, openEmbedded } from '../single-node/data-dir.ts';
import { LivenessFile } from './aws/liveness.ts';
import { MODELS_PREFIX, type ModelSource, s3ModelSource, syncModels } from './aws/model-sync.ts';
import { ScaleInGuard } from './aws/scale-in-guard.ts';
import { DEFAULT_START_FAILURE_LIMIT, DEFAULT_START_FAILURE_WINDOW_MINUTES, StartFailures, ecsApi, ecsFleetControl } from './aws/start-failure.ts';
import { TaskProtection } from './aws/task-protection.ts';
import { type Logger, errorFields, jsonLogger } from '../shared/logger.ts';
import { type EngineFactoryRef, SamplerPool } from './sampler-thread.ts';
import { DEFAULT_RETRY_SCHEDULE, WebhookDispatcher } from '../webhooks/dispatcher.ts';
import { WorkerLoop } from './worker-loop.ts';

export type RunnerMode = 'single-node' | 'aws';

/** Where the runner copies its models from on AWS: s3://BUCKET/models/ (docs/deploy.md). */
export { MODELS_PREFIX };

export interface RunnerConfig {
  mode: RunnerMode;
  dataDir: string;
  publicBaseUrl: string;
  modelsDirs: string[];
  concurrency: number;
  visibilitySeconds: number;
  gracePeriodSeconds: number;
  /** a job running longer is aborted and retried (a stuck engine must not hold the queue) */
  jobTimeoutSeconds: number;
  /** a failed attempt goes back to the queue for min(max, base * 2^(attempt-1)) s, with jitter */
  retryBackoff: { baseSeconds: number; maxSeconds: number };
  maxReceives: number;
  allowPrivateWebhooks: boolean;
  webhookRetrySchedule: readonly number[];
  provider: 'auto' | 'cpu' | 'cuda';
  intraOpNumThreads?: number;
  /** ORT_CPU_MEM_ARENA=0: onnxruntime's CPU arena off (gpu-runner/engine/onnx.ts) */
  cpuMemArena?: boolean;
  /** load every model before taking the first job */
  warmUp: boolean;
  /** the module that builds the engine in each sampler thread; default the AMDM engine */
  engine?: EngineFactoryRef;
  /** rewritten every 10 s while the runner lives, for the container health check; null: none */
  livenessFile: string | null;
  /** the ECS agent of this task (ECS_AGENT_URI), for scale-in protection; undefined outside ECS */
  ecsAgentUri: string | undefined;
  /** this task's metadata endpoint (ECS_CONTAINER_METADATA_URI_V4): its service, for giving up a start; undefined outside ECS */
  ecsMetadataUri: string | undefined;
  /** failed starts within the window, since the last good one, after which the runner gives up for the fleet (gpu-runner/aws/start-failure.ts) */
  startFailureLimit: number;
  startFailureWindowMinutes: number;
}

export interface RunnerAdapters {
  store: ObjectStore;
  jobs: JobQueue;
  jobsDeadLetter: JobQueue | null;
  /** the webhook outbox the worker loop writes to */
  webhooks: JobQueue;
  /** signs deliveries of the in-process dispatcher; null: another consumer delivers (AWS: the webhook Lambda) */
  webhookSecret: string | null;
  /** where models come from before warm-up (AWS: the bucket); null: they are on disk already */
  modelSource: ModelSource | null;
  /** single node: the tenants' caps on active jobs, for the edge that `npm start` runs beside the runner */
  admission?: JobAdmission;
  /**
   * Told of each job that finished (JobAdmission.release); AWS: the shared count's slot comes
   * free at once. Absent on the single node, whose admission reads the finish from the store.
   */
  releaseSlot?: (tenant: string, jobId: string) => Promise<void>;
  /** what a start that fails does beyond exiting (AWS: gpu-runner/aws/start-failure.ts); null: nothing */
  startFailures: StartFailures | null;
  close(): Promise<void>;
}

function int(env: NodeJS.ProcessEnv, name: string, def: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return def;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) throw new Error(`${name} must be an integer from ${min} to ${max} (got ${JSON.stringify(raw)})`);
  return n;
}

export function runnerConfigFromEnv(env: NodeJS.ProcessEnv = process.env): RunnerConfig {
  const port = int(env, 'PORT', 8787, 1, 65_535);
  const schedule = env.AMDM_WEBHOOK_RETRY_SCHEDULE ? env.AMDM_WEBHOOK_RETRY_SCHEDULE.split(',').map((s) => Number(s.trim())) : DEFAULT_RETRY_SCHEDULE;
  if (schedule.some((s) => !Number.isFinite(s) || s < 0)) throw new Error(`AMDM_WEBHOOK_RETRY_SCHEDULE must be comma-separated seconds (got ${JSON.stringify(env.AMDM_WEBHOOK_RETRY_SCHEDULE)})`);
  const provider = (env.ORT_PROVIDER ?? 'cpu') as RunnerConfig['provider'];
  if (!['auto', 'cpu', 'cuda'].includes(provider)) throw new Error(`ORT_PROVIDER must be auto, cpu or cuda (got ${JSON.stringify(env.ORT_PROVIDER)})`);
  const threads = env.ORT_INTRA_OP_THREADS ? int(env, 'ORT_INTRA_OP_THREADS', 1, 1, 256) : undefined;
  const arena = env.ORT_CPU_MEM_ARENA;
  if (arena !== undefined && arena !== '' && arena !== '0' && arena !== '1') throw new Error(`ORT_CPU_MEM_ARENA must be 0 or 1 (got ${JSON.stringify(arena)})`);
  const mode = (env.AMDM_MODE || 'single-node') as RunnerMode;
  if (mode !== 'single-node' && mode !== 'aws') throw new Error(`AMDM_MODE must be single-node or aws (got ${JSON.stringify(env.AMDM_MODE)})`);
  return {
    mode,
    dataDir: env.DATA_DIR || './data',
    publicBaseUrl: (env.PUBLIC_BASE_URL || `http://127.0.0.1:${port}`).replace(/\/+$/, ''),
    modelsDirs: [env.AMDM_MODELS_DIR || BUILTIN_MODELS_DIR],
    concurrency: int(env, 'RUNNER_CONCURRENCY', 1, 1, 64),
    visibilitySeconds: int(env, 'RUNNER_VISIBILITY_SECONDS', 30, 2, 43_200),
    gracePeriodSeconds: int(env, 'RUNNER_GRACE_SECONDS', 30, 0, 3600),
    jobTimeoutSeconds: int(env, 'RUNNER_JOB_TIMEOUT_SECONDS', 3600, 1, 86_400),
    retryBackoff: retryBackoffFromEnv(env),
    maxReceives: int(env, 'AMDM_MAX_RECEIVES', DEFAULT_MAX_RECEIVES, 1, 1000),
    allowPrivateWebhooks: env.AMDM_ALLOW_PRIVATE_WEBHOOKS === '1',
    webhookRetrySchedule: schedule,
    provider,
    ...(threads !== undefined ? { intraOpNumThreads: threads } : {}),
    ...(arena === '0' ? { cpuMemArena: false } : {}),
    warmUp: env.RUNNER_WARM_UP !== '0',
    ...(env.AMDM_ENGINE_MODULE ? { engine: { module: env.AMDM_ENGINE_MODULE, options: parseJsonEnv(env, 'AMDM_ENGINE_OPTIONS') } } : {}),
    livenessFile: env.AMDM_LIVENESS_FILE || null,
    ecsAgentUri: env.ECS_AGENT_URI || undefined,
    ecsMetadataUri: env.ECS_CONTAINER_METADATA_URI_V4 || undefined,
    startFailureLimit: int(env, 'AMDM_START_FAILURE_LIMIT', DEFAULT_START_FAILURE_LIMIT, 1, 100),
    startFailureWindowMinutes: int(env, 'AMDM_START_FAILURE_WINDOW_MINUTES', DEFAULT_START_FAILURE_WINDOW_MINUTES, 1, 1440),
  };
}

function retryBackoffFromEnv(env: NodeJS.ProcessEnv): RunnerConfig['retryBackoff'] {
  const baseSeconds = int(env, 'RUNNER_RETRY_BASE_SECONDS', 10, 0, 43_200);
  const maxSeconds = int(env, 'RUNNER_RETRY_MAX_SECONDS', Math.max(600, baseSeconds), 0, 43_200);
  if (maxSeconds < baseSeconds) throw new Error(`RUNNER_RETRY_MAX_SECONDS (${maxSeconds}) must be at least RUNNER_RETRY_BASE_SECONDS (${baseSeconds})`);
  return { baseSeconds, maxSeconds };
}

function parseJsonEnv(env: NodeJS.ProcessEnv, name: string): unknown {
  const raw = env[name];
  if (!raw) return undefined;
  try {
    return JSON.parse(raw);
  } catch {
    throw new Error(`${name} must be JSON (got ${JSON.stringify(raw.slice(0, 80))})`);
  }
}

/** What the AWS mode is built from; every field defaults to the production source. */
export interface AwsRunnerOptions {
  /**
   * Single node: told of writes the embedded adapters find no room for, and of the next one
   * that succeeds (give the StorageHealth handed to startRunner). S3 and SQS are never full.
   */
  storage?: StorageObserver;
  /** the SST links; default `Resource` from the sst SDK (SST_RESOURCE_* in the task's environment) */
  links?: Links;
  /** default: clients on the default credential chain (the task role), destroyed on close */
  s3?: S3Client;
  sqs?: SQSClient;
  ecs?: ECSClient;
  dynamo?: DynamoDBClient;
  /** how the ECS agent is called; default the global fetch */
  fetch?: typeof globalThis.fetch;
  logger?: Logger;
}

/**
 * The one place that decides which store and queues the runner uses: the filesystem and
 * SQLite under DATA_DIR on a single node; S3 and SQS from the stack's links on AWS.
 */
export function selectAdapters(config: RunnerConfig, env: NodeJS.ProcessEnv = process.env, aws: AwsRunnerOptions = {}): RunnerAdapters {
  if (config.mode === 'aws') return awsAdapters(config, aws);
  const layout = dataLayout(config.dataDir);
  const secrets = loadSecrets(layout, env);
  const embedded = openEmbedded(layout, {
    blobSecret: secrets.blobSecret,
    publicBaseUrl: config.publicBaseUrl,
    maxReceives: config.maxReceives,
    ...(aws.storage ? { storage: aws.storage } : {}),
  });
  return { ...embedded, jobsDeadLetter: embedded.jobsDeadLetter, webhookSecret: secrets.webhookSecret, modelSource: null, startFailures: null };
}

function awsAdapters(config: RunnerConfig, aws: AwsRunnerOptions): RunnerAdapters {
  const links = aws.links ?? Resource;
  const logger = aws.logger ?? jsonLogger('runner');
  // clients are built once, here, and only when the caller brought none
  const s3 = aws.s3 ?? new S3Client({});
  const sqs = aws.sqs ?? new SQSClient({});
  const ecs = aws.ecs ?? new ECSClient({});
  const dynamo = aws.dynamo ?? new DynamoDBClient({});
  const owned = [...(aws.s3 ? [] : [s3]), ...(aws.sqs ? [] : [sqs]), ...(aws.ecs ? [] : [ecs]), ...(aws.dynamo ? [] : [dynamo])];
  const store = linkedStore(links, s3);
  // the runner only ever releases: the edge admits
  const admission = linkedAdmission(links, dynamo, store);
  const releaseSlot = (tenant: string, jobId: string) => admission.release(tenant, jobId);
  const jobs = linkedQueue(links, 'jobs', sqs);
  const jobsDeadLetter = linkedQueue(links, 'jobsDeadLetter', sqs);
  // send only: the webhook Lambda consumes this queue (the task role may not receive from it)
  const webhooks = linkedQueue(links, 'webhooks', sqs);
  const guard = new ScaleInGuard({
    protection: new TaskProtection({ agentUri: config.ecsAgentUri, fetch: aws.fetch ?? globalThis.fetch, log: (line) => logger.info(line) }),
    log: (level, msg, fields) => logger[level](msg, fields),
  });
  return {
    store,
    jobs: guard.wrap(jobs),
    jobsDeadLetter,
    webhooks,
    webhookSecret: null,
    modelSource: s3ModelSource(s3, linkedString(links, 'store'), MODELS_PREFIX),
    releaseSlot,
    startFailures: new StartFailures({
      store,
      jobs,
      webhooks,
      releaseSlot,
      fleet: config.ecsMetadataUri ? ecsFleetControl({ metadataUri: config.ecsMetadataUri, fetch: aws.fetch ?? globalThis.fetch, ecs: ecsApi(ecs) }) : null,
      limit: config.startFailureLimit,
      windowMinutes: config.startFailureWindowMinutes,
      logger,
    }),
    async close() {
      // called after the drain (startRunner's cleanup): every lease is settled, so the guard
      // clears protection and ECS may stop this task
      const results = await Promise.allSettled([guard.close(), jobs.close(), jobsDeadLetter.close(), webhooks.close(), store.close(), admission.close()]);
      for (const client of owned) client.destroy();
      const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed.length) throw new AggregateError(failed.map((f) => f.reason), 'closing the AWS adapters failed');
    },
  };
}

export interface RunnerHandle {
  loop: WorkerLoop;
  /** null when another consumer delivers webhooks (AWS) */
  dispatcher: WebhookDispatcher | null;
  engine: SamplerPool;
  /** `ok`, or `degraded` with the reason while the storage is full (for /healthz) */
  health(): HealthReport;
  /** drain: stop taking jobs, let running ones finish within the grace period, then clean up */
  close(): Promise<void>;
  /** force: release running jobs now and clean up */
  abortNow(): Promise<void>;
}

export async function startRunner(
  config: RunnerConfig,
  adapters: RunnerAdapters,
  opts: { logger?: Logger; ownsAdapters?: boolean; storageHealth?: StorageHealth } = {},
): Promise<RunnerHandle> {
  const logger = opts.logger ?? jsonLogger('runner');
  const storageHealth = opts.storageHealth ?? new StorageHealth({ logger });
  // first, so the health check sees a live process through model sync and warm-up
  const liveness = config.livenessFile ? new LivenessFile({ path: config.livenessFile, log: (line) => logger.warn(line) }) : null;
  await liveness?.start();
  if (adapters.modelSource) {
    const t0 = Date.now();
    try {
      // before warm-up: the engine reads the packages from this folder
      const report = await syncModels({ source: adapters.modelSource, cacheDir: config.modelsDirs[0]!, log: (line) => logger.info(line) });
      logger.info('models synced', { ms: Date.now() - t0, downloaded: report.downloaded.length, kept: report.kept.length });
    } catch (err) {
      await liveness?.stop();
      throw err;
    }
  }
  const engine = new SamplerPool({
    threads: config.concurrency,
    engine: config.engine ?? {
      module: new URL('./engine/index.ts', import.meta.url).href,
      export: 'createEngine',
      options: {
        modelsDirs: config.modelsDirs,
        provider: config.provider,
        ...(config.intraOpNumThreads ? { intraOpNumThreads: config.intraOpNumThreads } : {}),
        ...(config.cpuMemArena === false ? { cpuMemArena: false } : {}),
      },
    },
  });
  if (config.warmUp) {
    const t0 = Date.now();
    try {
      await engine.warmUp();
    } catch (err) {
      await Promise.allSettled([engine.dispose(), liveness?.stop()]);
      throw err;
    }
    logger.info('models loaded', { ms: Date.now() - t0, models: (await engine.catalog()).map((m) => m.id) });
  }
  const loop = new WorkerLoop({
    queue: adapters.jobs,
    deadLetterQueue: adapters.jobsDeadLetter,
    webhookQueue: adapters.webhooks,
    releaseSlot: adapters.releaseSlot ?? null,
    store: adapters.store,
    engine,
    maxReceives: config.maxReceives,
    concurrency: config.concurrency,
    visibilitySeconds: config.visibilitySeconds,
    gracePeriodSeconds: config.gracePeriodSeconds,
    jobTimeoutSeconds: config.jobTimeoutSeconds,
    retryBackoff: config.retryBackoff,
    storageHealth,
    logger,
  });
  const dispatcher =
    adapters.webhookSecret === null
      ? null
      : new WebhookDispatcher({
          queue: adapters.webhooks,
          store: adapters.store,
          secret: adapters.webhookSecret,
          signUrl: (key, ttl) => adapters.store.signedGetUrl(key, ttl),
          publicBaseUrl: config.publicBaseUrl,
          allowPrivate: config.allowPrivateWebhooks,
          retrySchedule: config.webhookRetrySchedule,
          logger: jsonLogger('webhooks'),
        });
  loop.start();
  dispatcher?.start();
  // later start failures count from here (best effort, never fails the start)
  void adapters.startFailures?.recordStart();
  logger.info('runner started', {
    mode: config.mode,
    concurrency: config.concurrency,
    visibility_seconds: config.visibilitySeconds,
    max_receives: config.maxReceives,
    webhooks: dispatcher ? 'delivered here' : 'enqueued for another consumer',
  });

  // every cleanup runs, whatever fails before it
  const cleanup = async (first: () => Promise<void>) => {
    const errors: unknown[] = [];
    const steps = [
      first,
      ...(dispatcher ? [() => dispatcher.close()] : []),
      () => engine.dispose(),
      ...(opts.ownsAdapters !== false ? [() => adapters.close()] : []),
      // last: until here the process is alive and working
      ...(liveness ? [() => liveness.stop()] : []),
    ];
    for (const step of steps) {
      try {
        await step();
      } catch (err) {
        errors.push(err);
        logger.error('runner cleanup step failed', errorFields(err));
      }
    }
    if (errors.length) throw new AggregateError(errors, 'runner shutdown finished with errors');
  };
  let closing: Promise<void> | null = null;
  return {
    loop,
    dispatcher,
    engine,
    health: () => storageHealth.report(),
    close: () => (closing ??= cleanup(() => loop.close())),
    abortNow: async () => {
      await loop.abortNow();
      await engine.terminate();
      await (closing ??= cleanup(() => loop.close()));
    },
  };
}

export interface SignalOptions {
  /**
   * A signal this soon after the previous one counts as the same. One Ctrl-C reaches every
   * process of the terminal's process group, and `npm start` and tsx relay it to their child
   * as well, so the server often gets the same keypress two or three times within a few
   * tens of ms; a person pressing twice is slower than this.
   */
  coalesceMs?: number;
  /** the forced stop exits after this long even if it has not finished (a store that hangs) */
  forceExitMs?: number;
  /** where the signals come from (tests); default the process */
  source?: Pick<NodeJS.Process, 'on'>;
  now?: () => number;
}

/**
 * First signal drains, second forces. `onExit` gets the exit code. The forced stop still
 * waits for the current UNet call to return (the sampler threads end only then, see
 * sampler-thread.ts), so the process never exits with a native call in flight.
 */
export function installSignalHandlers(
  stop: { close(): Promise<void>; abortNow(): Promise<void> },
  logger: Logger,
  onExit: (code: number) => void = (c) => process.exit(c),
  opts: SignalOptions = {},
): void {
  const coalesceMs = opts.coalesceMs ?? 300;
  const now = opts.now ?? Date.now;
  let signals = 0;
  let last = -Infinity;
  const handler = (sig: NodeJS.Signals) => {
    const at = now();
    if (at - last < coalesceMs) {
      logger.info('the same signal again within a moment: counted once', { signal: sig, after_ms: at - last });
      return;
    }
    last = at;
    signals++;
    if (signals === 1) {
      logger.info('draining; send the signal again to stop at once', { signal: sig });
      stop.close().then(
        // a forced stop may let the drain finish first: it still exits with 1
        () => onExit(signals > 1 ? 1 : 0),
        (err) => {
          logger.error('drain failed', errorFields(err));
          onExit(1);
        },
      );
    } else if (signals === 2) {
      logger.warn('stopping now; running jobs go back to the queue', { signal: sig });
      const force = setTimeout(() => onExit(1), opts.forceExitMs ?? 15_000);
      force.unref();
      stop.abortNow().finally(() => onExit(1));
    } else {
      logger.warn('already stopping: waiting for the current UNet call to return', { signal: sig });
    }
  };
  const source = opts.source ?? process;
  source.on('SIGTERM', handler);
  source.on('SIGINT', handler);
}

async function main(): Promise<void> {
  const logger = jsonLogger('runner');
  const config = runnerConfigFromEnv();
  // one record of a full disk for the adapters and the loop: the cause is logged once
  const storageHealth = new StorageHealth({ logger });
  const adapters = selectAdapters(config, process.env, { storage: storageHealth });
  let runner: RunnerHandle;
  try {
    runner = await startRunner(config, adapters, { logger, storageHealth });
  } catch (err) {
    if (!adapters.startFailures) throw err;
    // record it, and after repeated failures fail the waiting jobs and scale to zero
    const outcome = await adapters.startFailures.handle(err).catch((handling: unknown) => {
      logger.error('handling the start failure failed', errorFields(handling));
      return { exitCode: 1 };
    });
    await adapters.close().catch(() => {});
    process.exit(outcome.exitCode);
  }
  installSignalHandlers(runner, logger);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err) => {
    console.error(`runner: ${(err as Error).message}`);
    process.exit(1);
  });
}
