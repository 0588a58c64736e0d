/**
 * What the edge needs from its composition root, and the checks that make a wrong root fail
 * at construction (naming the option) instead of on the first request.
 */
import type { Context } from 'hono';
import type { ModelInfo } from '../shared/contract/index.ts';
import type { JobAdmission } from '../shared/ports/admission.ts';
import type { JobQueue } from '../shared/ports/queue.ts';
import type { ObjectStore } from '../shared/ports/store.ts';
import { checkPepper } from '../shared/api-keys.ts';
import { MIN_SECRET_BYTES } from '../shared/signed-url.ts';
import { cryptoRandomBytes, type RandomBytes } from '../shared/ids.ts';
import type { QueueInfoValue, StoredRequest } from '../shared/job-repository.ts';
import { jsonLogger, type Logger } from '../shared/logger.ts';
import { StorageHealth } from '../shared/storage-health.ts';
import { TokenBucketLimiter, type RateLimiter } from './middleware/rate-limit/index.ts';

export interface Clock {
  /** milliseconds since the epoch */
  now(): number;
}

/** Signs URLs that grant one method on one stored blob (outputs, uploads). */
export interface BlobSigner {
  signGet(key: string, ttlSeconds: number): Promise<string>;
  signPut(key: string, ttlSeconds: number, contentType: string): Promise<string>;
  /** headers the upload must send besides Content-Type, because the URL signs them (ObjectStore.signedPutHeaders) */
  putHeaders?(key: string): Readonly<Record<string, string>>;
}

/**
 * The HMAC secret of the embedded stores' signed URLs (shared/signed-url.ts), for serving
 * `/v1/blobs/*`. Only the single-node filesystem store needs it: S3 serves its presigned
 * URLs itself.
 */
export interface LocalBlobs {
  secret: string | Uint8Array;
}

export interface EdgeLimits {
  /** POST /v1/jobs body (inline reference images make it large) */
  maxJobBodyBytes: number;
  /** other JSON bodies */
  maxSmallBodyBytes: number;
  /** a reference image, uploaded or inline (decoded) */
  maxUploadBytes: number;
  /** lifetime of output URLs in records */
  outputUrlTtlSeconds: number;
  /** lifetime of upload URLs from POST /v1/uploads */
  uploadUrlTtlSeconds: number;
  /** queued + running jobs per tenant */
  maxActiveJobs: number;
  /** jobs per page in GET /v1/jobs */
  maxPageSize: number;
  /**
   * longest Prefer: wait, counted from the request's arrival; a longer one is applied as this.
   * Behind CloudFront it must end well before the origin read timeout (edge/lambda.ts).
   */
  maxWaitSeconds: number;
  /** longest range of GET /v1/usage, in days */
  maxUsageDays: number;
  /** how long a verified API key is trusted without reading the store (the revocation delay without `keyRevision`) */
  keyCacheSeconds: number;
  /**
   * Idempotency claims: the wait between writing a claim and reading the claims, which must
   * exceed the clock skew plus store write latency between edge instances (0: one instance)
   */
  idempotencySettleMs: number;
}

export const DEFAULT_LIMITS: EdgeLimits = {
  // four models with a ~1.4 MB inline image each, plus the rest of the request
  maxJobBodyBytes: 6 * 1024 * 1024,
  maxSmallBodyBytes: 64 * 1024,
  maxUploadBytes: 10 * 1024 * 1024,
  outputUrlTtlSeconds: 900,
  uploadUrlTtlSeconds: 900,
  maxActiveJobs: 50,
  maxPageSize: 100,
  maxWaitSeconds: 60,
  maxUsageDays: 366,
  keyCacheSeconds: 10,
  idempotencySettleMs: 100,
};

