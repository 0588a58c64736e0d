/**
 * A Lambda Function URL with response streaming, on 127.0.0.1: what AWS puts around the edge
 * Lambda (infra/edge.ts), so tests drive the real `handler` export of edge/lambda.ts over HTTP.
 *
 * Two halves, each as AWS does it:
 * - the `awslambda` global of the Node.js runtime: `streamifyResponse` marks a handler as
 *   streaming, and `HttpResponseStream.from` writes the HTTP metadata prelude (JSON), then
 *   eight NUL bytes, before the body, on a stream whose content type says so;
 * - the Function URL service: an HTTP request becomes a payload 2.0 event (lowercase headers,
 *   cookies apart, text bodies as strings and others in base64), and the handler's stream
 *   becomes the HTTP response: prelude -> status, headers and cookies; the rest -> the body,
 *   passed on as it is written, so server-sent events arrive as they happen. An event larger
 *   than Lambda's payload limit is answered 413 by the service, without the handler.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { PassThrough } from 'node:stream';

const STREAMING = Symbol.for('aws.lambda.runtime.handler.streaming');
const PRELUDE_CONTENT_TYPE = 'application/vnd.awslambda.http-integration-response';
const DELIMITER = Buffer.alloc(8);

export interface ResponseStream extends PassThrough {
  setContentType(type: string): void;
  contentType?: string;
}

export interface LambdaContext {
  awsRequestId: string;
  functionName: string;
  getRemainingTimeInMillis(): number;
}

export type StreamingHandler = (event: unknown, stream: ResponseStream, context: LambdaContext) => Promise<unknown>;

/**
 * Adds the runtime's streaming API to the `awslambda` global (idempotent). Install it before
 * importing a handler module. The global may exist already: the AWS SDK puts its own
 * `awslambda.InvokeStore` there, on Lambda and off it.
 */
export function installLambdaRuntimeGlobal(): void {
  const g = globalThis as { awslambda?: Record<string, unknown> };
  const awslambda = (g.awslambda ??= {});
  awslambda.streamifyResponse ??= <T extends object>(fn: T): T => Object.assign(fn, { [STREAMING]: 'response' });
  awslambda.HttpResponseStream ??= {
    from(stream: ResponseStream, prelude: unknown): ResponseStream {
      stream.setContentType(PRELUDE_CONTENT_TYPE);
      stream.write(JSON.stringify(prelude));
      stream.write(DELIMITER);
      return stream;
    },
  };
}

export function isStreamingHandler(fn: unknown): boolean {
  return typeof fn === 'function' && (fn as unknown as Record<symbol, unknown>)[STREAMING] === 'response';
}

/** Lambda's synchronous invocation payload limit, on the serialized event (Lambda quotas: "6 MB"). */
export const LAMBDA_MAX_EVENT_BYTES = 6_291_456;

const TEXT_BODY = /^(text\/|application\/(json|[\w.+-]+\+json|xml|x-www-form-urlencoded|javascript))/i;

async function toEvent(req: IncomingMessage, port: number): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  const body = Buffer.concat(chunks);
  const url = new URL(req.url ?? '/', 'http://x');
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(req.headers)) {
    if (v === undefined || k === 'cookie') continue;
    headers[k] = Array.isArray(v) ? v.join(',') : v;
  }
  const text = TEXT_BODY.test(String(req.headers['content-type'] ?? ''));
  const domainName = `abcdefghij.lambda-url.us-east-1.on.aws:${port}`;
  return {
    version: '2.0',
    routeKey: '$default',
    rawPath: url.pathname,
    rawQueryString: url.search.slice(1),
    ...(req.headers.cookie ? { cookies: req.headers.cookie.split(/;\s*/) } : {}),
    headers,
    requestContext: {
      accountId: 'anonymous',
      apiId: 'abcdefghij',
      domainName,
      domainPrefix: 'abcdefghij',
      http: { method: req.method, path: url.pathname, protocol: 'HTTP/1.1', sourceIp: '127.0.0.1', userAgent: req.headers['user-agent'] ?? '' },
      requestId: crypto.randomUUID(),
      routeKey: '$default',
      stage: '$default',
      time: new Date().toUTCString(),
      timeEpoch: Date.now(),
    },
    ...(body.length > 0 ? { body: text ? body.toString('utf8') : body.toString('base64'), isBase64Encoded: !text } : { isBase64Encoded: false }),
  };
}

export interface FunctionUrl {
  url: string;
  server: Server;
  close(): Promise<void>;
}

/** Serves `handler` (a streaming Lambda handler) as a Function URL would. */
export async function startFunctionUrl(handler: unknown, opts: { port?: number; timeoutMs?: number } = {}): Promise<FunctionUrl> {
  if (!isStreamingHandler(handler)) throw new TypeError('startFunctionUrl: the handler is not wrapped in awslambda.streamifyResponse');
  const fn = handler as StreamingHandler;
  const timeoutMs = opts.timeoutMs ?? 5 * 60_000;
  // Node's default header limit (16 KiB) is below what CloudFront forwards (20,480 bytes)
  const server = createServer({ maxHeaderSize: 64 * 1024 }, async (req, res) => {
    const port = (server.address() as AddressInfo).port;
    const stream = new PassThrough() as ResponseStream;
    stream.setContentType = (type) => (stream.contentType = type);
    let head: Buffer | null = Buffer.alloc(0);
    stream.on('data', (chunk: Buffer) => {
      if (head === null) return void res.write(chunk);
      if (stream.contentType !== PRELUDE_CONTENT_TYPE) {
        // a handler that never sent metadata: Lambda answers 200 with what it wrote
        res.writeHead(200, { 'content-type': stream.contentType ?? 'application/octet-stream' });
        head = null;
        return void res.write(chunk);
      }
      head = Buffer.concat([head, chunk]);
      const at = head.indexOf(DELIMITER);
      if (at < 0) return;
      const prelude = JSON.parse(head.subarray(0, at).toString('utf8')) as { statusCode?: number; headers?: Record<string, string>; cookies?: string[] };
      const rest = head.subarray(at + DELIMITER.length);
      head = null;
      res.writeHead(prelude.statusCode ?? 200, { ...prelude.headers, ...(prelude.cookies?.length ? { 'set-cookie': prelude.cookies } : {}) });
      if (rest.length > 0) res.write(rest);
    });
    stream.on('end', () => {
      if (!res.headersSent) res.writeHead(200);
      res.end();
    });
    const deadline = Date.now() + timeoutMs;
    try {
      const event = await toEvent(req, port);
      // Lambda's invocation payload limit applies to the whole event, before the handler runs
      const eventBytes = Buffer.byteLength(JSON.stringify(event));
      if (eventBytes > LAMBDA_MAX_EVENT_BYTES) {
        res.writeHead(413, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ Message: `Request must be smaller than ${LAMBDA_MAX_EVENT_BYTES} bytes for the InvokeFunction operation` }));
        return;
      }
      await fn(event, stream, { awsRequestId: crypto.randomUUID(), functionName: 'amdm-edge', getRemainingTimeInMillis: () => deadline - Date.now() });
    } catch (err) {
      // an invocation error: the Function URL answers 502
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ Message: (err as Error).message }));
    }
  });
  await new Promise<void>((resolve) => server.listen(opts.port ?? 0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
