/**
 * Short-lived HMAC-signed blob URLs for the embedded stores (filesystem, memory).
 *
 * The store signs; the edge verifies and serves `/v1/blobs/{key}`. The edge runs on
 * web-standard APIs only, so this module uses crypto.subtle, TextEncoder and btoa/atob, and
 * no `node:` import. The URL form is
 *
 *   {baseUrl}/v1/blobs/{segment}/{segment}?method=GET&expires={unix seconds}&sig={base64url}
 *
 * with each key segment encodeURIComponent'ed. The MAC covers a version tag, the method, the
 * expiry and the key, so a URL grants one method on one key until it expires.
 */

export type BlobUrlMethod = 'GET' | 'PUT';

export const BLOB_ROUTE_PREFIX = '/v1/blobs/';

export type BlobSignatureVerdict =
  | { valid: true }
  /**
   * 'malformed': expires or sig is not in the form this module produces;
   * 'bad-signature': the MAC does not match (tampered, other secret, other method or key);
   * 'expired': an authentic URL whose time has passed (reported only for authentic URLs, so a
   * client may safely treat it as "ask for a fresh URL").
   */
  | { valid: false; reason: 'malformed' | 'bad-signature' | 'expired' };

/** The secret is at least 32 bytes, the HMAC-SHA256 block-size guidance for a full-strength key. */
export const MIN_SECRET_BYTES = 32;

const encoder = new TextEncoder();
const SIG_PATTERN = /^[A-Za-z0-9_-]{43}$/;
const EXPIRES_PATTERN = /^[0-9]{1,15}$/;

function secretBytes(secret: string | Uint8Array): Uint8Array<ArrayBuffer> {
  const bytes = typeof secret === 'string' ? encoder.encode(secret) : new Uint8Array(secret);
  if (bytes.byteLength < MIN_SECRET_BYTES) {
    throw new RangeError(
      `blob URL secret is ${bytes.byteLength} bytes; at least ${MIN_SECRET_BYTES} are required`,
    );
  }
  return bytes;
}

async function mac(secret: string | Uint8Array, method: string, key: string, expires: number): Promise<Uint8Array> {
  const hmacKey = await crypto.subtle.importKey('raw', secretBytes(secret), { name: 'HMAC', hash: 'SHA-256' }, false, [
    'sign',
  ]);
  // the key goes last: it is the only free-form field, and keys never contain '\n'
  const message = encoder.encode(`amdm-blob-v1\n${method}\n${expires}\n${key}`);
  return new Uint8Array(await crypto.subtle.sign('HMAC', hmacKey, message));
}

function toBase64Url(bytes: Uint8Array): string {
  let binary = '';
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function fromBase64Url(text: string): Uint8Array {
  const binary = atob(text.replace(/-/g, '+').replace(/_/g, '/'));
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

/** Compares every byte whatever the first difference, so timing does not reveal a MAC prefix. */
function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!;
  return diff === 0;
}

/** `/v1/blobs/` followed by the key with each segment percent-encoded. */
export function blobPath(key: string): string {
  return BLOB_ROUTE_PREFIX + key.split('/').map(encodeURIComponent).join('/');
}

/**
 * The key named by a request path, or null when the path is not a blob path or carries a
 * broken percent-escape. The key is only trustworthy after verifyBlobSignature accepts it.
 */
export function keyFromBlobPath(pathname: string): string | null {
  if (!pathname.startsWith(BLOB_ROUTE_PREFIX)) return null;
  const rest = pathname.slice(BLOB_ROUTE_PREFIX.length);
  if (rest === '') return null;
  try {
    return rest.split('/').map(decodeURIComponent).join('/');
  } catch {
    return null;
  }
}

export async function signBlob(
  secret: string | Uint8Array,
  method: BlobUrlMethod,
  key: string,
  expires: number,
): Promise<string> {
  if (method !== 'GET' && method !== 'PUT') {
    throw new RangeError(`blob URL method must be "GET" or "PUT"; got ${JSON.stringify(method)}`);
  }
  if (!Number.isSafeInteger(expires) || expires < 0) {
    throw new RangeError(`blob URL expires must be a unix time in whole seconds; got ${String(expires)}`);
  }
  return toBase64Url(await mac(secret, method, key, expires));
}

export async function signBlobUrl(opts: {
  secret: string | Uint8Array;
  /** origin (and optional path) that serves /v1/blobs/*, without a trailing slash */
  baseUrl: string;
  method: BlobUrlMethod;
  key: string;
  /** unix time in seconds after which the URL is refused */
  expires: number;
}): Promise<string> {
  const sig = await signBlob(opts.secret, opts.method, opts.key, opts.expires);
  const base = opts.baseUrl.replace(/\/+$/, '');
  return `${base}${blobPath(opts.key)}?method=${opts.method}&expires=${opts.expires}&sig=${sig}`;
}

/**
 * Checks a blob request. `method` is the HTTP method of the request being served (not the
 * `method` query parameter, which is informational), `key` comes from keyFromBlobPath, and
 * `expires` and `sig` are the query parameters as received.
 */
export async function verifyBlobSignature(
  secret: string | Uint8Array,
  method: string,
  key: string,
  expires: string | number,
  sig: string,
  nowSeconds: number,
): Promise<BlobSignatureVerdict> {
  const expiresText = String(expires);
  if (!EXPIRES_PATTERN.test(expiresText) || typeof sig !== 'string' || !SIG_PATTERN.test(sig)) {
    return { valid: false, reason: 'malformed' };
  }
  const given = fromBase64Url(sig);
  // 43 characters carry 258 bits for 256: refuse non-canonical spellings of the same MAC
  if (toBase64Url(given) !== sig) return { valid: false, reason: 'malformed' };
  const expiresAt = Number(expiresText);
  const expected = await mac(secret, method, key, expiresAt);
  if (!constantTimeEqual(expected, given)) return { valid: false, reason: 'bad-signature' };
  if (nowSeconds > expiresAt) return { valid: false, reason: 'expired' };
  return { valid: true };
}
