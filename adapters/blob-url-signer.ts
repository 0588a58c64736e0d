/**
 * Signed-URL minting shared by the filesystem and memory stores. Options are checked once, at
 * construction, so a missing secret or a bad base URL fails when the app starts rather than on
 * the first job read.
 */
import { MIN_SECRET_BYTES, signBlobUrl, type BlobUrlMethod } from '../shared/signed-url.ts';
import { checkKey, checkSignedUrlTtl } from './store-rules.ts';

export interface BlobSigningOptions {
  /** HMAC key shared with whoever serves /v1/blobs/* (the edge); at least 32 bytes */
  secret: string | Uint8Array;
  /** origin that serves /v1/blobs/*, e.g. "http://127.0.0.1:8787" */
  baseUrl: string;
}

export class BlobUrlSigner {
  private readonly secret: string | Uint8Array;
  private readonly baseUrl: string;

  constructor(where: string, opts: BlobSigningOptions) {
    if (typeof opts !== 'object' || opts === null) {
      throw new TypeError(`${where}: signing must be { secret, baseUrl }; got ${String(opts)}`);
    }
    const secretLength =
      typeof opts.secret === 'string'
        ? new TextEncoder().encode(opts.secret).byteLength
        : opts.secret instanceof Uint8Array
          ? opts.secret.byteLength
          : -1;
    if (secretLength < MIN_SECRET_BYTES) {
      throw new RangeError(
        `${where}: signing.secret must be a string or Uint8Array of at least ${MIN_SECRET_BYTES} bytes; got ${
          secretLength < 0 ? typeof opts.secret : `${secretLength} bytes`
        }`,
      );
    }
    let url: URL;
    try {
      url = new URL(opts.baseUrl);
    } catch {
      throw new RangeError(`${where}: signing.baseUrl must be an absolute http(s) URL; got ${JSON.stringify(opts.baseUrl)}`);
    }
    if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.search !== '' || url.hash !== '') {
      throw new RangeError(
        `${where}: signing.baseUrl must be an http(s) URL without query or fragment; got ${JSON.stringify(opts.baseUrl)}`,
      );
    }
    this.secret = typeof opts.secret === 'string' ? opts.secret : new Uint8Array(opts.secret);
    this.baseUrl = opts.baseUrl.replace(/\/+$/, '');
  }

  sign(method: BlobUrlMethod, key: string, ttlSeconds: number, nowMs: number): Promise<string> {
    checkKey(key);
    checkSignedUrlTtl(ttlSeconds);
    const expires = Math.floor(nowMs / 1000) + ttlSeconds;
    return signBlobUrl({ secret: this.secret, baseUrl: this.baseUrl, method, key, expires });
  }
}
