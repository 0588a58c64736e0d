/**
 * The edge Lambda's real module (edge/lambda.ts) behind a local Function URL with response
 * streaming (test/e2e/lambda-url.ts), over S3 and SQS on fauxqs and the counters table on
 * dynalite. Its links come from SST_RESOURCE_* and its clients from AWS_ENDPOINT_URL (and
 * AWS_ENDPOINT_URL_DYNAMODB), exactly as on Lambda.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { interceptLocalhostDns } from 'fauxqs';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { S3Store } from '../adapters/aws/s3-store.ts';
import { SqsQueue } from '../adapters/aws/sqs-queue.ts';
import { createApiKey } from '../shared/api-keys.ts';
import type { JobRecord, ModelInfo } from '../shared/contract/index.ts';
import { JobRepository, type StoredStatus } from '../shared/job-repository.ts';
import { GetItemCommand } from '@aws-sdk/client-dynamodb';
import { COUNTERS_KEY, admissionKey, rateWindowKey } from '../adapters/aws/counters-table.ts';
import { startDynalite, type Dynalite } from '../test/conformance/dynalite-server.ts';
import { startFauxqs, type Fauxqs } from '../test/conformance/fauxqs-server.ts';
import { installLambdaRuntimeGlobal, isStreamingHandler, startFunctionUrl, type FunctionUrl } from '../test/e2e/lambda-url.ts';
import { formatModelCatalog } from '../shared/model-catalog.ts';

const PEPPER = 'edge-lambda-test-pepper';
const model: ModelInfo = {
  id: 'shapes-base',
  description: 'bundled',
  ecosystem: 'shapes-v1',
  latent: { channels: 4, vae_scale_factor: 4 },
  sizes: { default: [32, 32], min: 32, max: 64, multiple: 8 },
  conditions: { prompt: { max_tokens: 75 }, grounding: null, reference_image: null },
  schedulers: ['ddim', 'euler'],
};

let fauxqs: Fauxqs;
let dynamo: Dynalite;
let table: string;
let restoreDns: () => void;
let fnUrl: FunctionUrl;
let store: S3Store;
let jobs: SqsQueue;
let key: string;
let dir: string;
let lambda: typeof import('./lambda.ts');
const saved = { ...process.env };

beforeAll(async () => {
  fauxqs = await startFauxqs();
  dynamo = await startDynalite();
  table = await dynamo.createCountersTable();
  restoreDns = interceptLocalhostDns();
  const bucket = await fauxqs.createBucket();
  const queueUrl = await fauxqs.createQueue();
  dir = mkdtempSync(join(tmpdir(), 'amdm-edge-lambda-'));
  writeFileSync(join(dir, 'model-catalog.json'), formatModelCatalog({ models: [model], modelsChecksumsSha256: null }));
  Object.assign(process.env, {
    SST_RESOURCE_App: JSON.stringify({ name: 'amdm', stage: 'test' }),
    SST_RESOURCE_Store: JSON.stringify({ name: bucket }),
    SST_RESOURCE_JobQueue: JSON.stringify({ url: queueUrl }),
    SST_RESOURCE_KeyPepper: JSON.stringify({ value: PEPPER }),
    SST_RESOURCE_Counters: JSON.stringify({ name: table }),
    AWS_ENDPOINT_URL: fauxqs.endpoint,
    AWS_ENDPOINT_URL_DYNAMODB: dynamo.endpoint,
    AWS_REGION: 'us-east-1',
    AWS_ACCESS_KEY_ID: 'test',
    AWS_SECRET_ACCESS_KEY: 'test',
    PUBLIC_BASE_URL: 'https://d1234abcd.cloudfront.net',
    // as infra sets it from the stage parameter (50 by default); 1 so a wait here is short
    AMDM_MAX_WAIT_SECONDS: '1',
    // the bundle's root on Lambda; the catalog sits there under its bundled name
    LAMBDA_TASK_ROOT: dir,
  });
  delete process.env.AMDM_MODEL_CATALOG;
  installLambdaRuntimeGlobal();
  lambda = await import('./lambda.ts');
  fnUrl = await startFunctionUrl(lambda.handler);
  store = new S3Store({ client: fauxqs.s3, bucket });
  jobs = new SqsQueue({ client: fauxqs.sqs, queueUrl });
  key = (await createApiKey(store, { tenant: 'acme', pepper: PEPPER })).key;
});

afterAll(async () => {
  await fnUrl?.close();
  await jobs?.close();
  restoreDns?.();
  await fauxqs?.stop();
  await dynamo?.stop();
  process.env = saved;
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const call = (path: string, init: { method?: string; body?: unknown; key?: string | null } = {}) =>
  fetch(`${fnUrl.url}${path}`, {
    method: init.method ?? (init.body === undefined ? 'GET' : 'POST'),
    headers: { ...(init.key === null ? {} : { authorization: `Bearer ${init.key ?? key}` }), ...(init.body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(init.body !== undefined ? { body: JSON.stringify(init.body) } : {}),
  });

describe('edge/lambda.ts', () => {
  it('exports a streaming handler, which infra deploys as edge/lambda.handler with streaming on', () => {
    expect(isStreamingHandler(lambda.handler)).toBe(true);
  });

  it('serves the bundled catalog, authenticates against the linked bucket and pepper, and enqueues on the linked queue', async () => {
    const models = (await (await call('/v1/models')).json()) as { data: ModelInfo[] };
    expect(models.data.map((m) => m.id)).toEqual(['shapes-base']);

    const res = await call('/v1/jobs', { body: { models: [{ id: 'shapes-base', role: 'base', prompt: 'through lambda' }], sampler: { steps: 3, seed: 1 } } });
    expect(res.status).toBe(202);
    const job = (await res.json()) as JobRecord;
    // links point at the public URL, not at the function URL the request came through
    expect(res.headers.get('location')).toBe(`https://d1234abcd.cloudfront.net/v1/jobs/${job.id}`);
    expect(await new JobRepository(store).getRequest('acme', job.id)).toMatchObject({ id: job.id, tenant: 'acme' });
    const [lease] = await jobs.receive({ visibilitySeconds: 30, waitSeconds: 1 });
    expect(JSON.parse(lease!.body)).toMatchObject({ job_id: job.id, tenant: 'acme' });
    await jobs.ack(lease!);

    // an unknown key is 401 (S3 answers the missing key object with NoSuchKey), not a 500
    const unknown = await call('/v1/models', { key: `amdm_aaaaaaaaaaaa_${'A'.repeat(40)}` });
    expect(unknown.status).toBe(401);
    expect(unknown.headers.get('content-type')).toBe('application/problem+json');
    expect((await call('/v1/models', { key: null })).status).toBe(401);
  });

  it('counts the tenant\'s active jobs and its request rate in the linked Counters table', async () => {
    const res = await call('/v1/jobs', { body: { models: [{ id: 'shapes-base', role: 'base', prompt: 'counted' }], sampler: { steps: 3, seed: 1 } } });
    expect(res.status).toBe(202);
    const job = (await res.json()) as JobRecord;
    const item = async (pk: string) => (await dynamo.client.send(new GetItemCommand({ TableName: table, Key: { [COUNTERS_KEY]: { S: pk } }, ConsistentRead: true }))).Item;
    expect(Object.keys((await item(admissionKey('acme')))!.jobs!.M!)).toContain(job.id);
    // the window of this second: 100 requests per 5 s (lambda.ts TENANT_RATE_LIMIT)
    expect(lambda.TENANT_RATE_LIMIT).toEqual({ limit: 100, windowSeconds: 5 });
    const window = Math.floor(Date.now() / 5000);
    const counted = (await item(rateWindowKey('acme', window))) ?? (await item(rateWindowKey('acme', window - 1)));
    expect(Number(counted?.n?.N)).toBeGreaterThan(0);
    // a queued job canceled frees its slot at once
    expect((await call(`/v1/jobs/${job.id}/cancel`, { method: 'POST' })).status).toBe(200);
    expect(Object.keys((await item(admissionKey('acme')))!.jobs!.M!)).not.toContain(job.id);
  });

  it('two Lambda instances admit exactly the cap of 50 between them from 100 parallel creates', async () => {
    // a second container of the same function: its own module instance, the same links
    vi.resetModules();
    const second = (await import('./lambda.ts')) as typeof import('./lambda.ts');
    const secondUrl = await startFunctionUrl(second.handler);
    try {
      const floodKey = (await createApiKey(store, { tenant: 'flood', pepper: PEPPER })).key;
      const body = JSON.stringify({ models: [{ id: 'shapes-base', role: 'base', prompt: 'flood' }], sampler: { steps: 1, seed: 1 } });
      const results = await Promise.all(
        Array.from({ length: 100 }, (_, i) =>
          fetch(`${(i % 2 ? fnUrl : secondUrl).url}/v1/jobs`, { method: 'POST', headers: { authorization: `Bearer ${floodKey}`, 'content-type': 'application/json' }, body }).then(async (r) => ({
            status: r.status,
            type: r.status === 429 ? ((await r.json()) as { type: string }).type : null,
          })),
        ),
      );
      expect(results.filter((r) => r.status === 202)).toHaveLength(50);
      expect(results.filter((r) => r.status === 429).map((r) => r.type)).toEqual(Array(50).fill('urn:amdm:problem:too-many-active-jobs'));
    } finally {
      await secondUrl.close();
    }
  });

  it('streams GET /v1/jobs/{id}/events as the job changes, and ends after the finished job', async () => {
    const created = (await (await call('/v1/jobs', { body: { models: [{ id: 'shapes-base', role: 'base', prompt: 'sse' }], sampler: { steps: 2, seed: 2 } } })).json()) as JobRecord;
    const res = await call(`/v1/jobs/${created.id}/events`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let text = '';
    const nextEvent = async () => {
      for (;;) {
        const end = text.indexOf('\n\n');
        if (end >= 0 && /^(event|retry|data):/m.test(text.slice(0, end)) && text.slice(0, end).includes('event: job')) {
          const block = text.slice(0, end);
          text = text.slice(end + 2);
          return JSON.parse(block.split('\n').find((l) => l.startsWith('data: '))!.slice(6)) as JobRecord;
        }
        if (end >= 0) {
          text = text.slice(end + 2);
          continue;
        }
        const { value, done } = await reader.read();
        if (done) return null;
        text += decoder.decode(value, { stream: true });
      }
    };
    // the first event arrives while the job is still queued: the stream is not buffered
    expect((await nextEvent())?.status).toBe('queued');
    const now = new Date().toISOString();
    const finished: StoredStatus = {
      v: 1, status: 'failed', message_id: 'm', attempt: 1, started_at: now, finished_at: now, updated_at: now, progress: null, usage: null,
      timings: { queued_ms: 1, run_ms: 1, onnx_ms: null, outside_onnx_ms: null },
      error: { type: 'urn:amdm:problem:job-failed', title: 'The job failed', status: 500, detail: 'test' }, outputs: [], webhook_enqueued: false, retry: null,
    };
    await new JobRepository(store).putStatus('acme', created.id, finished);
    let last: JobRecord | null = null;
    for (let e = await nextEvent(); e; e = await nextEvent()) last = e;
    expect(last?.status).toBe('failed');
  });

  it('hands out upload tickets whose headers carry the expiry tag the presigned PUT signs', async () => {
    const res = await call('/v1/uploads', { body: { content_type: 'image/png' } });
    expect(res.status).toBe(201);
    const ticket = (await res.json()) as { upload_id: string; upload_url: string; method: string; headers: Record<string, string> };
    // uploads expire like outputs (infra/storage.ts lifecycle rule, by tag)
    expect(ticket.headers).toEqual({ 'content-type': 'image/png', 'x-amz-tagging': 'amdm-expire=job-output' });
    expect(new URL(ticket.upload_url).searchParams.get('X-Amz-SignedHeaders')).toContain('x-amz-tagging');
    const put = await fetch(ticket.upload_url, { method: ticket.method, headers: ticket.headers, body: new Uint8Array([137, 80, 78, 71]) });
    expect(put.status).toBe(200);
    expect((await store.get(`tenants/acme/uploads/${ticket.upload_id}`))?.body).toEqual(new Uint8Array([137, 80, 78, 71]));
  });

  // Lambda refuses events over 6,291,456 bytes with its own 413 before the handler runs; the
  // API's job body limit sits below that by the envelope, so every body up to it reaches the
  // handler and the first byte over it gets the API's problem+json
  const limit = () => lambda.LAMBDA_JOB_BODY_LIMIT_BYTES;
  const post = (body: string, extra: Record<string, string> = {}) =>
    fetch(`${fnUrl.url}/v1/jobs`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...extra }, body });
  const padded = (bytes: number) => JSON.stringify({ pad: 'A'.repeat(bytes - 10) });

  it('lets a job body at the API\'s limit reach the handler, with the longest headers CloudFront forwards', async () => {
    expect(Buffer.byteLength(padded(limit()))).toBe(limit());
    // CloudFront forwards at most 20,480 bytes of request line and headers; quotes escape to two bytes
    const res = await post(padded(limit()), { 'x-padding': '"'.repeat(19_000) });
    // the handler answered (its validation), not the payload limit
    expect(res.headers.get('content-type')).toBe('application/problem+json');
    expect(res.status).toBe(422);
  });

  it('answers one byte over the API\'s limit with its own problem+json 413', async () => {
    const res = await post(padded(limit() + 1));
    expect(res.status).toBe(413);
    expect(res.headers.get('content-type')).toBe('application/problem+json');
    expect((await res.json()).errors).toEqual([expect.objectContaining({ field: 'body' })]);
  });

  it('applies a Prefer: wait above its cap (AMDM_MAX_WAIT_SECONDS) as the cap, and answers 202 when it is over', async () => {
    const res = await fetch(`${fnUrl.url}/v1/jobs`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', prefer: 'wait=600' },
      body: JSON.stringify({ models: [{ id: 'shapes-base', role: 'base', prompt: 'waits' }], sampler: { steps: 1, seed: 1 } }),
    });
    expect(res.status).toBe(202);
    expect(res.headers.get('preference-applied')).toBe('wait=1');
    expect(((await res.json()) as JobRecord).status).toBe('queued');
  });

  it('fails the cold start with a message naming a bad AMDM_MAX_WAIT_SECONDS', async () => {
    vi.resetModules();
    process.env.AMDM_MAX_WAIT_SECONDS = '61.5';
    try {
      await expect(import('./lambda.ts')).rejects.toThrow(/AMDM_MAX_WAIT_SECONDS must be a whole number of seconds from 1 to 600 \(got "61\.5"\)/);
    } finally {
      process.env.AMDM_MAX_WAIT_SECONDS = '1';
    }
  });

  it('fails the cold start with a message naming a missing catalog', async () => {
    vi.resetModules();
    process.env.AMDM_MODEL_CATALOG = join(dir, 'nowhere.json');
    try {
      await expect(import('./lambda.ts')).rejects.toThrow(/no model catalog at .*nowhere\.json/);
    } finally {
      delete process.env.AMDM_MODEL_CATALOG;
    }
  });
});
