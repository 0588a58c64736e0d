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
    // CloudFront's ceiling 60 s): the SSE route must send a keep-alive comment well within it.
    url: { router: { instance: args.router, readTimeout: '60 seconds' as const } },
    logging: { retention: '1 month' as const, format: 'json' as const },
  };
}

export function createRouter() {
  return new sst.aws.Router('Api');
}

export function createEdge(args: EdgeArgs) {
  // fails the deploy before anything is planned, naming the file and what to run
  const catalog = readDeployableCatalog(join(args.projectRoot, args.modelCatalog));
  const fn = new sst.aws.Function('Edge', edgeFunctionArgs(args));
  return { fn, models: catalog.models.map((m) => m.id), modelsChecksumsSha256: catalog.modelsChecksumsSha256 };
}
