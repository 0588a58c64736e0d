/**
 * Delivers job webhooks from the durable 'webhooks' outbox queue, signed with Standard
 * Webhooks (webhook-id, webhook-timestamp, webhook-signature; HMAC-SHA256 over
 * "id.timestamp.body"), retried on a schedule over hours.
 *
 * - Every attempt is recorded under the job's webhook/{attempt}.json (before the message is
 *   acked or released), so deliveries show on the job and a crash never loses the count.
 * - The payload is assembled at each attempt: output URLs are fresh, and the webhook-id is
 *   the same every time so receivers can drop duplicates (delivery is at-least-once).
 * - Retries use release(lease, delay). Queues cap a release at 12 h (SQS); longer delays
 *   are chained: a message that surfaces before its attempt is due goes back to sleep.
 * - SSRF: the destination is checked after DNS resolution, inside the socket's lookup, so
 *   the address that is checked is the address that is connected to. Redirects are not
 *   followed.
 */
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import http from 'node:http';
import https from 'node:https';
import { Webhook } from 'standardwebhooks';
import { type JobRecord, type WebhookPayload } from '../shared/contract/index.ts';
import { JobRepository, type UrlSigner, type WebhookAttempt } from '../shared/job-repository.ts';
import { LeaseLostError, type JobQueue, type Lease } from '../shared/ports/queue.ts';
import type { ObjectStore } from '../shared/ports/store.ts';
import { addressProblem, webhookUrlProblem } from '../shared/webhook-url-policy.ts';
import { type Logger, errorFields, jsonLogger } from '../shared/logger.ts';
import { WebhookMessage } from './message.ts';
import type { WebhookMessage as WebhookMessageType } from './message.ts';

/** Seconds to wait after attempt n fails (n = 1..): 30 s, 2 min, 10 min, 1 h, 3 h, 6 h, 12 h; then give up. */
export const DEFAULT_RETRY_SCHEDULE: readonly number[] = [30, 120, 600, 3600, 10_800, 21_600, 43_200];
/** The longest single release a queue takes (SQS ChangeMessageVisibility). */
export const MAX_RELEASE_SECONDS = 43_200;

export type Lookup = (hostname: string) => Promise<LookupAddress[]>;

export interface WebhookDispatcherOptions {
  queue: JobQueue;
  store: ObjectStore;
  /** Standard Webhooks secret, "whsec_" + base64 of at least 24 random bytes */
  secret: string;
  /** mints output URLs for the payload */
  signUrl: UrlSigner;
  publicBaseUrl: string;
  /** seconds between attempts; attempts = schedule.length + 1 */
  retrySchedule?: readonly number[];
  maxReleaseSeconds?: number;
  /** local development only: deliver to loopback and private addresses */
  allowPrivate?: boolean;
  timeoutMs?: number;
  concurrency?: number;
  visibilitySeconds?: number;
  receiveWaitSeconds?: number;
  /**
   * lifetime of the payload's output URLs; a function is asked at each delivery (on AWS: no
   * longer than the signing credentials live, S3Store.presignableSeconds)
   */
  outputUrlTtlSeconds?: number | (() => Promise<number>);
  userAgent?: string;
  /** DNS, injectable for tests */
  lookup?: Lookup;
  clock?: () => number;
  logger?: Logger;
}

export interface DeliveryResult {
  status: number | null;
  ok: boolean;
  error?: string;
}

const defaultLookup: Lookup = (hostname) =>
  new Promise((resolve, reject) => dnsLookup(hostname, { all: true, verbatim: true }, (err, addrs) => (err ? reject(err) : resolve(addrs))));

export class WebhookDispatcher {
  private readonly o: Required<WebhookDispatcherOptions>;
  private readonly repo: JobRepository;
  private readonly signer: Webhook;
  private readonly stop = new AbortController();
  private readonly inFlight = new Set<Promise<void>>();
  private readonly perJob = new Map<string, Promise<void>>();
  private loop: Promise<void> | null = null;
  private closing: Promise<void> | null = null;
  /** attempts made by this dispatcher, for tests and logs */
  attempts = 0;