export interface AppDeps {
  store: ObjectStore;
  /** the jobs queue */
  queue: JobQueue;
  /**
   * Counts a tenant's active jobs against `limits.maxActiveJobs`, atomically with the create
   * when it shares the store's commit log (the single node's SQLite), or with a conditional
   * write shared by every instance (DynamoDB on AWS); default: this edge's own count in memory
   * (edge/active-jobs.ts), exact within one process only.
   */
  admission?: JobAdmission;
  /** the installed models (the engine's catalog) */
  catalog: () => Promise<ModelInfo[]>;
  /** API key hashing pepper (kept outside the store) */
  pepper: string;
  /** public origin of this API, without a trailing slash, e.g. http://127.0.0.1:8787 */
  publicBaseUrl: string;
  /** default: the store's own signed URLs */
  signer?: BlobSigner;
  /** set to serve `/v1/blobs/*` (filesystem store); absent: the route answers 404 */
  localBlobs?: LocalBlobs;
  clock?: Clock;
  random?: RandomBytes;
  /**
   * per-tenant request rate; default 20 requests/s with bursts of 100, counted in this
   * instance's memory (the AWS root brings one that all instances share)
   */
  rateLimiter?: RateLimiter;
  /**
   * A cheap read that changes whenever an API key is revoked (shared/api-keys.ts keyRevision):
   * set, a revocation takes effect on the next request; absent, within `limits.keyCacheSeconds`.
   */
  keyRevision?: () => Promise<string | null>;
  /**
   * The address a request came from, proxies resolved (edge/client-address.ts), or undefined
   * when unknown. Set: requests that fail authentication and requests to signed blob URLs
   * are limited per address by `addressLimiter`. Absent: they are not.
   */
  clientAddress?: (c: Context) => string | undefined;
  /** per-address rate of the requests above; default 20 requests/s with bursts of 100, each kind its own bucket */
  addressLimiter?: RateLimiter;
  limits?: Partial<EdgeLimits>;
  /** local development only: accept webhooks to loopback and private addresses */
  allowPrivateWebhooks?: boolean;
  /**
   * Where a queued job stands; default: derived from the queue's counts. `messageId` is the
   * job's queue message when this edge enqueued it (cheap to look up), else undefined.
   */
  queueInfo?: (req: StoredRequest, messageId: string | undefined) => Promise<QueueInfoValue>;
  logger?: Logger;
  /**
   * Counts a prompt's tokens with the model's tokenizer (POST /v1/models/{id}/tokens); null
   * for an unknown model. Absent where the edge has no tokenizer (the Lambda bundle): the
   * route then answers 501.
   */
  countTokens?: (modelId: string, text: string) => Promise<{ tokens: number; maxTokens: number } | null>;
  /**
   * Single node on loopback only: the local API key, which the playground offers to fill in
   * (GET /playground/local-key). Never set it on a deployment that faces a network.
   */
  localApiKey?: () => Promise<string | null>;
  /**
   * Whether the storage is full, reported on /healthz; the edge tells it of each write
   * refused for lack of room. Share the runner's and the adapters' in one process (npm start);
   * default: one of the edge's own.
   */
  storageHealth?: StorageHealth;
}

export interface ResolvedDeps extends Required<Omit<AppDeps, 'localBlobs' | 'queueInfo' | 'limits' | 'localApiKey' | 'admission' | 'clientAddress' | 'keyRevision' | 'countTokens'>> {
  localBlobs: LocalBlobs | null;
  keyRevision: (() => Promise<string | null>) | null;
  clientAddress: ((c: Context) => string | undefined) | null;
  countTokens: AppDeps['countTokens'] | null;
  localApiKey: (() => Promise<string | null>) | null;
  queueInfo: ((req: StoredRequest, messageId: string | undefined) => Promise<QueueInfoValue>) | null;
  limits: EdgeLimits;
}

const need = (cond: boolean, option: string, what: string, got: unknown): void => {
  if (!cond) throw new TypeError(`createApp: option "${option}" must be ${what} (got ${describe(got)})`);
};

function describe(v: unknown): string {
  if (v === null || v === undefined) return String(v);
  if (typeof v === 'function') return 'a function';
  if (typeof v === 'object') return 'an object';
  return JSON.stringify(v);
}

const hasMethods = (o: unknown, names: string[]): boolean =>
  typeof o === 'object' && o !== null && names.every((n) => typeof (o as Record<string, unknown>)[n] === 'function');

