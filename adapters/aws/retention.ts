/**
 * Which stored objects expire, decided by the writer at write time.
 *
 * The bucket's lifecycle rule (infra/storage.ts) expires objects by tag, not by prefix: job
 * outputs live under tenants/{t}/jobs/{id}/out/, and an S3 lifecycle prefix cannot hold a
 * wildcard for the tenant. So whoever writes an output tags it, and one rule expires every
 * tagged object after the stage's retention. Usage records, job records and API keys are
 * never tagged: billing and the API must outlive the images.
 *
 * No SDK import here: infra/storage.ts reads the same tag for the lifecycle rule, so the
 * writer and the rule cannot drift apart.
 */

/** The tag the lifecycle rule filters on. */
export const EXPIRING_OBJECT_TAG = { key: 'amdm-expire', value: 'job-output' } as const;

/** tenants/{tenant}/jobs/{jobId}/out/{file}: PNGs and latents (shared/job-repository.ts outputKey). */
const JOB_OUTPUT_KEY = /^tenants\/[^/]+\/jobs\/[^/]+\/out\/[^/]+$/;

export function isJobOutputKey(key: string): boolean {
  return JOB_OUTPUT_KEY.test(key);
}

/** The tags to write with `key`: the expiry tag on job outputs, nothing on anything else. */
export function retentionTags(key: string): Readonly<Record<string, string>> | null {
  return isJobOutputKey(key) ? { [EXPIRING_OBJECT_TAG.key]: EXPIRING_OBJECT_TAG.value } : null;
}
