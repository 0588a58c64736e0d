/**
 * Links carry names, never permissions.
 *
 * By default linking an SST Queue grants `sqs:*` on it and linking a Bucket grants `s3:*` on
 * the whole bucket. The edge must be able to enqueue but never receive or delete jobs, and
 * may only touch its own key prefixes, so the implicit grants are switched off here and every
 * permission is written out in infra/iam.ts. What a link still delivers is the runtime name:
 * `Resource.JobQueue.url`, `Resource.Store.name` (the same properties SST itself exposes).
 *
 * `sst.Linkable.wrap` changes the link of every instance of the class in this app, which is
 * the intent: no future Bucket or Queue can grant wildcards by being linked.
 */
export function linksCarryNoPermissions() {
  sst.Linkable.wrap(sst.aws.Queue, (queue) => ({ properties: { url: queue.url } }));
  sst.Linkable.wrap(sst.aws.Bucket, (bucket) => ({ properties: { name: bucket.name } }));
}
