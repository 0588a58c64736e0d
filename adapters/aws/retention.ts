/**
 * Which stored objects expire, decided by the writer at write time.
 *
 * The bucket's lifecycle rule (infra/storage.ts) expires objects by tag, not by prefix: job
 * outputs live under tenants/{t}/jobs/{id}/out/ and uploads under tenants/{t}/uploads/, and
 * an S3 lifecycle prefix cannot hold a wildcard for the tenant. So whoever writes an output or
 * an upload tags it (the edge for inline images, the client through the presigned PUT, which
 * signs the tag header: S3Store.signedPutUrl), and one rule expires every tagged object after
 * the stage's retention. Usage records, job records and API keys are never tagged: billing and
 * the API must outlive the images.
 *
 * No SDK import here: infra/storage.ts reads the same tag for the lifecycle rule, so the
 * writer and the rule cannot drift apart.
 */

/** The tag the lifecycle rule filters on. */
export const EXPIRING_OBJECT_TAG = { key: 'amdm-expire', value: 'job-output' } as const;

/** tenants/{tenant}/jobs/{jobId}/out/{file}: PNGs and latents (shared/job-repository.ts outputKey). */
const JOB_OUTPUT_KEY = /^tenants\/[^/]+\/jobs\/[^/]+\/out\/[^/]+$/;

/** tenants/{tenant}/uploads/{uploadId}: reference images (shared/job-repository.ts uploadKey). */
const UPLOAD_KEY = /^tenants\/[^/]+\/uploads\/[^/]+$/;

export function isJobOutputKey(key: string): boolean {
  return JOB_OUTPUT_KEY.test(key);
}

export function isUploadKey(key: string): boolean {
  return UPLOAD_KEY.test(key);
}

/** fleet/starts/* and fleet/start-failures/*: one small record per runner start (gpu-runner/aws/start-failure.ts). */
const FLEET_RECORD_KEY = /^fleet\/(starts|start-failures)\/[^/]+$/;

export function isFleetRecordKey(key: string): boolean {
  return FLEET_RECORD_KEY.test(key);
}

/** The tags to write with `key`: the expiry tag on job outputs, uploads and fleet records, nothing on anything else. */
export function retentionTags(key: string): Readonly<Record<string, string>> | null {
  return isJobOutputKey(key) || isUploadKey(key) || isFleetRecordKey(key) ? { [EXPIRING_OBJECT_TAG.key]: EXPIRING_OBJECT_TAG.value } : null;
}
