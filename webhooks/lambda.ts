/**
 * The webhook Lambda's composition root (infra/webhooks.ts subscribes it to WebhookQueue):
 * delivers job webhooks whenever one is due, including while the GPU fleet is at zero, which
 * the runner-hosted dispatcher could not (a retry due at night waited for the next job).
 *
 * On AWS this is the only consumer of WebhookQueue: runner tasks enqueue and never deliver,
 * so one process role holds the signing secret and makes outbound calls to customer URLs, a
 * GPU never waits on a slow receiver, and the runner's role cannot read the queue.
 *
 * Built once per container: the SDK clients, the store and queue from the SST links
 * (`Resource.Store.name`, `Resource.WebhookQueue.url`), the signing secret
 * (`Resource.WebhookSigningSecret.value`). Environment: PUBLIC_BASE_URL (links in payloads),
 * AMDM_WEBHOOK_RETRY_SCHEDULE (seconds, comma-separated; default the dispatcher's),
 * AMDM_ALLOW_PRIVATE_WEBHOOKS=1 (tests only), and the AWS SDK's own variables.
 */
import { S3Client } from '@aws-sdk/client-s3';
import { SQSClient } from '@aws-sdk/client-sqs';
import { Resource } from 'sst/resource';
import { linkedQueue, linkedStore, linkedString } from '../adapters/aws/links.ts';
import { type BatchResponse, deliverWebhookBatch, type SqsEvent } from './aws/lambda-batch.ts';
import { jsonLogger } from '../shared/logger.ts';
import { DEFAULT_RETRY_SCHEDULE } from './dispatcher.ts';

/** What a webhook receiver would like its output URLs to last; capped by the credentials (above). */
const WEBHOOK_OUTPUT_URL_TTL_SECONDS = 3600;

/** Time kept back from the function's timeout to answer the mapping after giving up waiting. */
const DEADLINE_MARGIN_MS = 2_000;

export function retryScheduleFromEnv(raw: string | undefined): readonly number[] {
  if (!raw) return DEFAULT_RETRY_SCHEDULE;
  const schedule = raw.split(',').map((s) => Number(s.trim()));
  if (schedule.some((s) => !Number.isFinite(s) || s < 0)) throw new Error(`AMDM_WEBHOOK_RETRY_SCHEDULE must be comma-separated seconds (got ${JSON.stringify(raw)})`);
  return schedule;
}

const env = process.env;
const publicBaseUrl = (env.PUBLIC_BASE_URL ?? '').replace(/\/+$/, '');
if (!publicBaseUrl) throw new Error('PUBLIC_BASE_URL must be set to the API\'s public URL (infra/webhooks.ts sets it)');
const logger = jsonLogger('webhooks');
const s3 = new S3Client({});
const sqs = new SQSClient({});
const store = linkedStore(Resource, s3);
const queue = linkedQueue(Resource, 'webhooks', sqs);
const dispatcher = {
  store,
  secret: linkedString(Resource, 'webhookSecret'),
  signUrl: (key: string, ttl: number) => store.signedGetUrl(key, ttl),
  // an hour when the role's credentials last that long; never longer than they do. The
  // receiver gets fresh URLs at any time from the job (GET urls.self re-mints them).
  outputUrlTtlSeconds: () => store.presignableSeconds(WEBHOOK_OUTPUT_URL_TTL_SECONDS),
  publicBaseUrl,
  retrySchedule: retryScheduleFromEnv(env.AMDM_WEBHOOK_RETRY_SCHEDULE),
  allowPrivate: env.AMDM_ALLOW_PRIVATE_WEBHOOKS === '1',
  logger,
};

export async function handler(event: SqsEvent, context: { getRemainingTimeInMillis(): number }): Promise<BatchResponse> {
  return deliverWebhookBatch({
    records: event.Records ?? [],
    queue,
    dispatcher,
    budgetMs: context.getRemainingTimeInMillis() - DEADLINE_MARGIN_MS,
    logger,
  });
}
