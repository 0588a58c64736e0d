/**
 * fauxqs (an in-process SQS + S3 emulator speaking the real wire protocols) on 127.0.0.1 and a
 * free port, with SDK clients pointed at it. startFauxqs() would listen on 0.0.0.0, so this
 * builds its Fastify app and listens on loopback only.
 */
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { CreateQueueCommand, GetQueueAttributesCommand, SQSClient } from '@aws-sdk/client-sqs';
import { buildApp } from 'fauxqs';

export interface Fauxqs {
  endpoint: string;
  sqs: SQSClient;
  s3: S3Client;
  /** a fresh queue; with a dead-letter target, a RedrivePolicy pointing at it */
  createQueue(redrive?: { deadLetterUrl: string; maxReceives: number }): Promise<string>;
  createBucket(): Promise<string>;
  stop(): Promise<void>;
}

let counter = 0;
const unique = (kind: string): string => `${kind}-${process.pid}-${Date.now().toString(36)}-${++counter}`;

export async function startFauxqs(): Promise<Fauxqs> {
  const app = buildApp({ logger: false });
  const endpoint = await app.listen({ port: 0, host: '127.0.0.1' });
  const credentials = { accessKeyId: 'test', secretAccessKey: 'test' };
  const sqs = new SQSClient({ endpoint, region: 'us-east-1', credentials });
  const s3 = new S3Client({ endpoint, region: 'us-east-1', credentials, forcePathStyle: true });
  return {
    endpoint,
    sqs,
    s3,
    async createQueue(redrive) {
      const attributes: Record<string, string> = {};
      if (redrive) {
        const dlq = await sqs.send(
          new GetQueueAttributesCommand({ QueueUrl: redrive.deadLetterUrl, AttributeNames: ['QueueArn'] }),
        );
        attributes.RedrivePolicy = JSON.stringify({
          deadLetterTargetArn: dlq.Attributes?.QueueArn,
          maxReceiveCount: String(redrive.maxReceives),
        });
      }
      const out = await sqs.send(new CreateQueueCommand({ QueueName: unique('q'), Attributes: attributes }));
      return out.QueueUrl!;
    },
    async createBucket() {
      const bucket = unique('b').toLowerCase();
      await s3.send(new CreateBucketCommand({ Bucket: bucket }));
      return bucket;
    },
    async stop() {
      sqs.destroy();
      s3.destroy();
      await app.close();
    },
  };
}
