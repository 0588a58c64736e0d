/**
 * The webhook Lambda's real handler module against fauxqs, driven the way the SQS event source
 * mapping drives it: receive a batch from WebhookQueue, invoke the handler with an SQS event,
 * leave the records it reports in batchItemFailures (and delete the rest, which the handler
 * has already done itself). The module reads its links from SST_RESOURCE_* and builds its
 * clients from AWS_ENDPOINT_URL, as on Lambda.
 */
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ReceiveMessageCommand, SendMessageCommand } from '@aws-sdk/client-sqs';
import { interceptLocalhostDns } from 'fauxqs';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { S3Store } from '../adapters/aws/s3-store.ts';
import { SqsQueue } from '../adapters/aws/sqs-queue.ts';
import { newJobId } from '../shared/ids.ts';
import { JobRepository, type StoredStatus } from '../shared/job-repository.ts';
import { startFauxqs, type Fauxqs } from '../test/conformance/fauxqs-server.ts';
import type { BatchResponse, SqsEvent } from './aws/lambda-batch.ts';
import { oneModelSpec } from '../test/fixtures/job-spec.ts';

const SECRET = `whsec_${Buffer.from('webhook-lambda-test-secret-0123').toString('base64')}`;

let fauxqs: Fauxqs;
let restoreDns: () => void;
let queueUrl: string;
let repo: JobRepository;
let webhooks: SqsQueue;
let handler: (event: SqsEvent, context: { getRemainingTimeInMillis(): number }) => Promise<BatchResponse>;
const saved = { ...process.env };

/** 500 then 200 for /flaky, always 200 for /ok, never an answer for /hang. */
const got: { path: string; headers: IncomingMessage['headers']; body: string }[] = [];
const receiver = createServer((req, res) => {
  let body = '';
  req.on('data', (c) => (body += c));
  req.on('end', () => {
    got.push({ path: req.url!, headers: req.headers, body });
    if (req.url === '/hang') return;
    const flakyCalls = got.filter((g) => g.path === '/flaky').length;
    res.writeHead(req.url === '/flaky' && flakyCalls === 1 ? 500 : 200).end('ok');
  });
});

beforeAll(async () => {
  fauxqs = await startFauxqs();
  // the module's clients take their endpoint from the environment, so they call fauxqs's
  // queue URLs (sqs.REGION.localhost) by name, as they would call real SQS
  restoreDns = interceptLocalhostDns();
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
  const bucket = await fauxqs.createBucket();
  queueUrl = await fauxqs.createQueue();
  Object.assign(process.env, {
    SST_RESOURCE_App: JSON.stringify({ name: 'amdm', stage: 'test' }),
    SST_RESOURCE_Store: JSON.stringify({ name: bucket }),
    SST_RESOURCE_WebhookQueue: JSON.stringify({ url: queueUrl }),
    SST_RESOURCE_WebhookSigningSecret: JSON.stringify({ value: SECRET }),
    AWS_ENDPOINT_URL: fauxqs.endpoint,
    AWS_REGION: 'us-east-1',
    AWS_ACCESS_KEY_ID: 'test',
    AWS_SECRET_ACCESS_KEY: 'test',
    // role credentials that expire in 20 minutes: payload URLs must not outlive them
    AWS_SESSION_TOKEN: 'test-session',
    AWS_CREDENTIAL_EXPIRATION: new Date(Date.now() + 20 * 60_000).toISOString(),
    PUBLIC_BASE_URL: 'https://api.amdm.test/',
    AMDM_WEBHOOK_RETRY_SCHEDULE: '1,1',
    AMDM_ALLOW_PRIVATE_WEBHOOKS: '1',
  });
  ({ handler } = await import('./lambda.ts'));
  repo = new JobRepository(new S3Store({ client: fauxqs.s3, bucket }));
  webhooks = new SqsQueue({ client: fauxqs.sqs, queueUrl });
});

afterAll(async () => {
  process.env = saved;
  restoreDns?.();
  receiver.closeAllConnections();
  await new Promise((r) => receiver.close(r));
  await webhooks?.close();
  await fauxqs?.stop();
});

const spec = oneModelSpec();

