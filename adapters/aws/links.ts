/**
 * The AWS adapters as the stack links them: every AWS root (the edge Lambda, the webhook
 * Lambda, the GPU runner, `amdm keys` under `sst shell`) builds its store, queues and secrets
 * from the same link names, through these functions, so a root cannot pick a different bucket
 * or forget the retention tags.
 *
 * `links` is the sst SDK's `Resource` in production: SST puts each linked resource into the
 * environment as SST_RESOURCE_<Name> (JSON of its link properties, see infra/links.ts) and
 * `Resource.<Name>` reads it back. Tests pass a plain object of the same shape. The roots own
 * the SDK clients; nothing here reads the environment or builds a client.
 */
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { S3Client } from '@aws-sdk/client-s3';
import type { SQSClient } from '@aws-sdk/client-sqs';
import type { ObjectStore } from '../../shared/ports/store.ts';
import { DynamoAdmission } from './dynamo-admission.ts';
import { DynamoRateLimiter } from './dynamo-rate-limiter.ts';
import { retentionTags } from './retention.ts';
import { S3Store } from './s3-store.ts';
import { SqsQueue } from './sqs-queue.ts';

/** The link names of sst.config.ts and the property each root reads. */
export const LINKS = {
  store: { name: 'Store', property: 'name' },
  jobs: { name: 'JobQueue', property: 'url' },
  jobsDeadLetter: { name: 'JobDeadLetters', property: 'url' },
  webhooks: { name: 'WebhookQueue', property: 'url' },
  keyPepper: { name: 'KeyPepper', property: 'value' },
  webhookSecret: { name: 'WebhookSigningSecret', property: 'value' },
  counters: { name: 'Counters', property: 'name' },
} as const;

export type LinkId = keyof typeof LINKS;

/** `Resource` from 'sst/resource', or any object with the same shape. */
export type Links = object;

export class LinkError extends Error {
  override name = 'LinkError';
}

/** True when the link exists (under `sst shell`, in a linked Lambda, in the runner task). */
export function hasLink(links: Links, id: LinkId): boolean {
  // `in`, not a property read: sst's Resource throws on a read of an unlinked name
  return LINKS[id].name in links;
}

/** One linked string, or an error naming the link and where it comes from. */
export function linkedString(links: Links, id: LinkId): string {
  const { name, property } = LINKS[id];
  if (!(name in links)) {
    throw new LinkError(
      `the SST link "${name}" is missing (no SST_RESOURCE_${name} in the environment); ` +
        `this process must be linked to it in sst.config.ts, or run under \`npx sst shell --stage STAGE\``,
    );
  }
  const value = (links as Record<string, unknown>)[name];
  const field = typeof value === 'object' && value !== null ? (value as Record<string, unknown>)[property] : undefined;
  if (typeof field !== 'string' || field === '') {
    throw new LinkError(`the SST link "${name}" has no ${property} (got ${JSON.stringify(value)?.slice(0, 80)})`);
  }
  return field;
}

/** The bucket, writing job outputs with the expiry tag the lifecycle rule looks for. */
export function linkedStore(links: Links, s3: S3Client): S3Store {
  return new S3Store({ client: s3, bucket: linkedString(links, 'store'), tags: retentionTags });
}

export function linkedQueue(links: Links, id: 'jobs' | 'jobsDeadLetter' | 'webhooks', sqs: SQSClient): SqsQueue {
  return new SqsQueue({ client: sqs, queueUrl: linkedString(links, id) });
}

/** The tenants' active-job counts in the counters table; `store` holds the jobs' records (the reconcile reads them). */
export function linkedAdmission(links: Links, dynamo: DynamoDBClient, store: ObjectStore): DynamoAdmission {
  return new DynamoAdmission({ client: dynamo, table: linkedString(links, 'counters'), store });
}

/** Per-subject request windows in the counters table, shared by every instance that links it. */
export function linkedRateLimiter(
  links: Links,
  dynamo: DynamoDBClient,
  limits: { limit: number; windowSeconds: number; onError?: (err: unknown, subject: string) => void },
): DynamoRateLimiter {
  return new DynamoRateLimiter({ client: dynamo, table: linkedString(links, 'counters'), ...limits });
}
