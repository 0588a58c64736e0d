/**
 * Argument rules that every ObjectStore adapter enforces identically.
 *
 * The filesystem store needs the strictest key rules (no path traversal, no aliasing of
 * "a//b" or "a/./b" onto "a/b"), and a key that only works on S3 would break local runs, so
 * the memory and S3 adapters refuse exactly the same keys.
 */

export const MAX_KEY_BYTES = 1024;
/** S3 ListObjectsV2 returns at most 1000 keys per page. */
export const MAX_LIST_LIMIT = 1000;
/** SigV4 presigned URLs live at most 7 days; the HMAC URLs of the embedded stores follow suit. */
export const MAX_SIGNED_URL_TTL_SECONDS = 604_800;
export const DEFAULT_CONTENT_TYPE = 'application/octet-stream';

const encoder = new TextEncoder();

export function utf8ByteLength(s: string): number {
  return encoder.encode(s).byteLength;
}

/** A key as it appears in an error: quoted, escaped, and cut short when huge. */
export function showKey(key: string): string {
  const shown = JSON.stringify(key.length > 120 ? `${key.slice(0, 120)}…` : key);
  return key.length > 120 ? `${shown} (${utf8ByteLength(key)} bytes)` : shown;
}

function invalid(key: string, rule: string): never {
  throw new RangeError(`invalid object key ${showKey(key)}: ${rule}`);
}

export function checkKey(key: string): string {
  if (typeof key !== 'string') {
    throw new TypeError(`invalid object key: expected a string, got ${typeof key}`);
  }
  if (key === '') invalid(key, 'a key must not be empty');
  // a UTF-16 code unit takes at most 3 bytes of UTF-8: short keys need no encoding to count
  if (key.length * 3 > MAX_KEY_BYTES) {
    const bytes = utf8ByteLength(key);
    if (bytes > MAX_KEY_BYTES) invalid(key, `a key is at most ${MAX_KEY_BYTES} bytes of UTF-8; this one is ${bytes}`);
  }
  if (key.includes('\0')) invalid(key, 'NUL characters are not allowed');
  // S3 lists keys in XML, which cannot carry most control characters
  if (/[\x01-\x1F\x7F]/.test(key)) invalid(key, 'control characters (U+0001-U+001F, U+007F) are not allowed');
  if (key.includes('\\')) invalid(key, "backslashes are not allowed (keys are '/'-separated)");
  if (/\p{Cs}/u.test(key)) invalid(key, 'lone UTF-16 surrogates are not allowed (a key must be valid Unicode)');
  if (key.startsWith('/')) invalid(key, "a key must not start with '/'");
  for (const segment of key.split('/')) {
    if (segment === '') invalid(key, "empty segments are not allowed (no '//' and no trailing '/')");
    if (segment === '..') invalid(key, "'..' segments are not allowed");
    if (segment === '.') invalid(key, "'.' segments are not allowed");
  }
  return key;
}

export function checkContentType(contentType: string | undefined): string {
  if (contentType === undefined) return DEFAULT_CONTENT_TYPE;
  // it becomes an HTTP header on S3 and on the blob route, so no CR/LF or non-ASCII
  if (typeof contentType !== 'string' || !/^[\x20-\x7E]{1,255}$/.test(contentType) || contentType.trim() === '') {
    throw new RangeError(
      `invalid content type ${JSON.stringify(contentType)}: use 1-255 printable ASCII characters, e.g. "image/png"`,
    );
  }
  return contentType;
}

export function checkBodyType(body: Uint8Array | string): Uint8Array {
  if (typeof body === 'string') return encoder.encode(body);
  if (body instanceof Uint8Array) return body;
  throw new TypeError(`put: body must be a Uint8Array or a string; got ${Object.prototype.toString.call(body)}`);
}

export interface CheckedList {
  prefix: string;
  cursor: string | null;
  limit: number;
}

export function checkListOptions(
  prefix: string,
  opts: { cursor?: string | null; limit?: number } | undefined,
): CheckedList {
  if (typeof prefix !== 'string' || utf8ByteLength(prefix) > MAX_KEY_BYTES) {
    throw new RangeError(`list: prefix must be a string of at most ${MAX_KEY_BYTES} bytes; got ${showKey(String(prefix))}`);
  }
  const limit = opts?.limit ?? MAX_LIST_LIMIT;
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIST_LIMIT) {
    throw new RangeError(`list: limit must be an integer from 1 to ${MAX_LIST_LIMIT}; got ${String(limit)}`);
  }
  const cursor = opts?.cursor ?? null;
  if (cursor !== null && (typeof cursor !== 'string' || cursor === '' || utf8ByteLength(cursor) > MAX_KEY_BYTES)) {
    throw new RangeError(`list: cursor must be null or the last key of a previous page; got ${JSON.stringify(cursor)}`);
  }
  return { prefix, cursor, limit };
}

export function checkSignedUrlTtl(ttlSeconds: number): number {
  if (!Number.isInteger(ttlSeconds) || ttlSeconds < 1 || ttlSeconds > MAX_SIGNED_URL_TTL_SECONDS) {
    throw new RangeError(
      `signed URL ttlSeconds must be an integer from 1 to ${MAX_SIGNED_URL_TTL_SECONDS} (7 days, the SigV4 limit); got ${String(ttlSeconds)}`,
    );
  }
  return ttlSeconds;
}

/**
 * Ascending order of UTF-8 bytes, the order S3 lists in. JavaScript's `<` compares UTF-16
 * code units, which puts U+10000 and above before U+E000-U+FFFF: wrong for S3 parity.
 */
export function compareUtf8(a: string, b: string): number {
  return compareBytes(encoder.encode(a), encoder.encode(b));
}

export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    if (a[i] !== b[i]) return a[i]! - b[i]!;
  }
  return a.length - b.length;
}
