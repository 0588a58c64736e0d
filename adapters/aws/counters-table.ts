/**
 * The DynamoDB table that holds what every edge instance must count together: the tenants'
 * active jobs (dynamo-admission.ts) and the per-key request windows (dynamo-rate-limiter.ts).
 *
 * One table, one string hash key, items told apart by the key's prefix; the stack creates it
 * (infra/counters.ts) from these names and the tests create the same table on dynalite. No AWS
 * SDK here: infra imports this file.
 */

/** The hash key attribute. */
export const COUNTERS_KEY = 'pk';
/**
 * Epoch seconds after which DynamoDB's TTL may delete the item: rate windows long past, and
 * the admission item of a tenant idle for longer than a job can stay active.
 */
export const COUNTERS_TTL_ATTRIBUTE = 'expires_at';

/** The item that holds a tenant's admitted jobs. */
export const admissionKey = (tenant: string): string => `admit#${tenant}`;

/** The item that counts one subject's requests in one window (its index since the epoch). */
export const rateWindowKey = (subject: string, window: number): string => `rate#${subject}#${window}`;
