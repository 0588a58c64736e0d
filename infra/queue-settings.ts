/**
 * The queues' numbers that the runner must agree with, apart from infra/queues.ts (which
 * builds the SST queues) so that pure code (the runner task definition, tools) can import them
 * without the SST globals. Why each value is what it is: infra/queues.ts.
 */
export const JOB_VISIBILITY_TIMEOUT_SECONDS = 120;
/** A job that failed three deliveries (crash, lost lease, unhandled error) goes to the DLQ. */
export const JOB_MAX_RECEIVE_COUNT = 3;
/**
 * Receives of one webhook message before SQS dead-letters it. The dispatcher
 * (webhooks/dispatcher.ts) makes 8 attempts by default, releasing the message with a
 * delay between them, and gives up on its own; each attempt is one receive. Early wake-ups
 * and lost leases add receives, so the redrive sits well above the schedule: it only catches
 * messages that crash the dispatcher every time.
 */
export const WEBHOOK_MAX_RECEIVE_COUNT = 16;
/** One delivery attempt: the dispatcher's HTTP timeout (15 s) with margin for signing and S3. */
export const WEBHOOK_VISIBILITY_TIMEOUT_SECONDS = 60;
/**
 * How long SQS keeps a job message: 4 days (the SQS default) covers a weekend of the fleet being
 * broken. A job older than this has no message left for a runner to take, so the DynamoDB
 * admission stops counting it (adapters/aws/dynamo-admission.ts DEFAULT_MAX_JOB_AGE_MS).
 */
export const JOB_MESSAGE_RETENTION_SECONDS = 4 * 24 * 60 * 60;
