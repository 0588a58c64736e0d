/**
 * The runner's real root (gpu-runner/main.ts) in AWS mode, in a child process, as an ECS task
 * runs it: SST_RESOURCE_* links in the environment, the AWS SDK pointed at fauxqs through
 * AWS_ENDPOINT_URL (and at dynalite for the counters table through AWS_ENDPOINT_URL_DYNAMODB),
 * a stand-in ECS agent behind ECS_AGENT_URI, the slow test-double engine.
 *
 * What it shows: models are copied from the bucket and verified before the runner starts (a
 * bad checksum stops it), jobs run off SQS into S3, task protection is on while a job is held
 * and off when idle, webhooks are enqueued and left for the webhook Lambda, the liveness file
 * satisfies the container health check, a finished job's slot in the tenant's active-job count
 * is released, and SIGTERM drains a running job before exiting; a
 * runner that cannot start fails the waiting jobs and scales the service to zero after
 * repeated failures (with a stand-in task metadata endpoint and ECS API).
 */
import { execFile } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GetItemCommand } from '@aws-sdk/client-dynamodb';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { COUNTERS_KEY, admissionKey } from '../../adapters/aws/counters-table.ts';
import { DynamoAdmission } from '../../adapters/aws/dynamo-admission.ts';
import { S3Store } from '../../adapters/aws/s3-store.ts';
import { SqsQueue } from '../../adapters/aws/sqs-queue.ts';
import { createApp } from '../../edge/app.ts';
import { createApiKey } from '../../shared/api-keys.ts';
import type { JobRecord } from '../../shared/contract/index.ts';
import { startDynalite, type Dynalite } from '../../test/conformance/dynalite-server.ts';
import { startFauxqs, type Fauxqs } from '../../test/conformance/fauxqs-server.ts';
import { until } from '../../test/e2e/harness.ts';
import { createEngine as slowEngine } from '../../test/faults/slow-engine.ts';
import { SLOW_ENGINE, startRunnerProcess, type RunnerProcess } from '../../test/faults/runner-process.ts';
import { sha256Hex } from '../../shared/model-catalog.ts';

const PEPPER = 'runner-aws-test-pepper';
const healthcheckScript = fileURLToPath(new URL('./healthcheck.mjs', import.meta.url));
const FAUXQS_DNS = new URL('../../test/e2e/fauxqs-dns.mjs', import.meta.url).href;

let fauxqs: Fauxqs;
let dynamo: Dynalite;
let agent: Server;
let agentCalls: { at: number; enabled: boolean }[] = [];
/** the ECS API as the SDK speaks it (JSON 1.1, X-Amz-Target), and the task metadata endpoint */
let ecsApi: Server;
let ecsCalls: { target: string; input: Record<string, unknown> }[] = [];
const dirs: string[] = [];
const children: RunnerProcess[] = [];

beforeAll(async () => {
  fauxqs = await startFauxqs();
  dynamo = await startDynalite();
  agent = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      const enabled = JSON.parse(body).ProtectionEnabled === true;
      agentCalls.push({ at: Date.now(), enabled });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ protection: { ProtectionEnabled: enabled, ExpirationDate: enabled ? '2030-01-01T00:00:00Z' : null, TaskArn: 'arn:aws:ecs:us-east-1:123456789012:task/c/t' } }));
    });
  });
  await new Promise<void>((r) => agent.listen(0, '127.0.0.1', r));
  ecsApi = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/x-amz-json-1.1' });
      if (req.url === '/v4/task-1/task') {
        return void res.end(JSON.stringify({ Cluster: 'gpu-cluster', TaskARN: `arn:aws:ecs:us-east-1:123456789012:task/gpu-cluster/task${ecsCalls.length}`, ServiceName: 'runner-svc' }));
      }
      const target = String(req.headers['x-amz-target'] ?? '').split('.').at(-1)!;
      ecsCalls.push({ target, input: JSON.parse(body) });
      if (target === 'DescribeServices') return void res.end(JSON.stringify({ services: [{ serviceName: 'runner-svc', runningCount: 1, desiredCount: 1 }], failures: [] }));
      res.end(JSON.stringify({ service: { serviceName: 'runner-svc', desiredCount: 0 } }));
    });
  });
  await new Promise<void>((r) => ecsApi.listen(0, '127.0.0.1', r));
});

