/**
 * A runner that cannot start, against S3 and SQS as fauxqs serves them, the ECS API through
 * the SDK's client mock (aws-sdk-client-mock: what the SDK would send, answered offline), and
 * a task metadata endpoint on loopback as the ECS agent serves it.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { DescribeServicesCommand, ECSClient, UpdateServiceCommand } from '@aws-sdk/client-ecs';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { S3Store } from '../../adapters/aws/s3-store.ts';
import { SqsQueue } from '../../adapters/aws/sqs-queue.ts';
import { JobRepository } from '../../shared/job-repository.ts';
import { startFauxqs, type Fauxqs } from '../../test/conformance/fauxqs-server.ts';
import { silentLogger } from '../../shared/logger.ts';
import { ModelSyncError } from './model-sync.ts';
import {
  FAILURES_PREFIX,
  RUNNER_GAVE_UP_EXIT_CODE,
  RUNNER_UNAVAILABLE_PROBLEM,
  StartFailures,
  ecsApi,
  ecsFleetControl,
  publicReason,
} from './start-failure.ts';

let fauxqs: Fauxqs;
let metadata: Server;
let metadataUri: string;
const ecs = mockClient(ECSClient);
const TASK_ARN = 'arn:aws:ecs:us-east-1:123456789012:task/gpu-cluster/0123456789abcdef';

beforeAll(async () => {
  fauxqs = await startFauxqs();
  // the agent's task metadata (v4): cluster, task and service of this task
  metadata = createServer((req, res) => {
    if (req.url !== '/v4/abc/task') return void res.writeHead(404).end();
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ Cluster: 'arn:aws:ecs:us-east-1:123456789012:cluster/gpu-cluster', TaskARN: TASK_ARN, ServiceName: 'runner-svc', Family: 'amdm-prod-gpu-runner' }));
  });
  await new Promise<void>((r) => metadata.listen(0, '127.0.0.1', r));
  metadataUri = `http://127.0.0.1:${(metadata.address() as AddressInfo).port}/v4/abc`;
});

afterAll(async () => {
  metadata?.closeAllConnections();
  await new Promise((r) => metadata?.close(r));
  await fauxqs?.stop();
});

afterEach(() => ecs.reset());

async function world(opts: { running?: number; now?: () => number; fleet?: boolean; released?: string[] } = {}) {
  const bucket = await fauxqs.createBucket();
  const store = new S3Store({ client: fauxqs.s3, bucket });
  const jobs = new SqsQueue({ client: fauxqs.sqs, queueUrl: await fauxqs.createQueue() });
  const webhooks = new SqsQueue({ client: fauxqs.sqs, queueUrl: await fauxqs.createQueue() });
  ecs.on(DescribeServicesCommand).resolves({ services: [{ serviceName: 'runner-svc', runningCount: opts.running ?? 1, desiredCount: 1 }], failures: [] });
  ecs.on(UpdateServiceCommand).resolves({ service: { serviceName: 'runner-svc', desiredCount: 0 } });
  const fleet = opts.fleet === false ? null : ecsFleetControl({ metadataUri, fetch: globalThis.fetch, ecs: ecsApi(new ECSClient({ region: 'us-east-1' })) });
  const released = opts.released;
  const failures = new StartFailures({
    store,
    jobs,
    webhooks,
    fleet,
    logger: silentLogger,
    ...(opts.now ? { clock: opts.now } : {}),
    ...(released ? { releaseSlot: async (tenant: string, id: string) => void released.push(`${tenant}/${id}`) } : {}),
  });
  const repo = new JobRepository(store);
  const submit = async (id: string, extra: { webhook?: boolean; cancel?: boolean } = {}) => {
    const now = new Date().toISOString();
    await repo.putRequest({ v: 1, id, tenant: 'acme', created_at: now, spec: {} as never, webhook: extra.webhook ? { url: 'https://hooks.test/x' } : null });
    if (extra.cancel) await repo.putCancel('acme', id, { requested_at: now });
    await jobs.send(JSON.stringify({ v: 1, job_id: id, tenant: 'acme', enqueued_at: now }));
  };
  return { bucket, store, jobs, webhooks, failures, repo, submit };
}

const modelsMissing = (bucket: string) =>
  new ModelSyncError(`model manifest s3://${bucket}/models/checksums.json does not exist; upload models with their checksums first`);

describe('StartFailures', () => {
  it('leaves the first failures to ECS\'s restart, then fails the waiting jobs with a readable reason and sets the service to zero', async () => {
    const released: string[] = [];
    const w = await world({ released });
    await w.submit('job_01aaaaaaaaaaaaaaaaaaaaaaaa');
    await w.submit('job_01bbbbbbbbbbbbbbbbbbbbbbbb', { webhook: true });
    await w.submit('job_01cccccccccccccccccccccccc', { cancel: true });

    for (const n of [1, 2]) {
      const outcome = await w.failures.handle(modelsMissing(w.bucket));
      expect(outcome).toEqual({ exitCode: 1, gaveUp: false, recentFailures: n, failedJobs: 0 });
    }
    expect(await w.jobs.stats()).toMatchObject({ visible: 3 });
    expect(ecs.commandCalls(UpdateServiceCommand)).toEqual([]);

    expect(released).toEqual([]);
    const third = await w.failures.handle(modelsMissing(w.bucket));
    expect(third).toEqual({ exitCode: RUNNER_GAVE_UP_EXIT_CODE, gaveUp: true, recentFailures: 3, failedJobs: 3 });
    // each finished job's slot in its tenant's active-job count comes free
    expect(released.sort()).toEqual(['a', 'b', 'c'].map((x) => `acme/job_01${x.repeat(24)}`));
    // the service of this task, from its metadata, to zero
    expect(ecs.commandCalls(UpdateServiceCommand).map((c) => c.args[0].input)).toEqual([
      { cluster: 'arn:aws:ecs:us-east-1:123456789012:cluster/gpu-cluster', service: 'runner-svc', desiredCount: 0 },
    ]);
    expect(await w.jobs.stats()).toEqual({ visible: 0, inFlight: 0, delayed: 0 });

    const failed = await w.repo.getStatus('acme', 'job_01aaaaaaaaaaaaaaaaaaaaaaaa');
    expect(failed).toMatchObject({ status: 'failed', error: { type: RUNNER_UNAVAILABLE_PROBLEM, status: 503, title: 'The job could not run' } });
    expect(failed!.error!.detail).toBe(
      'The GPU runners of this deployment cannot start (model manifest s3://<bucket>/models/checksums.json does not exist; upload models with their checksums first). ' +
        'The operator has been notified; submit the job again later.',
    );
    // a canceled job stays canceled; the one with a webhook gets it, once
    expect(await w.repo.getStatus('acme', 'job_01cccccccccccccccccccccccc')).toMatchObject({ status: 'canceled', error: null });
    expect(await w.repo.getStatus('acme', 'job_01bbbbbbbbbbbbbbbbbbbbbbbb')).toMatchObject({ status: 'failed', webhook_enqueued: true });
    const [hook] = await w.webhooks.receive({ visibilitySeconds: 30, waitSeconds: 1 });
    expect(JSON.parse(hook!.body)).toEqual({ v: 1, job_id: 'job_01bbbbbbbbbbbbbbbbbbbbbbbb', tenant: 'acme', type: 'job.failed' });
    // the records name the task, newest first, and expire with the outputs
    const records = (await w.store.list(FAILURES_PREFIX)).keys;
    expect(records).toHaveLength(3);
    expect(records.every((k) => k.endsWith('-0123456789abcdef.json'))).toBe(true);
  });

  it('counts from the last successful start', async () => {
    const w = await world();
    let now = Date.parse('2026-12-01T10:00:00Z');
    const clocked = new StartFailures({ store: w.store, jobs: w.jobs, webhooks: w.webhooks, fleet: null, clock: () => now, logger: silentLogger });
    await clocked.handle(new Error('x'));
    now += 60_000;
    await clocked.handle(new Error('x'));
    now += 60_000;
    await clocked.recordStart();
    now += 60_000;
    expect((await clocked.handle(new Error('x'))).recentFailures).toBe(1);
  });

  it('forgets failures older than the window', async () => {
    const w = await world();
    let now = Date.parse('2026-12-01T10:00:00Z');
    const clocked = new StartFailures({ store: w.store, jobs: w.jobs, webhooks: w.webhooks, fleet: null, clock: () => now, logger: silentLogger, windowMinutes: 30 });
    await clocked.handle(new Error('x'));
    await clocked.handle(new Error('x'));
    now += 31 * 60_000;
    expect((await clocked.handle(new Error('x'))).recentFailures).toBe(1);
  });

  it('does not give up while another task of the service runs (its jobs have a runner)', async () => {
    const w = await world({ running: 2 });
    await w.submit('job_01dddddddddddddddddddddddd');
    for (let i = 0; i < 4; i++) expect((await w.failures.handle(new Error('CUDA failure 100: no CUDA-capable device is detected'))).gaveUp).toBe(false);
    expect(ecs.commandCalls(UpdateServiceCommand)).toEqual([]);
    expect(await w.jobs.stats()).toMatchObject({ visible: 1 });
  });

  it('never gives up outside ECS, where there is no service to scale', async () => {
    const w = await world({ fleet: false });
    await w.submit('job_01eeeeeeeeeeeeeeeeeeeeeeee');
    for (let i = 0; i < 4; i++) expect((await w.failures.handle(new Error('x'))).exitCode).toBe(1);
    expect(await w.jobs.stats()).toMatchObject({ visible: 1 });
  });
});

describe('publicReason', () => {
  it('keeps the first line, without the bucket or file system paths', () => {
    expect(publicReason(new Error('model file a.onnx from s3://amdm-prod-store-x1/models/a.onnx has sha256 0f; refusing\nstack'))).toBe(
      'model file a.onnx from s3://<bucket>/models/a.onnx has sha256 0f; refusing',
    );
    expect(publicReason(new Error('cannot open /var/cache/amdm/models/x/unet.onnx'))).toBe('cannot open <path>');
    expect(publicReason('x'.repeat(500))).toHaveLength(200);
  });
});