  constructor(options: WebhookDispatcherOptions) {
    const o = {
      retrySchedule: DEFAULT_RETRY_SCHEDULE,
      maxReleaseSeconds: MAX_RELEASE_SECONDS,
      allowPrivate: false,
      timeoutMs: 10_000,
      concurrency: 4,
      visibilitySeconds: 60,
      receiveWaitSeconds: 10,
      outputUrlTtlSeconds: 3600,
      userAgent: 'amdm-webhooks/1',
      lookup: defaultLookup,
      clock: Date.now,
      logger: jsonLogger('webhooks'),
      ...options,
    };
    const need = (ok: boolean, name: string, what: string) => {
      if (!ok) throw new TypeError(`WebhookDispatcher: option "${name}" must be ${what}`);
    };
    need(typeof o.queue?.receive === 'function', 'queue', 'a JobQueue');
    need(typeof o.store?.get === 'function', 'store', 'an ObjectStore');
    need(typeof o.signUrl === 'function', 'signUrl', 'a function (key, ttlSeconds) => Promise<string>');
    need(typeof o.secret === 'string' && /^whsec_[A-Za-z0-9+/=]{32,}$/.test(o.secret), 'secret', 'a Standard Webhooks secret: "whsec_" + base64 of at least 24 bytes');
    need(Array.isArray(o.retrySchedule) && o.retrySchedule.every((s) => Number.isFinite(s) && s >= 0), 'retrySchedule', 'an array of seconds >= 0');
    need(Number.isInteger(o.maxReleaseSeconds) && o.maxReleaseSeconds >= 1 && o.maxReleaseSeconds <= MAX_RELEASE_SECONDS, 'maxReleaseSeconds', `an integer from 1 to ${MAX_RELEASE_SECONDS}`);
    need(Number.isInteger(o.concurrency) && o.concurrency >= 1 && o.concurrency <= 64, 'concurrency', 'an integer from 1 to 64');
    need(o.timeoutMs >= 100, 'timeoutMs', 'a number >= 100');
    need(/^https?:\/\/[^/]+(\/.*)?$/.test(o.publicBaseUrl) && !o.publicBaseUrl.endsWith('/'), 'publicBaseUrl', 'an http(s) origin without a trailing slash');
    this.o = o;
    this.repo = new JobRepository(o.store);
    this.signer = new Webhook(o.secret);
  }

  start(): void {
    if (this.loop) throw new Error('WebhookDispatcher.start(): already started');
    this.loop = this.run();
  }

