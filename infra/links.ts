/**
 * Links carry names, never permissions.
 *
 * By default linking an SST Queue grants `sqs:*` on it, linking a Bucket grants `s3:*` on the
 * whole bucket, and linking a Dynamo table grants `dynamodb:*` on it. The edge must be able to
 * enqueue but never receive or delete jobs, may only touch its own key prefixes, and the runner
 * may only release job slots, so the implicit grants are switched off here and every
 * permission is written out in infra/iam.ts. What a link still delivers is the runtime name:
 * `Resource.JobQueue.url`, `Resource.Store.name`, `Resource.Counters.name` (the same
 * properties SST itself exposes).
 *
 * `sst.Linkable.wrap` changes the link of every instance of the class in this app, which is
 * the intent: no future Bucket, Queue or table can grant wildcards by being linked.
 */
export function linksCarryNoPermissions() {
  sst.Linkable.wrap(sst.aws.Queue, (queue) => ({ properties: { url: queue.url } }));
  sst.Linkable.wrap(sst.aws.Bucket, (bucket) => ({ properties: { name: bucket.name } }));
  sst.Linkable.wrap(sst.aws.Dynamo, (table) => ({ properties: { name: table.name } }));
}
