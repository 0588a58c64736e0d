/**
 * The edge: the Hono app on Lambda (edge/lambda.ts exports `handler`), behind a Router
 * (CloudFront) that gives it one stable origin for the API, the playground and SSE.
 *
 * Streaming is on because the SSE progress route writes events as they happen; with a
 * buffered response CloudFront would see nothing until the Lambda returned.
 */
import { all, type Input } from '@pulumi/pulumi';
import { edgePolicy, toSstPermissions } from './iam.ts';

export const EDGE_HANDLER = 'edge/lambda.handler';

export interface EdgeArgs {
  router: Input<sst.aws.Router>;
  bucketArn: Input<string>;
  jobQueueArn: Input<string>;
  /** Everything the edge reaches at runtime through `Resource.<Name>`. */
  link: Input<unknown>[];
}

/** SST Function arguments, separate from the constructor call so tests can read them. */
export function edgeFunctionArgs(args: EdgeArgs) {
  return {
    handler: EDGE_HANDLER,
    runtime: 'nodejs22.x' as const,
    // No native modules in the edge (web-standard APIs only), so the cheaper Graviton works.
    architecture: 'arm64' as const,
    memory: '512 MB' as const,
    // SSE clients reconnect with Last-Event-ID, so a stream never has to outlive this; the
    // edge's ordinary requests finish in well under a second.
    timeout: '5 minutes' as const,
    streaming: true,
    link: args.link,
    permissions: all([args.bucketArn, args.jobQueueArn]).apply(([bucketArn, jobQueueArn]) =>
      toSstPermissions(edgePolicy({ bucketArn, jobQueueArn })),
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
  return new sst.aws.Function('Edge', edgeFunctionArgs(args));
}