afterAll(async () => {
  for (const c of children) await c.kill();
  agent?.closeAllConnections();
  await new Promise((r) => agent?.close(r));
  ecsApi?.closeAllConnections();
  await new Promise((r) => ecsApi?.close(r));
  await fauxqs?.stop();
  await dynamo?.stop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** A bucket with models/ uploaded, the three queues, and the env an ECS task would have. */
async function world(models: Record<string, string>, checksums: Record<string, string>) {
  const bucket = await fauxqs.createBucket();
  const jobsDlq = await fauxqs.createQueue();
  const jobs = await fauxqs.createQueue({ deadLetterUrl: jobsDlq, maxReceives: 3 });
  const webhooks = await fauxqs.createQueue();
  const counters = await dynamo.createCountersTable();
  for (const [path, body] of Object.entries(models)) {
    await fauxqs.s3.send(new PutObjectCommand({ Bucket: bucket, Key: `models/${path}`, Body: body }));
  }
  await fauxqs.s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'models/checksums.json', Body: JSON.stringify(checksums) }));
  const dir = mkdtempSync(join(tmpdir(), 'amdm-runner-aws-'));
  dirs.push(dir);
  const env = {
    AMDM_MODE: 'aws',
    SST_RESOURCE_App: JSON.stringify({ name: 'amdm', stage: 'test' }),
    SST_RESOURCE_Store: JSON.stringify({ name: bucket }),
    SST_RESOURCE_JobQueue: JSON.stringify({ url: jobs }),
    SST_RESOURCE_JobDeadLetters: JSON.stringify({ url: jobsDlq }),
    SST_RESOURCE_WebhookQueue: JSON.stringify({ url: webhooks }),
    SST_RESOURCE_Counters: JSON.stringify({ name: counters }),
    AWS_ENDPOINT_URL: fauxqs.endpoint,
    AWS_ENDPOINT_URL_DYNAMODB: dynamo.endpoint,
    // fauxqs's queue URLs name sqs.REGION.localhost, which the child must resolve (see the file)
    NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import=${FAUXQS_DNS}`.trim(),
    AWS_REGION: 'us-east-1',
    AWS_ACCESS_KEY_ID: 'test',
    AWS_SECRET_ACCESS_KEY: 'test',
    ECS_AGENT_URI: `http://127.0.0.1:${(agent.address() as AddressInfo).port}/api/task-1`,
    AMDM_MODELS_DIR: join(dir, 'models'),
    AMDM_LIVENESS_FILE: join(dir, 'alive'),
    AMDM_ENGINE_MODULE: SLOW_ENGINE,
    AMDM_ENGINE_OPTIONS: JSON.stringify({ stepMs: 40 }),
    RUNNER_VISIBILITY_SECONDS: '20',
    RUNNER_GRACE_SECONDS: '30',
    // the warm-up path is the engine's own; the slow double has nothing to load
    RUNNER_WARM_UP: '0',
  };
  const store = new S3Store({ client: fauxqs.s3, bucket });
  const jobQueue = new SqsQueue({ client: fauxqs.sqs, queueUrl: jobs });
  const webhookQueue = new SqsQueue({ client: fauxqs.sqs, queueUrl: webhooks });
  const catalogEngine = slowEngine();
  // the edge's admission, as edge/lambda.ts has it: the runner releases into the same table
  const admission = new DynamoAdmission({ client: dynamo.client, table: counters, store });
  const app = createApp({ store, queue: jobQueue, admission, catalog: () => catalogEngine.catalog(), pepper: PEPPER, publicBaseUrl: 'https://api.amdm.test', allowPrivateWebhooks: true });
  const key = (await createApiKey(store, { tenant: 'acme', pepper: PEPPER })).key;
  const api = async (path: string, body?: unknown) =>
    (await app.request(path, {
      method: body === undefined ? 'GET' : 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    })).json() as Promise<JobRecord>;
  const start = () => {
    const p = startRunnerProcess(env);
    children.push(p);
    return p;
  };
  /** the jobs the counters table holds as active for tenant acme */
  const admitted = async () =>
    Object.keys(
      (await dynamo.client.send(new GetItemCommand({ TableName: counters, Key: { [COUNTERS_KEY]: { S: admissionKey('acme') } }, ConsistentRead: true }))).Item?.jobs?.M ?? {},
    );
  return { env, dir, bucket, store, jobQueue, webhookQueue, api, start, admitted };
}