  /** Stops receiving and waits for deliveries in flight (each is bounded by timeoutMs). Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.stop.abort();
      const results = await Promise.allSettled([this.loop ?? Promise.resolve(), ...this.inFlight]);
      const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed.length > 0) throw new AggregateError(failed.map((f) => f.reason), 'WebhookDispatcher.close() finished with errors');
    })();
    return this.closing;
  }

  private async run(): Promise<void> {
    const signal = this.stop.signal;
    let failures = 0;
    while (!signal.aborted) {
      while (this.inFlight.size >= this.o.concurrency && !signal.aborted) await Promise.race(this.inFlight);
      if (signal.aborted) break;
      let leases: Lease[];
      try {
        leases = await this.o.queue.receive({ max: Math.min(10, this.o.concurrency - this.inFlight.size), waitSeconds: this.o.receiveWaitSeconds, visibilitySeconds: this.o.visibilitySeconds, signal });
        failures = 0;
      } catch (err) {
        if (signal.aborted) break;
        failures++;
        this.o.logger.error('receive failed; backing off', { failures, ...errorFields(err) });
        await new Promise((r) => setTimeout(r, Math.min(30_000, 500 * 2 ** Math.min(failures, 6))));
        continue;
      }
      for (const lease of leases) {
        const p: Promise<void> = this.handle(lease)
          .catch(async (err) => {
            this.o.logger.error('webhook handling failed; it comes back after its lease', { message_id: lease.messageId, ...errorFields(err) });
            await this.o.queue.release(lease, 30).catch(() => {});
          })
          .finally(() => this.inFlight.delete(p));
        this.inFlight.add(p);
      }
    }
  }

  private async handle(lease: Lease): Promise<void> {
    const parsed = WebhookMessage.safeParse(safeJson(lease.body));
    if (!parsed.success) {
      this.o.logger.error('not a webhook message; dropped', { message_id: lease.messageId, body: lease.body.slice(0, 200) });
      await this.ack(lease);
      return;
    }
    const msg = parsed.data;
    // one delivery per job at a time in this process: a duplicate outbox message then sees
    // the first one's attempt record instead of racing it (and writing the same attempt key)
    const key = `${msg.tenant}/${msg.job_id}`;
    const previous = this.perJob.get(key) ?? Promise.resolve();
    let done!: () => void;
    const mine = previous.then(() => new Promise<void>((r) => (done = r)));
    this.perJob.set(key, mine);
    await previous;
    try {
      await this.handleMessage(lease, msg);
    } finally {
      done();
      if (this.perJob.get(key) === mine) this.perJob.delete(key);
    }
  }

  private async handleMessage(lease: Lease, msg: WebhookMessageType): Promise<void> {
    const ctx = { job_id: msg.job_id, tenant: msg.tenant, type: msg.type };
    const parts = await this.repo.getParts(msg.tenant, msg.job_id);
    if (!parts?.request.webhook) {
      this.o.logger.warn('webhook for a job without a webhook URL; dropped', ctx);
      await this.ack(lease);
      return;
    }
    const attempts = parts.webhookAttempts;
    if (attempts.some((a) => a.ok)) {
      // a duplicate outbox message: the event was delivered already
      await this.ack(lease);
      return;
    }
    const now = this.o.clock();
    const last = attempts.at(-1);
    if (last) {
      if (last.next_attempt_at === null) {
        await this.ack(lease); // given up already
        return;
      }
      const due = Date.parse(last.next_attempt_at);
      if (due - now > 500) {
        // woke early: the delay was longer than one release can be (chained), or a duplicate
        await this.o.queue.release(lease, Math.min(this.o.maxReleaseSeconds, Math.ceil((due - now) / 1000)));
        return;
      }
    }

    const n = attempts.length + 1;
    const record = await this.repo.assemble(parts, {
      sign: this.o.signUrl,
      urlTtlSeconds: typeof this.o.outputUrlTtlSeconds === 'function' ? await this.o.outputUrlTtlSeconds() : this.o.outputUrlTtlSeconds,
      now,
      baseUrl: this.o.publicBaseUrl,
    });
    const result = await this.deliver(parts.request.webhook.url, msg.type, record, now);
    this.attempts++;
    const schedule = this.o.retrySchedule;
    // 410 Gone is the receiver saying "stop"; otherwise follow the schedule
    const retryIn = result.ok || result.status === 410 || n > schedule.length ? null : schedule[n - 1]!;
    const attempt: WebhookAttempt = {
      attempt: n,
      at: new Date(now).toISOString(),
      status: result.status,
      ok: result.ok,
      ...(result.error !== undefined ? { error: result.error } : {}),
      next_attempt_at: retryIn === null ? null : new Date(now + retryIn * 1000).toISOString(),
    };
    await this.repo.putWebhookAttempt(msg.tenant, msg.job_id, attempt);
    if (retryIn === null) {
      if (!result.ok) this.o.logger.warn('webhook given up', { ...ctx, attempts: n, status: result.status, error: result.error });
      else this.o.logger.info('webhook delivered', { ...ctx, attempt: n, status: result.status });
      await this.ack(lease);
      return;
    }
    this.o.logger.warn('webhook attempt failed; will retry', { ...ctx, attempt: n, status: result.status, error: result.error, retry_in_seconds: retryIn });
    await this.o.queue.release(lease, Math.min(this.o.maxReleaseSeconds, Math.ceil(retryIn)));
  }

  /** One signed POST. Never throws: every outcome is a DeliveryResult. */
  async deliver(url: string, type: WebhookPayload['type'], record: JobRecord, nowMs: number): Promise<DeliveryResult> {
    // an IP literal is judged here (node does not call lookup for one); a name, below
    const literal = webhookUrlProblem(url, { allowPrivate: this.o.allowPrivate });
    if (literal) return { status: null, ok: false, error: `refused: ${literal}` };
    const target = new URL(url);

    const payload: WebhookPayload = { type, timestamp: new Date(nowMs).toISOString(), data: record };
    const body = JSON.stringify(payload);
    const id = `msg_${record.id}_${type.replace('job.', '')}`;
    const at = new Date(nowMs);
    const headers = {
      'content-type': 'application/json',
      'content-length': String(Buffer.byteLength(body)),
      'user-agent': this.o.userAgent,
      'webhook-id': id,
      'webhook-timestamp': String(Math.floor(nowMs / 1000)),
      'webhook-signature': this.signer.sign(id, at, body),
    };
    const lookup = this.o.lookup;
    const allowPrivate = this.o.allowPrivate;
    let refused: string | null = null;
    // Node calls this for the connection itself: the address checked is the one dialled
    const guardedLookup = (hostname: string, options: { all?: boolean }, cb: (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void) => {
      lookup(hostname).then(
        (addrs) => {
          // the same verdict as the edge's on a literal, for every address the name has
          const bad = allowPrivate ? undefined : addrs.map((a) => ({ address: a.address, why: addressProblem(a.address) })).find((a) => a.why !== null);
          if (bad || addrs.length === 0) {
            refused = bad ? `refused: ${hostname} resolves to ${bad.address}: ${bad.why}` : `no address for ${hostname}`;
            const err = Object.assign(new Error(refused), { code: 'EREFUSED' }) as NodeJS.ErrnoException;
            cb(err, '', 4);
            return;
          }
          if (options.all) cb(null, addrs);
          else cb(null, addrs[0]!.address, addrs[0]!.family);
        },
        (err: NodeJS.ErrnoException) => cb(err, '', 4),
      );
    };
    const client = target.protocol === 'https:' ? https : http;
    return new Promise<DeliveryResult>((resolve) => {
      let settled = false;
      const finish = (r: DeliveryResult) => {
        if (settled) return;
        settled = true;
        clearTimeout(deadline);
        resolve(r);
      };
      const req = client.request(target, { method: 'POST', headers, lookup: guardedLookup as never, agent: false }, (res) => {
        let read = 0;
        res.on('data', (chunk: Buffer) => {
          read += chunk.length;
          // the body is not used; do not let a receiver stream gigabytes at us
          if (read > 64 * 1024) res.destroy();
        });
        res.on('end', () => finish({ status: res.statusCode ?? null, ok: (res.statusCode ?? 0) >= 200 && (res.statusCode ?? 0) < 300 }));
        res.on('error', () => finish({ status: res.statusCode ?? null, ok: (res.statusCode ?? 0) >= 200 && (res.statusCode ?? 0) < 300 }));
        res.on('close', () => finish({ status: res.statusCode ?? null, ok: (res.statusCode ?? 0) >= 200 && (res.statusCode ?? 0) < 300 }));
      });
      const deadline = setTimeout(() => {
        req.destroy();
        finish({ status: null, ok: false, error: `timed out after ${this.o.timeoutMs} ms` });
      }, this.o.timeoutMs);
      req.on('error', (err: NodeJS.ErrnoException) => finish({ status: null, ok: false, error: refused ?? `${err.code ?? 'error'}: ${err.message}`.slice(0, 300) }));
      req.end(body);
    });
  }

  private async ack(lease: Lease): Promise<void> {
    try {
      await this.o.queue.ack(lease);
    } catch (err) {
      if (!(err instanceof LeaseLostError)) throw err;
    }
  }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}
