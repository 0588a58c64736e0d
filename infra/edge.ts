/**
 * The edge: the Hono app on Lambda (edge/lambda.ts exports `handler`), behind a Router
 * (CloudFront) that gives it one stable origin for the API, the playground and SSE.
 *
 * Streaming is on because the SSE progress route writes events as they happen; with a
 * buffered response CloudFront would see nothing until the Lambda returned. The handler is
 * `streamHandle(app)` for that reason, for every route (see edge/lambda.ts).
 *
 * The model catalog travels in the bundle: the Lambda has no model files, so the deploy copies
 * the catalog generated from the model packages (`npm run models:catalog`) next to the
 * handler, and refuses to deploy one that is missing, malformed, or older than the packages'
 * checksums.json beside it.
 */
import { join } from 'node:path';
import { all, type Input } from '@pulumi/pulumi';
import { BUNDLED_CATALOG_FILE, readDeployableCatalog } from '../tools/model-catalog.ts';
import { edgePolicy, toSstPermissions } from './iam.ts';

export const EDGE_HANDLER = 'edge/lambda.handler';

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

export interface EdgeArgs {
  router: Input<sst.aws.Router>;
  bucketArn: Input<string>;
  jobQueueArn: Input<string>;
  /** The counters table: active jobs and request rates, shared by every instance (infra/counters.ts). */
  countersTableArn: Input<string>;
  /** Everything the edge reaches at runtime through `Resource.<Name>`. */
  link: Input<unknown>[];
  /** The API's public URL (the Router's): links in responses point at it. */
  publicBaseUrl: Input<string>;
  /** The model catalog file to bundle, relative to the project root (stage parameter). */
  modelCatalog: string;
  /** The longest Prefer: wait (stage parameter, below the origin read timeout). */
  maxWaitSeconds: number;
  /**
   * The project root, where SST resolves `copyFiles` (`$cli.paths.root`): the file checked
   * here is then the file that is copied.
   */
  projectRoot: string;
}

/** SST Function arguments, separate from the constructor call so tests can read them. */
export function edgeFunctionArgs(args: EdgeArgs) {
  return {
    handler: EDGE_HANDLER,
    runtime: 'nodejs22.x' as const,
    // No native modules in the edge (web-standard APIs only), so the cheaper Graviton works.
    architecture: 'arm64' as const,
    memory: '512 MB' as const,
    // The event stream closes itself after 4 minutes (edge/routes/events.ts) and clients
    // reconnect to the current state, so a stream never has to outlive this; the edge's
    // ordinary requests finish in well under a second.
    timeout: '5 minutes' as const,
    streaming: true,
    link: args.link,
    environment: {
      // Location headers, the OpenAPI server and job links name the Router, not the function URL
      PUBLIC_BASE_URL: args.publicBaseUrl,
      AMDM_MAX_WAIT_SECONDS: String(args.maxWaitSeconds),
    },
    // at the root of the function package, where edge/lambda.ts looks for it (LAMBDA_TASK_ROOT)
    copyFiles: [{ from: args.modelCatalog, to: BUNDLED_CATALOG_FILE }],
    permissions: all([args.bucketArn, args.jobQueueArn, args.countersTableArn]).apply(([bucketArn, jobQueueArn, countersTableArn]) =>
      toSstPermissions(edgePolicy({ bucketArn, jobQueueArn, countersTableArn })),
    ),
    // The function URL is the Router's origin. Protection stays "none" (the Router default):
    // OAC would make every POST carry an x-amz-content-sha256 header, and edge signing would
    // cap bodies at 1 MB and add Lambda@Edge to every request. Auth is the API key anyway.
    // CloudFront drops an origin that sends nothing for readTimeout (SST's default is 20 s,
    // CloudFront's ceiling 60 s): the SSE route must send a keep-alive comment well within it,
    // and a Prefer: wait must end before it (PREFER_WAIT_MARGIN_SECONDS).
    url: { router: { instance: args.router, readTimeout: `${ORIGIN_READ_TIMEOUT_SECONDS} seconds` as const } },
    logging: { retention: '1 month' as const, format: 'json' as const },
  };
}

export function createRouter() {
  return new sst.aws.Router('Api');
}

export function createEdge(args: EdgeArgs) {
  if (!Number.isInteger(args.maxWaitSeconds) || args.maxWaitSeconds < 1 || args.maxWaitSeconds + PREFER_WAIT_MARGIN_SECONDS >= ORIGIN_READ_TIMEOUT_SECONDS) {
    throw new RangeError(`createEdge: maxWaitSeconds=${args.maxWaitSeconds}; allowed: 1..${ORIGIN_READ_TIMEOUT_SECONDS - PREFER_WAIT_MARGIN_SECONDS - 1} (the origin read timeout less the margin)`);
  }
  // fails the deploy before anything is planned, naming the file and what to run
  const catalog = readDeployableCatalog(join(args.projectRoot, args.modelCatalog));
  const fn = new sst.aws.Function('Edge', edgeFunctionArgs(args));
  return { fn, models: catalog.models.map((m) => m.id), modelsChecksumsSha256: catalog.modelsChecksumsSha256 };
}