const healthcheck = (file: string) =>
  new Promise<number>((resolve) =>
    execFile(process.execPath, [healthcheckScript], { env: { PATH: process.env.PATH ?? '', AMDM_LIVENESS_FILE: file } }, (err) =>
      resolve(err ? (typeof err.code === 'number' ? err.code : 1) : 0),
    ),
  );

describe('gpu-runner/main.ts with AMDM_MODE=aws', () => {
  it('syncs models, runs jobs off SQS with task protection held per job, leaves webhooks to the Lambda, and drains on SIGTERM', async () => {
    const model = '{"schema":"test"}\n';
    const w = await world({ 'tiny/amdm.json': model }, { 'tiny/amdm.json': sha256Hex(model) });
    agentCalls = [];
    const runner = w.start();
    await until(async () => runner.output().includes('"runner started"'), 'the runner to start', 60_000, 100);
    expect(readFileSync(join(w.env.AMDM_MODELS_DIR, 'tiny/amdm.json'), 'utf8')).toBe(model);
    expect(runner.output()).toContain('"models synced"');
    expect(await healthcheck(w.env.AMDM_LIVENESS_FILE)).toBe(0);
    expect(agentCalls).toEqual([]);

    const submitted = await w.api('/v1/jobs', {
      models: [{ id: 'shapes-base', role: 'base', prompt: 'on aws' }],
      sampler: { steps: 20, seed: 4, width: 48, height: 32 },
      webhook: { url: 'https://hooks.test/amdm' },
    });
    expect(await w.admitted()).toEqual([submitted.id]);
    const running = await until(async () => {
      const r = await w.api(`/v1/jobs/${submitted.id}`);
      return r.status !== 'queued' ? r : null;
    }, 'the job to start', 30_000, 20);
    // protection was on before the loop could write "running"
    expect(agentCalls[0]?.enabled, runner.output()).toBe(true);
    expect(['running', 'succeeded']).toContain(running.status);

    const done = await until(async () => {
      const r = await w.api(`/v1/jobs/${submitted.id}`);
      return ['succeeded', 'failed', 'canceled'].includes(r.status) ? r : null;
    }, 'the job to finish', 60_000);
    expect(done.status, runner.output()).toBe('succeeded');
    expect(done.usage).toMatchObject({ images: 1, unet_evals: 20 });
    // the usage record is written right after the terminal status (gpu-runner/job-aftermath.ts)
    await until(async () => (await w.store.list('tenants/acme/usage/')).keys.length === 1, 'the usage record', 10_000);
    // the runner gave the job's slot back as it finished (before the usage record)
    expect(await w.admitted()).toEqual([]);
    expect(new URL(done.outputs[0]!.url).pathname).toBe(`/${w.bucket}/tenants/acme/jobs/${submitted.id}/out/aggregated-0.png`);
    await until(async () => agentCalls.at(-1)?.enabled === false, 'protection to be cleared once idle', 30_000);

    // the webhook waits in its queue for the Lambda: this process never consumes it
    await until(async () => (await w.webhookQueue.stats()).visible === 1, 'the webhook message', 10_000);
    await new Promise((r) => setTimeout(r, 1500));
    expect(await w.webhookQueue.stats()).toMatchObject({ visible: 1, inFlight: 0 });

    // SIGTERM while a job is held: the job finishes within the grace period, then the runner exits
    const second = await w.api('/v1/jobs', { models: [{ id: 'shapes-base', role: 'base', prompt: 'drain' }], sampler: { steps: 60, seed: 5 } });
    await until(async () => ((await w.api(`/v1/jobs/${second.id}`)).progress?.step ?? 0) >= 2, 'the second job to run', 30_000, 20);
    expect(agentCalls.at(-1)?.enabled).toBe(true);
    runner.child.kill('SIGTERM');
    expect(await runner.exited, runner.output()).toEqual({ code: 0, signal: null });
    expect((await w.api(`/v1/jobs/${second.id}`)).status).toBe('succeeded');
    expect(agentCalls.at(-1)?.enabled).toBe(false);
    expect(existsSync(w.env.AMDM_LIVENESS_FILE)).toBe(false);
    expect(await healthcheck(w.env.AMDM_LIVENESS_FILE)).toBe(1);
    expect(await w.jobQueue.stats()).toMatchObject({ visible: 0, inFlight: 0 });
  });

  it('refuses to start when a model file does not match its checksum, naming the file', async () => {
    const w = await world({ 'tiny/unet/model.onnx': 'swapped bytes' }, { 'tiny/unet/model.onnx': sha256Hex('the real bytes') });
    const runner = w.start();
    const exit = await runner.exited;
    expect(exit.code).toBe(1);
    expect(runner.output()).toMatch(/model file tiny\/unet\/model\.onnx from s3:\/\/[^ ]+\/models\/tiny\/unet\/model\.onnx has sha256 [0-9a-f]{64}, but checksums\.json lists/);
    expect(existsSync(join(w.env.AMDM_MODELS_DIR, 'tiny/unet/model.onnx'))).toBe(false);
    expect(runner.output()).not.toContain('"runner started"');
  });

  it('after repeated failed starts, fails the waiting job with a reason the user can read, scales the service to zero, and exits 78', async () => {
    const w = await world({ 'tiny/unet/model.onnx': 'swapped bytes' }, { 'tiny/unet/model.onnx': sha256Hex('the real bytes') });
    const ecsPort = (ecsApi.address() as AddressInfo).port;
    Object.assign(w.env, { ECS_CONTAINER_METADATA_URI_V4: `http://127.0.0.1:${ecsPort}/v4/task-1`, AWS_ENDPOINT_URL_ECS: `http://127.0.0.1:${ecsPort}` });
    ecsCalls = [];
    const job = await w.api('/v1/jobs', { models: [{ id: 'shapes-base', role: 'base', prompt: 'never runs' }], sampler: { steps: 4, seed: 1 } });
    // ECS restarts the task: the first two failures leave the job queued
    for (const attempt of [1, 2]) {
      const runner = w.start();
      expect((await runner.exited).code, runner.output()).toBe(1);
      expect(runner.output()).toContain(`start failure ${attempt} of 3`);
      expect((await w.api(`/v1/jobs/${job.id}`)).status).toBe('queued');
    }
    const third = w.start();
    expect((await third.exited).code, third.output()).toBe(78);
    const failed = await w.api(`/v1/jobs/${job.id}`);
    expect(failed.status).toBe('failed');
    expect(failed.error).toMatchObject({ type: 'urn:amdm:problem:runner-unavailable', status: 503 });
    expect(failed.error!.detail).toMatch(/^The GPU runners of this deployment cannot start \(model file tiny\/unet\/model\.onnx from s3:\/\/<bucket>\/models\/tiny\/unet\/model\.onnx has sha256/);
    expect(failed.error!.detail).not.toContain(w.bucket);
    // and its slot in the tenant's count came free with it
    expect(await w.admitted()).toEqual([]);
    expect(ecsCalls.map((c) => c.target)).toEqual(['DescribeServices', 'UpdateService']);
    expect(ecsCalls[1]!.input).toEqual({ cluster: 'gpu-cluster', service: 'runner-svc', desiredCount: 0 });
    expect(await w.jobQueue.stats()).toMatchObject({ visible: 0, inFlight: 0 });
  });
});
