/**
 * The Router's timing that the edge's Prefer: wait cap must fit in. Pure numbers, no SST
 * globals: infra/params.ts checks the stage parameter against them, and the CLI imports that.
 */

/**
 * How long the Router (CloudFront) waits for the edge's next bytes: CloudFront's longest origin
 * read timeout without a quota increase. The SSE route keeps streams alive well within it; a
 * `Prefer: wait` create sends nothing until its wait is over, so its cap must end before it.
 */
export const ORIGIN_READ_TIMEOUT_SECONDS = 60;
/**
 * What a `Prefer: wait` answer spends before its first byte besides the wait itself (which
 * counts from the start of the create, its writes included): the edge Lambda's cold start,
 * authentication and the rate limit (S3 and DynamoDB reads), and the read of the job after the
 * wait. The cap (AMDM_MAX_WAIT_SECONDS) plus this stays below ORIGIN_READ_TIMEOUT_SECONDS, or
 * CloudFront would answer 504 for a job it accepted, and a client retrying without an
 * Idempotency-Key would start a second GPU job.
 */
export const PREFER_WAIT_MARGIN_SECONDS = 8;
