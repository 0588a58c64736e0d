/**
 * What only the AWS adapters promise beyond the shared suites: the shape of presigned URLs
 * (fauxqs does not check them, real S3 does), key prefixes, the mapping of real SQS errors
 * (fauxqs raises only some of them) and long polls longer than SQS's 20 s.
 */
import { GetObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import {
  ChangeMessageVisibilityCommand,
  DeleteMessageCommand,
  ReceiveMessageCommand,
  SQSServiceException,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { S3Store } from '../../adapters/aws/s3-store.ts';
import { SqsQueue } from '../../adapters/aws/sqs-queue.ts';
import { LeaseLostError, type Lease } from '../../shared/ports/queue.ts';
import { startFauxqs, type Fauxqs } from './fauxqs-server.ts';

let fauxqs: Fauxqs;
beforeAll(async () => {
  fauxqs = await startFauxqs();
});
afterAll(async () => {
  await fauxqs?.stop();
});

describe.concurrent('S3Store beyond the shared suite', () => {
  it('presigns a PUT that signs Content-Type, carries the ttl, and bakes in no body checksum', async () => {
    const store = new S3Store({ client: fauxqs.s3, bucket: await fauxqs.createBucket() });
    const url = new URL(await store.signedPutUrl('tenants/t1/uploads/u1', 120, 'image/png'));
    expect(url.searchParams.get('X-Amz-SignedHeaders')).toBe('content-type;host');
    expect(url.searchParams.get('X-Amz-Expires')).toBe('120');
    // a checksum computed at presign time is the empty body's, and S3 would reject the upload
    expect([...url.searchParams.keys()].filter((k) => /checksum/i.test(k))).toEqual([]);
    const get = new URL(await store.signedGetUrl('tenants/t1/uploads/u1', 300));
    expect(get.searchParams.get('X-Amz-Expires')).toBe('300');
  });

  it('keeps stores with different prefixes in one bucket apart', async () => {
    const bucket = await fauxqs.createBucket();
    const prod = new S3Store({ client: fauxqs.s3, bucket, prefix: 'prod/' });
    const dev = new S3Store({ client: fauxqs.s3, bucket, prefix: 'dev/' });
    await prod.put('jobs/j1', 'prod job', 'application/json');
    await dev.put('jobs/j1', 'dev job', 'application/json');
    expect(new TextDecoder().decode((await prod.get('jobs/j1'))!.body)).toBe('prod job');
    expect(await prod.list('jobs/')).toEqual({ keys: ['jobs/j1'], cursor: null });
    const raw = await fauxqs.s3.send(new ListObjectsV2Command({ Bucket: bucket }));
    expect(raw.Contents?.map((o) => o.Key).sort()).toEqual(['dev/jobs/j1', 'prod/jobs/j1']);
    const url = await prod.signedGetUrl('jobs/j1', 60);
    expect(new URL(url).pathname).toBe(`/${bucket}/prod/jobs/j1`);
    await expect(prod.put('x'.repeat(1020), 'x')).rejects.toThrow(/with the store prefix "prod\/" it is 1025 bytes/);
    // the list cursor travels as StartAfter, an object key for S3: the same limit, checked here
    // rather than left to what S3 does with an overlong StartAfter
    await expect(prod.list('jobs/', { cursor: `jobs/${'x'.repeat(1015)}` })).rejects.toThrow(/cursor .* is 1025 bytes with the store prefix "prod\/"; S3 allows 1024/);
    expect(await prod.list('jobs/', { cursor: `jobs/${'x'.repeat(1014)}` })).toEqual({ keys: [], cursor: null });
    expect(() => new S3Store({ client: fauxqs.s3, bucket, prefix: 'no-slash' })).toThrow(/end with '\/'/);
  });

  it('a missing bucket is an error, not a missing object', async () => {
    const store = new S3Store({ client: fauxqs.s3, bucket: 'no-such-bucket-anywhere' });
    await expect(store.get('k')).rejects.toThrow(/bucket/i);
    // the fixture itself: fauxqs does answer NoSuchBucket for this
    await expect(fauxqs.s3.send(new GetObjectCommand({ Bucket: 'no-such-bucket-anywhere', Key: 'k' }))).rejects.toMatchObject({
      name: 'NoSuchBucket',
    });
  });
});

/** An SQSClient stand-in that records commands and answers through `reply`. */
function stubClient(reply: (command: unknown) => Promise<unknown>): { client: SQSClient; commands: unknown[] } {
  const commands: unknown[] = [];
  const client = {
    send: (command: unknown) => {
      commands.push(command);
      return reply(command);
    },
  } as unknown as SQSClient;
  return { client, commands };
}

const lease: Lease = { messageId: 'm-1', body: 'b', receiveCount: 1, handle: 'receipt-1' };
const serviceError = (name: string, message: string): SQSServiceException =>
  new SQSServiceException({ name, message, $fault: 'client', $metadata: { httpStatusCode: 400 } });

describe('SqsQueue beyond the shared suite', () => {
  it('maps the ways real SQS reports a stale receipt handle to LeaseLostError', async () => {
    const stale = [
      serviceError('ReceiptHandleIsInvalid', 'The input receipt handle "receipt-1" is not a valid receipt handle.'),
      serviceError('MessageNotInflight', 'Message does not exist or is not available for visibility timeout change.'),
      serviceError(
        'InvalidParameterValue',
        'Value receipt-1 for parameter ReceiptHandle is invalid. Reason: The receipt handle has expired.',
      ),
    ];
    for (const err of stale) {
      const { client } = stubClient(() => Promise.reject(err));
      const queue = new SqsQueue({ client, queueUrl: 'https://sqs.test/123/jobs' });
      await expect(queue.extend(lease, 30)).rejects.toBeInstanceOf(LeaseLostError);
      await expect(queue.release(lease)).rejects.toBeInstanceOf(LeaseLostError);
      await expect(queue.ack(lease)).rejects.toBeInstanceOf(LeaseLostError);
    }
  });

  it('passes other errors through unchanged', async () => {
    const throttled = serviceError('ThrottlingException', 'Rate exceeded');
    const invalidTimeout = serviceError('InvalidParameterValue', 'Value 99999 for parameter VisibilityTimeout is invalid.');
    for (const err of [throttled, invalidTimeout]) {
      const { client } = stubClient(() => Promise.reject(err));
      const queue = new SqsQueue({ client, queueUrl: 'https://sqs.test/123/jobs' });
      await expect(queue.extend(lease, 30)).rejects.toBe(err);
    }
  });

  it('sends extend, release and ack as the documented SQS calls', async () => {
    const { client, commands } = stubClient(() => Promise.resolve({}));
    const queue = new SqsQueue({ client, queueUrl: 'https://sqs.test/123/jobs' });
    await queue.extend(lease, 45);
    await queue.release(lease, 7);
    await queue.release(lease);
    await queue.ack(lease);
    expect(commands.map((c) => [(c as object).constructor, (c as { input: unknown }).input])).toEqual([
      [ChangeMessageVisibilityCommand, { QueueUrl: 'https://sqs.test/123/jobs', ReceiptHandle: 'receipt-1', VisibilityTimeout: 45 }],
      [ChangeMessageVisibilityCommand, { QueueUrl: 'https://sqs.test/123/jobs', ReceiptHandle: 'receipt-1', VisibilityTimeout: 7 }],
      [ChangeMessageVisibilityCommand, { QueueUrl: 'https://sqs.test/123/jobs', ReceiptHandle: 'receipt-1', VisibilityTimeout: 0 }],
      [DeleteMessageCommand, { QueueUrl: 'https://sqs.test/123/jobs', ReceiptHandle: 'receipt-1' }],
    ]);
  });

  it('splits a wait longer than 20 s into successive long polls', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'Date'] });
    try {
      // each stub poll takes its full WaitTimeSeconds, on the fake clock
      const { client, commands } = stubClient(
        (command) =>
          new Promise((resolve) =>
            setTimeout(() => resolve({}), ((command as ReceiveMessageCommand).input.WaitTimeSeconds ?? 0) * 1000),
          ),
      );
      const queue = new SqsQueue({ client, queueUrl: 'https://sqs.test/123/jobs' });
      const pending = queue.receive({ visibilitySeconds: 30, waitSeconds: 45, max: 4 });
      await vi.advanceTimersByTimeAsync(46_000);
      expect(await pending).toEqual([]);
      const inputs = commands.map((c) => (c as ReceiveMessageCommand).input);
      expect(inputs.map((i) => i.WaitTimeSeconds)).toEqual([20, 20, 5]);
      expect(inputs[0]).toMatchObject({
        MaxNumberOfMessages: 4,
        VisibilityTimeout: 30,
        MessageSystemAttributeNames: ['ApproximateReceiveCount'],
      });
    } finally {
      vi.useRealTimers();
    }
  });

  it('releases at once what an abandoned long poll receives after the abort', async () => {
    let answer: (value: unknown) => void = () => undefined;
    const { client, commands } = stubClient((command) =>
      command instanceof ReceiveMessageCommand ? new Promise((resolve) => (answer = resolve)) : Promise.resolve({}),
    );
    const queue = new SqsQueue({ client, queueUrl: 'https://sqs.test/123/jobs' });
    const controller = new AbortController();
    const pending = queue.receive({ visibilitySeconds: 30, waitSeconds: 20, signal: controller.signal });
    controller.abort();
    expect(await pending).toEqual([]);
    // SQS answers the abandoned request anyway, with a message leased to nobody
    answer({ Messages: [{ MessageId: 'm-9', ReceiptHandle: 'receipt-9', Body: 'x', Attributes: { ApproximateReceiveCount: '1' } }] });
    await queue.close();
    expect(commands.at(-1)).toBeInstanceOf(ChangeMessageVisibilityCommand);
    expect((commands.at(-1) as ChangeMessageVisibilityCommand).input).toMatchObject({ ReceiptHandle: 'receipt-9', VisibilityTimeout: 0 });
  });
});
