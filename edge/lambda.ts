/**
 * The edge's Lambda root: builds createApp's deps from the stack's links and serves the app
 * through a Function URL with response streaming, behind the Router (infra/edge.ts deploys
 * `edge/lambda.handler` with `streaming: true`).
 *
 * Why every route goes through `streamHandle`: a Function URL has one invoke mode for all
 * paths. The SSE route (GET /v1/jobs/{id}/events) needs RESPONSE_STREAM, and under that mode
 * the runtime calls a handler the streaming way only when it is wrapped in
 * `awslambda.streamifyResponse`; a buffered `handle(app)` result would be sent to the client
 * as the body itself. `streamHandle` writes the status and headers first and then the body,
 * which is what the ordinary JSON routes need too, so one handler serves both.
 *
 * Built once per container, at cold start: the S3, SQS and DynamoDB clients (credentials from
 * the function's role), the store and the jobs queue from `Resource.Store.name` and
 * `Resource.JobQueue.url`, the API-key pepper from `Resource.KeyPepper.value`, and the model
 * catalog, read from the file `sst deploy` bundles (shared/model-catalog.ts); there are no
 * model files here. Output URLs are S3 presigned URLs, signed with the role's credentials.
 *
 * What every instance must count together lives in the `Counters` table
 * (`Resource.Counters.name`): the tenants' active jobs (adapters/aws/dynamo-admission.ts) and
 * the per-tenant request rate (adapters/aws/dynamo-rate-limiter.ts). Counted in each
 * instance's memory, both limits would grow with the number of instances.
 *
 * Environment: PUBLIC_BASE_URL (the Router's URL; infra sets it), AMDM_MAX_WAIT_SECONDS (the
 * longest Prefer: wait, below CloudFront's origin read timeout; infra sets it from the stage
 * parameter, default 50), AMDM_MODEL_CATALOG (the catalog file; default
 * LAMBDA_TASK_ROOT/model-catalog.json), the AWS SDK's own variables.
 */
import { join } from 'node:path';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { S3Client } from '@aws-sdk/client-s3';
import { SQSClient } from '@aws-sdk/client-sqs';
import { streamHandle } from 'hono/aws-lambda';
import { Resource } from 'sst/resource';
import { linkedAdmission, linkedQueue, linkedRateLimiter, linkedStore, linkedString } from '../adapters/aws/links.ts';
import { BUNDLED_CATALOG_FILE, readModelCatalog } from '../shared/model-catalog.ts';
import { createApp } from './app.ts';
import { jsonLogger } from '../shared/logger.ts';

const env = process.env;
const publicBaseUrl = (env.PUBLIC_BASE_URL ?? '').replace(/\/+$/, '');
if (!publicBaseUrl) throw new Error("PUBLIC_BASE_URL must be the API's public URL (the Router's; infra/edge.ts sets it)");
/**
 * The Router's origin read timeout is 60 s, and a Prefer: wait create sends nothing until its
 * wait is over: past that CloudFront answers 504 for a job it accepted. So the cap here is
 * lower than the single node's 60 (infra/edge-timing.ts PREFER_WAIT_MARGIN_SECONDS says by how much,
 * and the stage parameter sets it); a longer wait is applied as the cap.
 */
export const DEFAULT_MAX_WAIT_SECONDS = 50;
const rawWait = env.AMDM_MAX_WAIT_SECONDS;
const maxWaitSeconds = rawWait === undefined || rawWait === '' ? DEFAULT_MAX_WAIT_SECONDS : Number(rawWait);
if (!Number.isInteger(maxWaitSeconds) || maxWaitSeconds < 1 || maxWaitSeconds > 600) {
  throw new Error(`AMDM_MAX_WAIT_SECONDS must be a whole number of seconds from 1 to 600 (got ${JSON.stringify(rawWait)})`);
}
// a missing or malformed catalog fails the cold start loudly, naming the file
const { models } = readModelCatalog(env.AMDM_MODEL_CATALOG || join(env.LAMBDA_TASK_ROOT ?? process.cwd(), BUNDLED_CATALOG_FILE));

/**
 * Lambda refuses an invocation whose event is larger than 6,291,456 bytes ("6 MB" in Lambda's
 * quotas; RequestEntityTooLargeException names the exact number), and a Function URL then
 * answers 413 with Lambda's own body before this code runs. The event is the request body
 * plus its envelope: the path (twice), the query, every header, and the request context,
 * JSON-encoded. CloudFront forwards at most 20,480 bytes of request line and headers
 * (CloudFront quotas), so the envelope stays well under 128 KiB even with every character of
 * it escaped; that margin also covers the escaping of the body's own quotes. With the job
 * body limit below the event limit by that much, a job body too large gets the API's
 * problem+json 413 and never Lambda's. (A body sent with a binary content type is base64 in
 * the event, 4/3 of its size; the API refuses such bodies anyway, with 415 when they fit.)
 */
export const LAMBDA_MAX_EVENT_BYTES = 6_291_456;
export const LAMBDA_EVENT_ENVELOPE_BYTES = 128 * 1024;
export const LAMBDA_JOB_BODY_LIMIT_BYTES = LAMBDA_MAX_EVENT_BYTES - LAMBDA_EVENT_ENVELOPE_BYTES;

/**
 * The per-tenant rate of the single node's token buckets (20 requests/s, bursts of 100) as
 * fixed windows: 100 requests per 5 s window, the same burst and the same long-run rate
 * (adapters/aws/dynamo-rate-limiter.ts says what the windows' edges allow).
 */
export const TENANT_RATE_LIMIT = { limit: 100, windowSeconds: 5 } as const;

const s3 = new S3Client({});
const sqs = new SQSClient({});
const dynamo = new DynamoDBClient({});
const store = linkedStore(Resource, s3);

export const app = createApp({
  store,
  queue: linkedQueue(Resource, 'jobs', sqs),
  admission: linkedAdmission(Resource, dynamo, store),
  rateLimiter: linkedRateLimiter(Resource, dynamo, {
    ...TENANT_RATE_LIMIT,
    onError: (err, subject) => jsonLogger('edge').warn('rate limit not counted: DynamoDB failed; request let through', { subject, error: (err as Error)?.message ?? String(err) }),
  }),
  catalog: async () => models,
  pepper: linkedString(Resource, 'keyPepper'),
  publicBaseUrl,
  limits: { maxJobBodyBytes: LAMBDA_JOB_BODY_LIMIT_BYTES, maxWaitSeconds },
});

export const handler = streamHandle(app);
