/**
 * RFC 9457 problem details for every 4xx/5xx, produced in one place.
 *
 * Handlers and middleware throw (ProblemError, or Hono's HTTPException, or a ZodError);
 * `problemOnError` turns each into `application/problem+json`. A write the storage had no room
 * for (StorageFullError, from any port) is a 507 naming the cause, with Retry-After. Anything
 * unexpected becomes a 500 whose body names only the request id: the stack goes to the server
 * log, never to the client.
 */
import type { Context, ErrorHandler, NotFoundHandler } from 'hono';
import { HTTPException } from 'hono/http-exception';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import { ZodError } from 'zod';
import { zodFieldErrors } from '../../../shared/contract/field-errors.ts';
import type { Logger } from '../../../shared/logger.ts';
import { StorageFullError } from '../../../shared/ports/store.ts';

export const PROBLEM_CONTENT_TYPE = 'application/problem+json';

export interface FieldProblem {
  field: string;
  message: string;
}

export interface ProblemInit {
  /** a short, stable slug: becomes `urn:amdm:problem:<slug>` (omit for plain HTTP-status problems) */
  type?: string;
  title: string;
  detail?: string;
  errors?: FieldProblem[];
  headers?: Record<string, string>;
}

export interface ProblemBody {
  type: string;
  title: string;
  status: number;
  detail?: string;
  instance?: string;
  errors?: FieldProblem[];
}

/** Thrown by our own code: carries a full problem. */
export class ProblemError extends HTTPException {
  override name = 'ProblemError';
  readonly problem: Omit<ProblemBody, 'instance'>;
  readonly headers: Record<string, string>;
  constructor(status: ContentfulStatusCode, init: ProblemInit) {
    super(status, { message: init.detail ?? init.title });
    this.problem = {
      type: init.type ? `urn:amdm:problem:${init.type}` : 'about:blank',
      title: init.title,
      status,
      ...(init.detail !== undefined ? { detail: init.detail } : {}),
      ...(init.errors && init.errors.length > 0 ? { errors: init.errors } : {}),
    };
    this.headers = init.headers ?? {};
  }
}

/** 400/422 for bad input, naming every field at fault. */
export function validationProblem(status: 400 | 422, errors: FieldProblem[], detail?: string): ProblemError {
  const fields = [...new Set(errors.map((e) => e.field))];
  return new ProblemError(status, {
    type: status === 422 ? 'validation-error' : 'bad-request',
    title: status === 422 ? 'The request is not valid' : 'Bad request',
    detail: detail ?? `invalid ${fields.slice(0, 5).join(', ')}${fields.length > 5 ? `, and ${fields.length - 5} more` : ''}`,
    errors,
  });
}

export function problemResponse(body: ProblemBody, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status: body.status,
    headers: { ...headers, 'content-type': PROBLEM_CONTENT_TYPE, 'cache-control': 'no-store' },
  });
}

const STATUS_TITLES: Record<number, string> = {
  400: 'Bad request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not found',
  405: 'Method not allowed',
  409: 'Conflict',
  411: 'Length required',
  413: 'Content too large',
  415: 'Unsupported media type',
  422: 'Unprocessable content',
  429: 'Too many requests',
  500: 'Internal server error',
  503: 'Service unavailable',
  507: 'Insufficient storage',
};

/**
 * What a 507 asks the client to wait, in seconds: a full disk is freed by a person or a
 * cleanup job, not in a moment, and retrying sooner only adds load to a struggling server.
 */
export const STORAGE_FULL_RETRY_AFTER_SECONDS = 60;

/** A write refused for lack of room: the cause, never the path. */
export function insufficientStorage(err: StorageFullError): { body: Omit<ProblemBody, 'instance'>; headers: Record<string, string> } {
  return {
    body: {
      type: 'urn:amdm:problem:insufficient-storage',
      title: 'Insufficient storage',
      status: 507,
      detail:
        `the server's storage is full (${err.reason}, ${err.code}), so this request was not carried out; ` +
        'reads keep working. Retry after the Retry-After seconds, once space is freed',
    },
    headers: { 'retry-after': String(STORAGE_FULL_RETRY_AFTER_SECONDS) },
  };
}