export function resolveDeps(deps: AppDeps): ResolvedDeps {
  need(typeof deps === 'object' && deps !== null, 'deps', 'an object', deps);
  need(hasMethods(deps.store, ['put', 'get', 'delete', 'list', 'signedGetUrl', 'signedPutUrl']), 'store', 'an ObjectStore', deps.store);
  need(hasMethods(deps.queue, ['send', 'receive', 'ack', 'release', 'stats']), 'queue', 'a JobQueue', deps.queue);
  if (deps.admission !== undefined) need(hasMethods(deps.admission, ['admit', 'withdraw', 'release', 'hasRoom']), 'admission', 'a JobAdmission { admit, withdraw, release, hasRoom }', deps.admission);
  need(typeof deps.catalog === 'function', 'catalog', 'a function returning Promise<ModelInfo[]>', deps.catalog);
  try {
    checkPepper(deps.pepper);
  } catch (e) {
    throw new TypeError(`createApp: option "pepper": ${(e as Error).message}`);
  }
  let base: URL | null = null;
  try {
    base = new URL(deps.publicBaseUrl);
  } catch {
    /* reported below */
  }
  need(
    base !== null && (base.protocol === 'http:' || base.protocol === 'https:') && !deps.publicBaseUrl.endsWith('/') && base.search === '' && base.hash === '',
    'publicBaseUrl',
    'an absolute http(s) origin (optionally with a path) without a trailing slash, query or fragment',
    deps.publicBaseUrl,
  );
  if (deps.signer !== undefined) need(hasMethods(deps.signer, ['signGet', 'signPut']), 'signer', 'a BlobSigner { signGet, signPut }', deps.signer);
  if (deps.localBlobs !== undefined) {
    const secret = deps.localBlobs?.secret;
    const bytes = typeof secret === 'string' ? new TextEncoder().encode(secret).byteLength : secret instanceof Uint8Array ? secret.byteLength : -1;
    need(bytes >= MIN_SECRET_BYTES, 'localBlobs.secret', `a string or Uint8Array of at least ${MIN_SECRET_BYTES} bytes (the stores' signing secret)`, bytes < 0 ? secret : `${bytes} bytes`);
  }
  if (deps.clock !== undefined) need(hasMethods(deps.clock, ['now']), 'clock', 'a Clock { now(): number }', deps.clock);
  if (deps.random !== undefined) need(typeof deps.random === 'function', 'random', 'a function (n) => Uint8Array', deps.random);
  if (deps.rateLimiter !== undefined) need(hasMethods(deps.rateLimiter, ['take']), 'rateLimiter', 'a RateLimiter { take }', deps.rateLimiter);
  if (deps.addressLimiter !== undefined) need(hasMethods(deps.addressLimiter, ['take']), 'addressLimiter', 'a RateLimiter { take }', deps.addressLimiter);
  if (deps.keyRevision !== undefined) need(typeof deps.keyRevision === 'function', 'keyRevision', 'a function () => Promise<string | null>', deps.keyRevision);
  if (deps.clientAddress !== undefined) need(typeof deps.clientAddress === 'function', 'clientAddress', 'a function (c) => string | undefined', deps.clientAddress);
  if (deps.queueInfo !== undefined) need(typeof deps.queueInfo === 'function', 'queueInfo', 'a function', deps.queueInfo);
  if (deps.logger !== undefined) need(hasMethods(deps.logger, ['error', 'warn', 'info']), 'logger', 'a Logger { error, warn, info }', deps.logger);
  if (deps.countTokens !== undefined) need(typeof deps.countTokens === 'function', 'countTokens', 'a function (modelId, text) => Promise<{ tokens, maxTokens } | null>', deps.countTokens);
  if (deps.localApiKey !== undefined) need(typeof deps.localApiKey === 'function', 'localApiKey', 'a function () => Promise<string | null>', deps.localApiKey);
  if (deps.storageHealth !== undefined) need(deps.storageHealth instanceof StorageHealth, 'storageHealth', 'a StorageHealth', deps.storageHealth);
  if (deps.allowPrivateWebhooks !== undefined) need(typeof deps.allowPrivateWebhooks === 'boolean', 'allowPrivateWebhooks', 'a boolean', deps.allowPrivateWebhooks);

  const limits: EdgeLimits = { ...DEFAULT_LIMITS };
  for (const [k, v] of Object.entries(deps.limits ?? {})) {
    need(k in DEFAULT_LIMITS, `limits.${k}`, `one of ${Object.keys(DEFAULT_LIMITS).join(', ')}`, k);
    const zeroOk = k === 'keyCacheSeconds' || k === 'idempotencySettleMs';
    need(Number.isSafeInteger(v) && (v as number) >= (zeroOk ? 0 : 1), `limits.${k}`, zeroOk ? 'an integer >= 0' : 'a positive integer', v);
    (limits as unknown as Record<string, number>)[k] = v as number;
  }
  need(limits.maxWaitSeconds <= 600, 'limits.maxWaitSeconds', 'at most 600', limits.maxWaitSeconds);

  const store = deps.store;
  const logger = deps.logger ?? jsonLogger('edge');
  return {
    store,
    queue: deps.queue,
    catalog: deps.catalog,
    pepper: deps.pepper,
    publicBaseUrl: deps.publicBaseUrl,
    signer: deps.signer ?? {
      signGet: (key, ttl) => store.signedGetUrl(key, ttl),
      signPut: (key, ttl, ct) => store.signedPutUrl(key, ttl, ct),
      putHeaders: (key) => store.signedPutHeaders?.(key) ?? {},
    },
    localBlobs: deps.localBlobs ?? null,
    clock: deps.clock ?? { now: () => Date.now() },
    random: deps.random ?? cryptoRandomBytes,
    rateLimiter: deps.rateLimiter ?? new TokenBucketLimiter({ ratePerSecond: 20, burst: 100 }),
    keyRevision: deps.keyRevision ?? null,
    clientAddress: deps.clientAddress ?? null,
    addressLimiter: deps.addressLimiter ?? new TokenBucketLimiter({ ratePerSecond: 20, burst: 100 }),
    limits,
    allowPrivateWebhooks: deps.allowPrivateWebhooks ?? false,
    queueInfo: deps.queueInfo ?? null,
    logger,
    localApiKey: deps.localApiKey ?? null,
    storageHealth: deps.storageHealth ?? new StorageHealth({ logger }),
    countTokens: deps.countTokens ?? null,
  };
}
