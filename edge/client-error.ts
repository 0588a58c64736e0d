/**
 * Requests that Node's HTTP parser refuses before any route sees them: a Content-Length
 * that is not one non-negative integer, headers over the size limit, a method or a header
 * name with a byte no token may hold, a request that took too long to arrive. Node then
 * emits 'clientError' on the server, and without a listener answers with a bare status
 * line (`HTTP/1.1 400 Bad Request`, no type, no body): the one 4xx of the API that was not
 * RFC 9457. This listener answers the same statuses Node would, as problem+json naming
 * the part of the request at fault.
 *
 * Node only: the Lambda root never sees such a request (CloudFront and the Function URL
 * parse HTTP and refuse it themselves, before an event exists).
 */
import { type Server, maxHeaderSize } from 'node:http';
import type { Duplex } from 'node:stream';
import { PROBLEM_CONTENT_TYPE, type FieldProblem, type ProblemBody } from './middleware/problem/index.ts';

interface Refusal {
  status: 400 | 408 | 413 | 431;
  error?: FieldProblem;
}

/** llhttp's error codes (and Node's timeout) by what they say about the request. */
const REFUSALS: Record<string, Refusal> = {
  HPE_INVALID_CONTENT_LENGTH: { status: 400, error: { field: 'header Content-Length', message: 'must be one non-negative decimal integer' } },
  HPE_UNEXPECTED_CONTENT_LENGTH: { status: 400, error: { field: 'header Content-Length', message: 'must not be sent together with Transfer-Encoding' } },
  HPE_INVALID_TRANSFER_ENCODING: { status: 400, error: { field: 'header Transfer-Encoding', message: 'must end with chunked' } },
  HPE_INVALID_CHUNK_SIZE: { status: 400, error: { field: 'body', message: 'each chunk must start with its size in hexadecimal' } },
  HPE_INVALID_METHOD: { status: 400, error: { field: 'method', message: 'must be an HTTP method token such as GET or POST' } },
  HPE_INVALID_URL: { status: 400, error: { field: 'url', message: 'must be a path starting with / and no spaces or control characters' } },
  HPE_INVALID_VERSION: { status: 400, error: { field: 'version', message: 'must be HTTP/1.1 or HTTP/1.0' } },
  HPE_INVALID_HEADER_TOKEN: { status: 400, error: { field: 'headers', message: 'names must be tokens and values must hold no control characters' } },
  HPE_HEADER_OVERFLOW: { status: 431, error: { field: 'headers', message: `the request line and headers must total at most ${maxHeaderSize} bytes` } },
  HPE_CHUNK_EXTENSIONS_OVERFLOW: { status: 413, error: { field: 'body', message: 'chunk extensions must total at most 16 KiB' } },
  ERR_HTTP_REQUEST_TIMEOUT: { status: 408 },
};

const STATUS: Record<Refusal['status'], { type: string; title: string; reason: string }> = {
  400: { type: 'urn:amdm:problem:bad-request', title: 'Bad request', reason: 'Bad Request' },
  408: { type: 'urn:amdm:problem:request-timeout', title: 'Request timeout', reason: 'Request Timeout' },
  413: { type: 'urn:amdm:problem:content-too-large', title: 'Content too large', reason: 'Payload Too Large' },
  431: { type: 'urn:amdm:problem:headers-too-large', title: 'Request header fields too large', reason: 'Request Header Fields Too Large' },
};

/** The whole response, status line to body: the parser is gone, nothing else will write it. */
export function clientErrorResponse(err: { code?: string; reason?: unknown }): string {
  const refusal = REFUSALS[err.code ?? ''] ?? { status: 400 };
  const s = STATUS[refusal.status];
  // llhttp's reason is a fixed string from its source ("Invalid character in Content-Length"), never request bytes
  const why = typeof err.reason === 'string' && err.reason ? `: ${err.reason.slice(0, 200)}` : '';
  const body: ProblemBody = {
    type: s.type,
    title: s.title,
    status: refusal.status,
    detail: refusal.status === 408 ? 'the request did not arrive in time; send it again' : `the request is not valid HTTP/1.1${why}`,
    ...(refusal.error ? { errors: [refusal.error] } : {}),
  };
  const json = JSON.stringify(body);
  return (
    `HTTP/1.1 ${refusal.status} ${s.reason}\r\n` +
    `Content-Type: ${PROBLEM_CONTENT_TYPE}\r\n` +
    `Content-Length: ${Buffer.byteLength(json)}\r\n` +
    'Cache-Control: no-store\r\n' +
    'Connection: close\r\n' +
    `\r\n${json}`
  );
}

/** Answers the server's parser errors with problem+json (see the header). */
export function answerClientErrors(server: Server): void {
  server.on('clientError', function onClientError(err: NodeJS.ErrnoException & { reason?: unknown }, socket: Duplex) {
    // The checks of Node's own handler (lib/_http_server.js, socketOnError): write only to a
    // socket that can take it, and never into a response already under way on this
    // connection (a pipelined request after an event stream), which the bytes would corrupt.
    const inFlight = (socket as Duplex & { _httpMessage?: { headersSent?: boolean } | null })._httpMessage;
    if (err.code !== 'ECONNRESET' && socket.writable && !inFlight?.headersSent) socket.write(clientErrorResponse(err));
    // as Node does: the write above is handed to the kernel at once, before the socket closes
    socket.destroy();
  });
}
