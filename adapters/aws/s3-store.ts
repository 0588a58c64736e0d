/**
 * The ObjectStore port on Amazon S3 or any S3-compatible endpoint (the caller's S3Client sets
 * endpoint and forcePathStyle; this adapter never reads the environment).
 *
 * An optional key prefix lets several deployments share a bucket. The list cursor is the last
 * key returned, passed back as StartAfter: the same cursor the embedded stores use, and
 * stateless, so a cursor outlives the S3 continuation token it replaces.
 *
 * Optional object tags are chosen per key at write time and sent with the PutObject itself
 * (x-amz-tagging), so an object never exists untagged: a separate PutObjectTagging after the
 * write could fail and leave an output that the lifecycle rule never expires.
 */
import {
  DeleteObjectCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import type { ListResult, ObjectStore, StoredObject } from '../../shared/ports/store.ts';
import {
  checkBodyType,
  checkContentType,
  checkKey,
  checkListOptions,
  checkSignedUrlTtl,
  DEFAULT_CONTENT_TYPE,
  MAX_KEY_BYTES,
  showKey,
  utf8ByteLength,
} from '../store-rules.ts';

export interface S3StoreOptions {
  client: S3Client;
  bucket: string;
  /** prepended to every key, e.g. "prod/"; empty or ending in '/' */
  prefix?: string;
  /**
   * Tags to store with an object, chosen by its key (without the prefix); null for none.
   * Writing tags needs s3:PutObjectTagging besides s3:PutObject.
   */
  tags?: (key: string) => Readonly<Record<string, string>> | null;
}

/** Kept back from the signing credentials' expiry: clocks differ, and a download takes time to start. */
const PRESIGN_EXPIRY_MARGIN_SECONDS = 60;
/** See presignableSeconds: the edge's own output URL lifetime (edge/deps.ts outputUrlTtlSeconds). */
export const PRESIGN_UNKNOWN_TEMPORARY_SECONDS = 900;

/** S3's limits: at most 10 tags; keys 1-128 and values 0-256 characters of a restricted set. */
const TAG_CHARS = /^[\p{L}\p{Z}\p{N}_.:/=+\-@]*$/u;

/** The x-amz-tagging header value: the tag set as URL query parameters, as S3 requires. */
export function encodeTagging(tags: Readonly<Record<string, string>>, key: string): string | undefined {
  const entries = Object.entries(tags);
  if (entries.length === 0) return undefined;
  if (entries.length > 10) throw new RangeError(`S3Store: ${entries.length} tags for ${showKey(key)}; S3 allows at most 10`);
  for (const [k, v] of entries) {
    if (k.length < 1 || k.length > 128 || v.length > 256 || !TAG_CHARS.test(k) || !TAG_CHARS.test(v)) {
      throw new RangeError(
        `S3Store: tag ${JSON.stringify(k)}=${JSON.stringify(v)} for ${showKey(key)} is not a valid S3 tag ` +
          '(key 1-128, value 0-256 characters of letters, digits, spaces and _ . : / = + - @)',
      );
    }
  }
  return entries.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('&');
}

function isNoSuchKey(err: unknown): boolean {
  const e = err as { name?: unknown; $metadata?: { httpStatusCode?: number } } | null;
  if (e?.name === 'NoSuchKey') return true;
  // some S3-compatible servers answer a missing key with a bare 404; a missing bucket is a
  // misconfiguration and must not read as "no object"
  return e?.$metadata?.httpStatusCode === 404 && e.name !== 'NoSuchBucket';
}

/** S3 refused a read with 403 AccessDenied. */
function isAccessDenied(err: unknown): boolean {
  const e = err as { name?: unknown; $metadata?: { httpStatusCode?: number } } | null;
  return e?.name === 'AccessDenied' || e?.$metadata?.httpStatusCode === 403;
}

/**
 * A read that S3 refused. Never "absent": S3 answers a missing key with 403 instead of 404
 * when the caller lacks s3:ListBucket on the bucket, so a denied read may be a missing key or
 * a real lack of access, and guessing either way would be wrong. The message says how to
 * tell them apart.
 */
export class StoreAccessDeniedError extends Error {
  override name = 'StoreAccessDeniedError';
  constructor(
    readonly bucket: string,
    readonly key: string,
    readonly action: string,
    options?: { cause?: unknown },
  ) {
    super(
      `S3 denied ${action} on s3://${bucket}/${key} (403 AccessDenied). ` +
        `If the key may be absent, S3 answers 403 instead of 404 unless the caller holds s3:ListBucket on arn:aws:s3:::${bucket} ` +
        `with no s3:prefix condition (infra/iam.ts listBucketForMissingKeys); otherwise the role lacks ${action} on the key. ` +
        'Treated as an error, not as a missing key.',
      options,
    );
  }
}

export class S3Store implements ObjectStore {
  private readonly client: S3Client;
  private readonly bucket: string;
  private readonly prefix: string;
  private readonly tags: ((key: string) => Readonly<Record<string, string>> | null) | null;
  private closed = false;

  constructor(opts: S3StoreOptions) {
    if (typeof opts !== 'object' || opts === null || typeof opts.client?.send !== 'function') {
      throw new TypeError('S3Store: options must include client, an S3Client');
    }
    if (typeof opts.bucket !== 'string' || !/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(opts.bucket)) {
      throw new RangeError(
        `S3Store: bucket ${JSON.stringify(opts.bucket)} is not a valid bucket name (3-63 of a-z 0-9 . -)`,
      );
    }
    const prefix = opts.prefix ?? '';
    if (prefix !== '') {
      if (!prefix.endsWith('/')) {
        throw new RangeError(`S3Store: prefix must be empty or end with '/'; got ${JSON.stringify(prefix)}`);
      }
      checkKey(prefix.slice(0, -1));
    }
    if (opts.tags !== undefined && typeof opts.tags !== 'function') {
      throw new TypeError('S3Store: tags must be a function (key) => tags or null');
    }
    this.client = opts.client;
    this.bucket = opts.bucket;
    this.prefix = prefix;
    this.tags = opts.tags ?? null;
  }

  async put(key: string, body: Uint8Array | string, contentType?: string): Promise<void> {
    this.checkOpen();
    const objectKey = this.objectKey(key);
    const bytes = checkBodyType(body);
    const type = checkContentType(contentType);
    const tagging = this.tagging(key);
    await this.client.send(
      new PutObjectCommand({
        Bucket: this.bucket,
        Key: objectKey,
        Body: bytes,
        ContentType: type,
        ...(tagging !== undefined ? { Tagging: tagging } : {}),
      }),
    );
  }

  async get(key: string): Promise<StoredObject | null> {
    this.checkOpen();
    const objectKey = this.objectKey(key);
    try {
      const out = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: objectKey }));
      if (!out.Body) throw new Error(`S3 GetObject s3://${this.bucket}/${objectKey} returned no body`);
      return { body: await out.Body.transformToByteArray(), contentType: out.ContentType ?? DEFAULT_CONTENT_TYPE };
    } catch (err) {
      if (isNoSuchKey(err)) return null;
      if (isAccessDenied(err)) throw new StoreAccessDeniedError(this.bucket, objectKey, 's3:GetObject', { cause: err });
      throw err;
    }
  }

  async delete(key: string): Promise<void> {
    this.checkOpen();
    await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key) }));
  }

  async list(prefix: string, opts?: { cursor?: string | null; limit?: number }): Promise<ListResult> {
    this.checkOpen();
    const { cursor, limit } = checkListOptions(prefix, opts);
    const out = await this.client.send(
      new ListObjectsV2Command({
        Bucket: this.bucket,
        Prefix: this.prefix + prefix,
        MaxKeys: limit,
        ...(cursor === null ? {} : { StartAfter: this.startAfter(cursor) }),
      }),
    );
    const keys = (out.Contents ?? []).map((o) => {
      if (!o.Key?.startsWith(this.prefix)) {
        throw new Error(`S3 ListObjectsV2 on s3://${this.bucket} returned ${JSON.stringify(o.Key)} outside ${this.prefix}`);
      }
      return o.Key.slice(this.prefix.length);
    });
    return { keys, cursor: out.IsTruncated && keys.length > 0 ? keys[keys.length - 1]! : null };
  }

  async signedGetUrl(key: string, ttlSeconds: number): Promise<string> {
    this.checkOpen();
    const command = new GetObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key) });
    return getSignedUrl(this.client, command, { expiresIn: checkSignedUrlTtl(ttlSeconds) });
  }

  /**
   * The longest lifetime, up to `wantedSeconds`, that a URL presigned now keeps: a presigned
   * URL stops working when the credentials that signed it expire, whatever its X-Amz-Expires
   * (AWS Knowledge Center, "presigned URL ... expiring before the expiration time"). Callers
   * mint with this and state it (expires_at), so a URL never claims more than it holds.
   *
   * - credentials with an expiration (the ECS task role, STS): until then, less a minute;
   * - temporary credentials with no stated expiration (a Lambda role's, from environment
   *   variables; AWS says such services "don't necessarily comply with the role's session
   *   duration"): at most `unknownTemporarySeconds`, the lifetime the edge already gives the
   *   URLs of every job read made with the same credentials; a reader that needs longer
   *   reads the job again and gets fresh ones;
   * - long-term keys: `wantedSeconds`.
   */
  async presignableSeconds(wantedSeconds: number, unknownTemporarySeconds = PRESIGN_UNKNOWN_TEMPORARY_SECONDS): Promise<number> {
    checkSignedUrlTtl(wantedSeconds);
    const credentials = await this.client.config.credentials();
    if (credentials.expiration) {
      const left = Math.floor((credentials.expiration.getTime() - Date.now()) / 1000) - PRESIGN_EXPIRY_MARGIN_SECONDS;
      return Math.max(1, Math.min(wantedSeconds, left));
    }
    if (credentials.sessionToken) return Math.min(wantedSeconds, unknownTemporarySeconds);
    return wantedSeconds;
  }

  /**
   * The URL signs the Content-Type header, so the upload must send exactly `contentType`, and,
   * when the key's tag rule gives it tags, the x-amz-tagging header (signedPutHeaders).
   *
   * Tags travel as a signed header, never as a query parameter: whether S3 applies an
   * x-amz-tagging query parameter of a presigned PUT is disputed in public reports
   * (aws/aws-sdk#782 says it is ignored), while a signed header is applied and cannot be left
   * out, since S3 refuses a request without a header its signature covers. So an upload
   * either carries its expiry tag or is not stored.
   */
  async signedPutUrl(key: string, ttlSeconds: number, contentType: string): Promise<string> {
    this.checkOpen();
    const tagging = this.tagging(key);
    const command = new PutObjectCommand({
      Bucket: this.bucket,
      Key: this.objectKey(key),
      ContentType: checkContentType(contentType),
      ...(tagging !== undefined ? { Tagging: tagging } : {}),
    });
    // Since SDK 3.729 the default checksum middleware signs a CRC32 of the (empty) body into
    // the URL, and S3 then rejects every real upload with a checksum mismatch. The uploader's
    // body is unknown here, so the checksum headers are dropped before presigning.
    command.middlewareStack.add(
      (next) => async (args) => {
        const headers = (args.request as { headers?: Record<string, string> }).headers;
        if (headers) {
          for (const name of Object.keys(headers)) {
            if (/^x-amz-(checksum-|sdk-checksum-)/i.test(name)) delete headers[name];
          }
        }
        return next(args);
      },
      { step: 'build', priority: 'low', name: 'amdmDropPresignedPutChecksum' },
    );
    return getSignedUrl(this.client, command, {
      expiresIn: checkSignedUrlTtl(ttlSeconds),
      signableHeaders: new Set(['content-type', ...(tagging !== undefined ? ['x-amz-tagging'] : [])]),
      // the presigner moves x-amz-* headers into the query unless told otherwise
      unhoistableHeaders: new Set(tagging !== undefined ? ['x-amz-tagging'] : []),
    });
  }

  /** The header a PUT to signedPutUrl(key) must send: the key's tags, as that URL signed them. */
  signedPutHeaders(key: string): Readonly<Record<string, string>> {
    const tagging = this.tagging(key);
    return tagging !== undefined ? { 'x-amz-tagging': tagging } : {};
  }

  private tagging(key: string): string | undefined {
    const tags = this.tags?.(key);
    return tags ? encodeTagging(tags, key) : undefined;
  }

  /** The S3Client belongs to the caller, who destroys it. */
  async close(): Promise<void> {
    this.closed = true;
  }

  private objectKey(key: string): string {
    checkKey(key);
    const full = this.prefix + key;
    const bytes = utf8ByteLength(full);
    if (bytes > MAX_KEY_BYTES) {
      throw new RangeError(
        `invalid object key ${showKey(key)}: with the store prefix ${JSON.stringify(this.prefix)} it is ${bytes} bytes; S3 allows ${MAX_KEY_BYTES}`,
      );
    }
    return full;
  }

  /** StartAfter is a key to S3: an overlong one is refused here, as objectKey refuses keys. */
  private startAfter(cursor: string): string {
    const full = this.prefix + cursor;
    const bytes = utf8ByteLength(full);
    if (bytes > MAX_KEY_BYTES) {
      throw new RangeError(
        `list: cursor ${showKey(cursor)} is ${bytes} bytes with the store prefix ${JSON.stringify(this.prefix)}; S3 allows ${MAX_KEY_BYTES}`,
      );
    }
    return full;
  }

  private checkOpen(): void {
    if (this.closed) throw new Error(`S3Store for bucket ${this.bucket} is closed`);
  }
}
