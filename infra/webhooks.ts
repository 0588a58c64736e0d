/**
 * Webhook delivery: a Lambda subscribed to WebhookQueue (webhooks/lambda.ts), so a
 * webhook, and every retry of it, goes out when it is due, also while the GPU fleet is at zero.
 * Runner tasks only enqueue (infra/iam.ts): one consumer, one holder of the signing secret.
 *
 * Why each setting:
 * - Partial batch responses: the handler reports the records to retry in `batchItemFailures`
 *   after setting their visibility to the retry delay itself (ChangeMessageVisibility), so the
 *   mapping must not delete them; without the setting it would delete every record of a
 *   batch that returned at all.
 * - The function's timeout stays below the queue's visibility timeout (AWS refuses the
 *   mapping otherwise, and a record must not reappear while its invocation still runs).
 * - At most a few invocations at once: webhooks are few, receivers are someone else's
 *   servers, and the mapping would otherwise scale out on a backlog after an outage.
 */
import { all, type Input } from '@pulumi/pulumi';
import { toSstPermissions, webhookDeliveryPolicy } from './iam.ts';
import { WEBHOOK_VISIBILITY_TIMEOUT_SECONDS } from './queues.ts';

export const WEBHOOK_HANDLER = 'webhooks/lambda.handler';
/**
 * Per invocation: up to 10 deliveries at once, each bounded by the dispatcher's 10 s HTTP
 * timeout, plus S3 reads and writes. The handler stops waiting 2 s before this.
 */
export const WEBHOOK_FUNCTION_TIMEOUT_SECONDS = 30;
export const WEBHOOK_BATCH_SIZE = 10;
/** The smallest maximum an SQS event source mapping accepts. */
export const WEBHOOK_MAX_CONCURRENCY = 2;

export interface WebhookDeliveryArgs {
  bucketArn: Input<string>;
  /** The API's public URL: links in payloads point at it. */
  publicBaseUrl: Input<string>;
  /** Everything the function reaches through `Resource.<Name>`: the bucket, the webhook queue, the signing secret. */
  link: Input<unknown>[];
}

/** SST Function arguments of the subscriber, separate so tests can read them. */
export function webhookFunctionArgs(args: WebhookDeliveryArgs) {
  if (WEBHOOK_FUNCTION_TIMEOUT_SECONDS >= WEBHOOK_VISIBILITY_TIMEOUT_SECONDS) {
    throw new RangeError(`webhook function timeout ${WEBHOOK_FUNCTION_TIMEOUT_SECONDS} s must be below the queue's visibility timeout ${WEBHOOK_VISIBILITY_TIMEOUT_SECONDS} s`);
  }
  return {
    handler: WEBHOOK_HANDLER,
    runtime: 'nodejs22.x' as const,
    // pure JavaScript (HTTP, HMAC, the AWS SDK): Graviton is cheaper
    architecture: 'arm64' as const,
    memory: '256 MB' as const,
    timeout: `${WEBHOOK_FUNCTION_TIMEOUT_SECONDS} seconds` as const,
    link: args.link,
    environment: { PUBLIC_BASE_URL: args.publicBaseUrl },
    permissions: all([args.bucketArn]).apply(([bucketArn]) => toSstPermissions(webhookDeliveryPolicy({ bucketArn }))),
    logging: { retention: '1 month' as const, format: 'json' as const },
  };
}

export function webhookSubscriptionArgs() {
  return {
    batch: { size: WEBHOOK_BATCH_SIZE, partialResponses: true },
    transform: {
      eventSourceMapping: { scalingConfig: { maximumConcurrency: WEBHOOK_MAX_CONCURRENCY } },
    },
  };
}

export function createWebhookDelivery(queue: sst.aws.Queue, args: WebhookDeliveryArgs) {
  return queue.subscribe(webhookFunctionArgs(args), webhookSubscriptionArgs());
}