/** Hono's own exceptions (malformed JSON, 415 from the validator, ...) as problems. */
function fromHttpException(err: HTTPException): { body: Omit<ProblemBody, 'instance'>; headers: Record<string, string> } {
  const status = err.status;
  if (status === 400 && /malformed json/i.test(err.message)) {
    return {
      body: {
        type: 'urn:amdm:problem:malformed-json',
        title: 'Malformed JSON',
        status,
        detail: 'the request body is not valid JSON',
        errors: [{ field: 'body', message: 'must be a JSON document (RFC 8259)' }],
      },
      headers: {},
    };
  }
  if (status === 415) {
    return {
      body: {
        type: 'urn:amdm:problem:unsupported-media-type',
        title: 'Unsupported media type',
        status,
        detail: 'send the body as application/json',
        errors: [{ field: 'header Content-Type', message: 'must be application/json' }],
      },
      headers: {},
    };
  }
  const headers: Record<string, string> = {};
  err.res?.headers.forEach((v, k) => {
    if (k !== 'content-type' && k !== 'content-length') headers[k] = v;
  });
  return {
    body: {
      type: 'about:blank',
      title: STATUS_TITLES[status] ?? `HTTP ${status}`,
      status,
      // Hono's messages are fixed strings, never user data or internals, below 500
      ...(status < 500 && err.message ? { detail: err.message } : {}),
    },
    headers,
  };
}

/** The instance of a problem: the request id, so a user report can be found in the logs. */
const instanceOf = (c: Context): string | undefined => {
  const id = c.get('requestId' as never) as string | undefined;
  return id ? `urn:amdm:request:${id}` : undefined;
};

export interface ProblemOnErrorOptions {
  logger: Logger;
  /** told of each write refused for lack of room (which it logs); without it, each is logged here */
  onStorageFull?: (err: StorageFullError) => void;
}

export function problemOnError(opts: ProblemOnErrorOptions): ErrorHandler {
  if (!opts || typeof opts.logger?.error !== 'function') throw new TypeError('problemOnError: option "logger" must have an error(msg, fields) method');
  if (opts.onStorageFull !== undefined && typeof opts.onStorageFull !== 'function') throw new TypeError('problemOnError: option "onStorageFull" must be a function');
  const { logger, onStorageFull } = opts;
  return function onError(err, c) {
    const instance = instanceOf(c);
    const withInstance = <T extends object>(b: T) => (instance ? { ...b, instance } : b);
    // the response is built from scratch here, so headers set earlier (c.header) are re-added
    const requestId = c.get('requestId' as never) as string | undefined;
    const base: Record<string, string> = requestId ? { 'x-request-id': requestId } : {};
    if (err instanceof ProblemError) {
      return problemResponse(withInstance(err.problem) as ProblemBody, { ...base, ...err.headers });
    }
    if (err instanceof StorageFullError) {
      if (onStorageFull) onStorageFull(err);
      else logger.error('storage full; answered 507', { where: err.where, code: err.code, method: c.req.method, path: c.req.path, instance });
      const { body, headers } = insufficientStorage(err);
      return problemResponse(withInstance(body) as ProblemBody, { ...base, ...headers });
    }
    if (err instanceof HTTPException) {
      const { body, headers } = fromHttpException(err);
      if (body.status >= 500) logger.error('http exception', { status: body.status, err: String(err.stack ?? err), instance });
      return problemResponse(withInstance(body) as ProblemBody, { ...base, ...headers });
    }
    if (err instanceof ZodError) {
      // a schema parse that a handler did not catch: still the client's input
      return problemResponse(withInstance(validationProblem(422, zodFieldErrors(err.issues)).problem) as ProblemBody, base);
    }
    logger.error('unhandled error', { err: String((err as Error)?.stack ?? err), method: c.req.method, path: c.req.path, instance });
    return problemResponse(
      withInstance({
        type: 'about:blank',
        title: 'Internal server error',
        status: 500,
        detail: 'the server failed to handle this request; it has been logged. Retry later, or report the instance.',
      }) as ProblemBody,
      base,
    );
  };
}

export function problemNotFound(): NotFoundHandler {
  return function notFound(c) {
    const instance = instanceOf(c);
    return problemResponse({
      type: 'about:blank',
      title: 'Not found',
      status: 404,
      detail: `no route for ${c.req.method} ${c.req.path}; see /openapi.json`,
      ...(instance ? { instance } : {}),
    });
  };
}
