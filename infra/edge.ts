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
import type { wafv2 } from '@pulumi/aws';
import { all, output, type Input } from '@pulumi/pulumi';
import { BUNDLED_CATALOG_FILE, readDeployableCatalog } from '../shared/model-catalog.ts';
import { ORIGIN_READ_TIMEOUT_SECONDS, PREFER_WAIT_MARGIN_SECONDS } from './edge-timing.ts';
import { edgePolicy, toSstPermissions } from './iam.ts';

export const EDGE_HANDLER = 'edge/lambda.handler';

// the Router's timing, in a file of its own so that infra/params.ts (which the CLI imports)
// reads it without the SST globals this file needs
export { ORIGIN_READ_TIMEOUT_SECONDS, PREFER_WAIT_MARGIN_SECONDS } from './edge-timing.ts';

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

/** The name SST's Router gives its rate-based rule (.sst/platform/src/components/aws/router.ts). */
export const WAF_RATE_RULE = 'RateLimitPerIP';
const RATE_LIMITED_BODY = 'rate-limited';

/**
 * The Router with AWS WAF in front (SST's `waf` option: a web ACL in us-east-1, scope
 * CLOUDFRONT, attached to the distribution): one rate-based rule that blocks a client address
 * past `rateLimitPerIp` requests in 5 minutes, before any request reaches the edge Lambda.
 * That is what bounds unauthenticated floods here: the Lambda sees CloudFront's address, not
 * the client's, so the edge cannot limit failed authentications per address as the single
 * node does.
 *
 * SST's managed rule groups (core rule set, known bad inputs, SQL injection) are off: they
 * match on request bodies, and a prompt is free text ("a sign that says ' OR 1=1") and a
 * reference image is base64, so they would turn away valid jobs with CloudFront's 403 instead
 * of a problem naming the field, and each group adds its monthly and per-request fees.
 */
export function routerArgs(opts: { rateLimitPerIp: number }) {
  return {
    waf: {
      rateLimitPerIp: opts.rateLimitPerIp,
      managedRules: { coreRuleSet: false, knownBadInputs: false, sqlInjection: false },
    },
    transform: { waf: answerBlockedWith429 },
  };
}

/**
 * WAF blocks with a bare 403 by default, which reads as "your key is refused". A client over
 * the rate gets what the API answers for its own limits instead: 429, Retry-After and a
 * problem body (WAF has no application/problem+json; JSON is the nearest it serves). WAF
 * re-checks the rate often, not once per window, so a minute is a fair time to come back.
 */
export function answerBlockedWith429(args: wafv2.WebAclArgs): undefined {
  args.customResponseBodies = [
    {
      key: RATE_LIMITED_BODY,
      contentType: 'APPLICATION_JSON',
      content: JSON.stringify({
        type: 'urn:amdm:problem:rate-limited',
        title: 'Too many requests',
        status: 429,
        detail: 'too many requests from this address; retry in a minute',
      }),
    },
  ];
  args.rules = output(args.rules ?? []).apply((rules) =>
    rules.map((rule) =>
      rule.name === WAF_RATE_RULE
        ? { ...rule, action: { block: { customResponse: { responseCode: 429, customResponseBodyKey: RATE_LIMITED_BODY, responseHeaders: [{ name: 'retry-after', value: '60' }] } } } }
        : rule,
    ),
  );
  return undefined;
}

export function createRouter(opts: { rateLimitPerIp: number }) {
  return new sst.aws.Router('Api', routerArgs(opts));
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
