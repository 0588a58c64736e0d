/**
 * Storage: the one private bucket that holds API keys, job records, outputs, usage and models
 * (key layout in docs/architecture.md).
 *
 * Expiry is by object tag, not by prefix: outputs live under tenants/{t}/jobs/{id}/out/ and
 * uploads under tenants/{t}/uploads/, and an S3 lifecycle prefix cannot contain a wildcard for
 * the tenant. Expiring all of tenants/ would
 * also delete usage records (billing) and API-facing records, so the writer of an expendable
 * object tags it instead (EXPIRING_OBJECT_TAG) and one rule expires everything tagged.
 */
import type { Input } from '@pulumi/pulumi';
import { s3 } from '@pulumi/aws';
import { EXPIRING_OBJECT_TAG } from '../adapters/aws/retention.ts';

/**
 * The tag that makes an object expire after the stage's retention: the S3 store of every AWS
 * root writes it with each job output (tenants/{t}/jobs/{id}/out/*) in the PutObject itself
 * (x-amz-tagging, which needs s3:PutObjectTagging, granted in infra/iam.ts). One constant,
 * in adapters/aws/retention.ts, for the writer and this rule.
 */
export { EXPIRING_OBJECT_TAG };

/** Browser methods the playground needs on signed URLs: GET outputs, PUT uploads. */
export const BUCKET_CORS_METHODS = ['GET', 'PUT'] as const;

export interface StorageArgs {
  /** Origins allowed to use signed URLs from a browser: the Router's URL plus extras. */
  corsOrigins: Input<Input<string>[]>;
}

/** SST Bucket arguments, separate from the constructor call so tests can read them. */
export function bucketArgs(args: StorageArgs) {
  return {
    // No `access` and no `public`: SST then blocks every kind of public access on the bucket
    // and adds no public policy. Clients only ever reach objects through presigned URLs.
    enforceHttps: true,
    cors: {
      allowOrigins: args.corsOrigins,
      allowMethods: [...BUCKET_CORS_METHODS],
      // Content-Type is part of the signed PUT; the SDK may add checksum headers.
      allowHeaders: ['content-type', 'x-amz-checksum-*', 'x-amz-sdk-checksum-algorithm', 'x-amz-tagging'],
      exposeHeaders: ['ETag'],
      maxAge: '1 hour' as const,
    },
  };
}

export function createStorage(args: StorageArgs & { retentionDays: number }) {
  const bucket = new sst.aws.Bucket('Store', bucketArgs(args));
  const lifecycle = createExpiryRules('StoreExpiry', bucket.name, args.retentionDays);
  return { bucket, lifecycle };
}

/**
 * Lifecycle rules, as raw Pulumi so they can say "by tag" (SST's `lifecycle` argument filters
 * by prefix only). Also aborts multipart uploads that never completed, which S3 would
 * otherwise keep, and bill, forever.
 */
export function createExpiryRules(name: string, bucketName: Input<string>, retentionDays: number) {
  if (!Number.isInteger(retentionDays) || retentionDays < 1) {
    throw new RangeError(`retentionDays=${retentionDays}; allowed: a whole number of days >= 1`);
  }
  return new s3.BucketLifecycleConfiguration(name, {
    bucket: bucketName,
    rules: [
      {
        id: 'expire-job-outputs',
        status: 'Enabled',
        filter: { tag: { key: EXPIRING_OBJECT_TAG.key, value: EXPIRING_OBJECT_TAG.value } },
        expiration: { days: retentionDays },
      },
      {
        id: 'abort-incomplete-multipart-uploads',
        status: 'Enabled',
        // An empty filter applies the rule to the whole bucket.
        filter: {},
        abortIncompleteMultipartUpload: { daysAfterInitiation: 1 },
      },
    ],
  });
}
