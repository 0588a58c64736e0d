/**
 * Refuses bodies above a size with a 413 problem, before anything parses them. Declared
 * Content-Length is checked up front; chunked bodies are counted as they stream in
 * (Hono's bodyLimit does the counting).
 */
import type { MiddlewareHandler } from 'hono';
import { bodyLimit as honoBodyLimit } from 'hono/body-limit';
import { ProblemError } from '../problem/index.ts';

export interface BodyLimitOptions {
  maxBytes: number;
  /** what the body is, for the message ("job request", "upload") */
  what?: string;
}

export function bodyLimit(options: BodyLimitOptions): MiddlewareHandler {
  const { maxBytes } = options ?? ({} as BodyLimitOptions);
  if (!Number.isSafeInteger(maxBytes) || maxBytes < 1) {
    throw new TypeError(`bodyLimit: option "maxBytes" must be a positive integer (got ${maxBytes})`);
  }
  const what = options.what ?? 'request body';
  const tooLarge = () => {
    throw new ProblemError(413, {
      type: 'content-too-large',
      title: 'Content too large',
      detail: `the ${what} is limited to ${maxBytes} bytes`,
      errors: [{ field: 'body', message: `must be at most ${maxBytes} bytes` }],
      // the rest of the body may still be in flight: a client must not reuse this connection
      headers: { connection: 'close' },
    });
  };
  const inner = honoBodyLimit({ maxSize: maxBytes, onError: tooLarge });
  return async function bodyLimit(c, next) {
    const declared = c.req.header('content-length');
    // a negative or non-numeric length would make the check meaningless: refuse it outright
    if (declared !== undefined && !/^\d{1,15}$/.test(declared.trim())) {
      throw new ProblemError(400, {
        type: 'bad-request',
        title: 'Bad request',
        detail: 'Content-Length must be a non-negative integer',
        errors: [{ field: 'header Content-Length', message: 'must be a non-negative integer' }],
      });
    }
    // A declared length bounds the body: Node's HTTP parser reads exactly that many bytes and
    // refuses a request that also declares Transfer-Encoding. So the header is all there is to
    // check, as in Hono's bodyLimit; but answering here also keeps away from `c.req.raw.body`,
    // whose mere access makes @hono/node-server wrap the socket in a web stream and a full
    // Request, a large share of a small POST's cost (bench/edge.ts profile).
    if (declared !== undefined && c.req.method !== 'GET' && c.req.method !== 'HEAD' && c.req.header('transfer-encoding') === undefined) {
      if (Number(declared) > maxBytes) tooLarge();
      return next();
    }
    return inner(c, next);
  };
}
