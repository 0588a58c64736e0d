/**
 * The counters table: what every edge instance must count together, which in-memory counts
 * per Lambda instance would multiply by the number of instances.
 *
 * - `admit#{tenant}`: the tenant's admitted (queued or running) jobs, one conditional
 *   UpdateItem per create (adapters/aws/dynamo-admission.ts); the runner removes a job when it
 *   finishes.
 * - `rate#{subject}#{window}`: one subject's requests in one fixed window, one conditional
 *   UpdateItem per request (adapters/aws/dynamo-rate-limiter.ts).
 *
 * On-demand capacity (SST's Dynamo default): the load follows the API's, and an idle stage
 * costs nothing. Items carry `expires_at`, the table's TTL attribute, so rate windows and the
 * items of idle tenants delete themselves; TTL deletion is free. The key and TTL names are
 * the adapters' (adapters/aws/counters-table.ts), so the two cannot drift apart.
 */
import { COUNTERS_KEY, COUNTERS_TTL_ATTRIBUTE } from '../adapters/aws/counters-table.ts';

export function countersArgs() {
  return {
    fields: { [COUNTERS_KEY]: 'string' as const },
    primaryIndex: { hashKey: COUNTERS_KEY },
    ttl: COUNTERS_TTL_ATTRIBUTE,
  };
}

export function createCounters() {
  return new sst.aws.Dynamo('Counters', countersArgs());
}