/** A finished job with a webhook to `path` on the receiver, and its outbox message. */
async function finishedJob(path: string): Promise<string> {
  const id = newJobId(Date.now());
  const url = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}${path}`;
  await repo.putRequest({ v: 1, id, tenant: 'acme', created_at: new Date().toISOString(), spec, webhook: { url } });
  const out = await repo.putOutput('acme', id, { source: 'aggregated', index: 0, kind: 'image', content_type: 'image/png' }, new Uint8Array([1]));
  const now = new Date().toISOString();
  const status: StoredStatus = {
    v: 1, status: 'succeeded', message_id: 'm', attempt: 1, started_at: now, finished_at: now, updated_at: now, progress: null,
    usage: { unet_evals: 4, images: 1, runner_ms: 5 }, timings: { queued_ms: 1, run_ms: 5, onnx_ms: 4, outside_onnx_ms: 1 },
    error: null, outputs: [out], webhook_enqueued: true, retry: null,
  };
  await repo.putStatus('acme', id, status);
  await webhooks.send(JSON.stringify({ v: 1, job_id: id, tenant: 'acme', type: 'job.succeeded' }));
  return id;
}

/** One poll of the event source mapping: a batch as Lambda receives it, then the invocation. */
async function invoke(remainingMs = 30_000): Promise<{ event: SqsEvent; response: BatchResponse } | null> {
  const out = await fauxqs.sqs.send(
    new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: 10, VisibilityTimeout: 60, WaitTimeSeconds: 0, MessageSystemAttributeNames: ['All'] }),
  );
  if (!out.Messages?.length) return null;
  const event: SqsEvent = {
    Records: out.Messages.map((m) => ({
      messageId: m.MessageId!,
      receiptHandle: m.ReceiptHandle!,
      body: m.Body!,
      attributes: { ApproximateReceiveCount: m.Attributes!.ApproximateReceiveCount! },
    })),
  };
  const deadline = Date.now() + remainingMs;
  return { event, response: await handler(event, { getRemainingTimeInMillis: () => deadline - Date.now() }) };
}

async function until<T>(f: () => Promise<T | null | false>, what: string, ms = 15_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('webhook Lambda handler', () => {
  it('delivers a signed webhook, backs a failure off with the message\'s own visibility, and deletes what was delivered', async () => {
    const id = await finishedJob('/flaky');
    const first = await invoke();
    expect(first!.event.Records).toHaveLength(1);
    // 500: the record is reported failed, and the message sleeps for the first retry delay
    expect(first!.response).toEqual({ batchItemFailures: [{ itemIdentifier: first!.event.Records[0]!.messageId }] });
    expect(await webhooks.stats()).toMatchObject({ visible: 0, inFlight: 1 });
    const [attempt1] = await repo.listWebhookAttempts('acme', id);
    expect(attempt1).toMatchObject({ attempt: 1, ok: false, status: 500 });

    const second = await until(() => invoke(), 'the retry to become due');
    expect(second.response).toEqual({ batchItemFailures: [] });
    expect(second.event.Records[0]!.attributes.ApproximateReceiveCount).toBe('2');
    expect(await webhooks.stats()).toEqual({ visible: 0, inFlight: 0, delayed: 0 });
    expect((await repo.listWebhookAttempts('acme', id)).map((a) => [a.attempt, a.ok])).toEqual([[1, false], [2, true]]);

    const delivered = got.filter((g) => g.path === '/flaky');
    expect(delivered).toHaveLength(2);
    // Standard Webhooks signature with the linked secret; payload links use PUBLIC_BASE_URL
    const payload = new Webhook(SECRET).verify(delivered[1]!.body, delivered[1]!.headers as Record<string, string>) as { type: string; data: { id: string; outputs: { url: string }[] } };
    expect(payload.type).toBe('job.succeeded');
    expect(payload.data.id).toBe(id);
    // output URLs in the payload are S3 presigned URLs of the job's output
    const url = new URL(payload.data.outputs[0]!.url);
    expect(url.searchParams.get('X-Amz-Signature')).toMatch(/^[0-9a-f]{64}$/);
    // minted for no longer than the signing credentials live (20 minutes, less a margin),
    // and the payload says so
    const lifetime = Number(url.searchParams.get('X-Amz-Expires'));
    expect(lifetime).toBeLessThanOrEqual(20 * 60 - 60);
    expect(lifetime).toBeGreaterThan(15 * 60);
    const signedAt = Date.parse(url.searchParams.get('X-Amz-Date')!.replace(/^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/, '$1-$2-$3T$4:$5:$6Z'));
    const stated = Date.parse((payload.data.outputs[0] as unknown as { expires_at: string }).expires_at);
    expect(Math.abs(stated - (signedAt + lifetime * 1000))).toBeLessThan(5_000);
  });

  it('drops a message that is not a webhook message, and reports the other records of the batch on their own', async () => {
    await fauxqs.sqs.send(new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: 'not json' }));
    const id = await finishedJob('/ok');
    const batch = await until(async () => {
      const b = await invoke();
      return b && b.event.Records.length === 2 ? b : null;
    }, 'both messages in one batch');
    expect(batch.response).toEqual({ batchItemFailures: [] });
    expect(await webhooks.stats()).toEqual({ visible: 0, inFlight: 0, delayed: 0 });
    expect((await repo.listWebhookAttempts('acme', id)).map((a) => a.ok)).toEqual([true]);
  });

  it('answers before the function deadline, reporting a delivery that has not finished as failed', async () => {
    const id = await finishedJob('/hang');
    // the 2 s margin leaves 0.6 s of waiting; the receiver never answers
    const result = await invoke(2_600);
    expect(result!.response.batchItemFailures).toEqual([{ itemIdentifier: result!.event.Records[0]!.messageId }]);
    // it answered while the delivery was still in flight (its own timeout writes an attempt)
    expect(await repo.listWebhookAttempts('acme', id)).toEqual([]);
    expect(got.filter((g) => g.path === '/hang')).toHaveLength(1);
  });
});
