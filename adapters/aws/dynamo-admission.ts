/**
 * The admission port (shared/ports/admission.ts) in DynamoDB, so that the cap on a tenant's
 * active jobs holds for the whole stack and not per Lambda instance.
 *
 * One item per tenant (counters-table.ts: `admit#{tenant}`) holds its admitted jobs as a map,
 * job id -> admission time (ms). An admission is one conditional UpdateItem that adds the job
 * only while the map has fewer than `cap` entries (`size(jobs) < :cap`): DynamoDB applies
 * writes to one item one at a time, so counting and admitting are one step for every instance,
 * and n parallel admissions admit exactly min(n, cap). Why a map of ids rather than a number:
 * removing an id is idempotent (a finished job released twice, by the runner and again by its
 * redelivery, frees one slot, never two), and the ids say which jobs to look at when the count
 * must come down without a release.
 *
 * How slots come back:
 * - `release` (the runner's terminal writes, the dead-letter path, a runner that gives up
 *   starting, the cancel of a queued job) removes the id at once: one UpdateItem.
 * - Whatever was never released (a runner killed between its terminal write and the release,
 *   a create that died after its admission) is found the way the single node finds it: before
 *   a tenant at its cap is refused, its admitted jobs are looked up in the store, and those
 *   the store shows finished (derivedStatus, as a client sees them) are removed. Two more
 *   rules free what no record will ever finish: an admission older than `acceptGraceMs` whose
 *   job never got its request and index entry (the mark of acceptance) belongs to a create
 *   that died; and a job admitted longer ago than `maxJobAgeMs` (the job queue's message
 *   retention) has no message left for a runner to take.
 * So a refusal means `cap` jobs are active, and the store reads happen only at the cap (for
 * `hasRoom`, the early look before a body is read, at most every `minRefreshMs` per tenant and
 * instance). One gap is left open on purpose: a create that died after writing its request, and
 * whose admission was dropped after the grace, can still be accepted by a retry with the same
 * Idempotency-Key (edge/idempotency.ts finishes an abandoned acceptance); that job then runs
 * outside the count, one over the cap while it runs (closing that would put an admission into
 * the replay path of edge/idempotency.ts, for a create that died ten minutes earlier).
 *
 * The item carries a TTL (`expires_at`) moved forward by every admission, past `maxJobAgeMs`:
 * DynamoDB deletes the item of a tenant idle for longer than any job can stay active, whose
 * entries the age rule would drop anyway.
 *
 * Cost per create: one UpdateItem (plus hasRoom's eventually consistent GetItem); at the cap,
 * a consistent GetItem, two store reads per admitted job, and one UpdateItem removing the
 * finished ones. A tenant's first admission (or the first after its item expired) adds one
 * UpdateItem that creates the empty map: DynamoDB cannot set a key of a map that is absent.
 */
import {
  ConditionalCheckFailedException,
  GetItemCommand,
  UpdateItemCommand,
  type AttributeValue,
  type DynamoDBClient,
} from '@aws-sdk/client-dynamodb';
import { isTerminal } from '../../shared/contract/index.ts';
import { JobRepository, derivedStatus } from '../../shared/job-repository.ts';
import { checkAdmitArgs, type JobAdmission } from '../../shared/ports/admission.ts';
import type { ObjectStore } from '../../shared/ports/store.ts';
import { COUNTERS_KEY, COUNTERS_TTL_ATTRIBUTE, admissionKey } from './counters-table.ts';

/** The job queue's message retention (infra/queue-settings.ts JOB_MESSAGE_RETENTION_SECONDS). */
export const DEFAULT_MAX_JOB_AGE_MS = 4 * 24 * 3600_000;
/**
 * Longer than any create takes from its admission to its index entry: the edge Lambda's
 * timeout is 5 minutes (infra/edge.ts), and a create holds no lock while it waits.
 */
export const DEFAULT_ACCEPT_GRACE_MS = 10 * 60_000;
/**
 * The map lives in one item, and an item holds at most 400 KB; an entry is a 30-character job
 * id and a number, so this many fit with room to spare.
 */
export const MAX_DYNAMO_CAP = 5000;
/** Job ids removed per UpdateItem (an update expression may be 4 KB long). */
const REMOVE_BATCH = 100;
/** Store reads at once while looking at a tenant's jobs. */
const READ_CONCURRENCY = 16;

export interface DynamoAdmissionOptions {
  client: DynamoDBClient;
  /** the counters table (counters-table.ts) */
  table: string;
  /** where the jobs' records live: what tells a finished job at the cap */
  store: ObjectStore;
  now?: () => number;
  acceptGraceMs?: number;
  maxJobAgeMs?: number;
  /** `hasRoom` at the cap looks at the store at most this often per tenant and instance */
  minRefreshMs?: number;
}

type Members = Map<string, number>;

export class DynamoAdmission implements JobAdmission {
  private readonly client: DynamoDBClient;
  private readonly table: string;
  private readonly repo: JobRepository;
  private readonly now: () => number;
  private readonly acceptGraceMs: number;
  private readonly maxJobAgeMs: number;
  private readonly minRefreshMs: number;
  /** when hasRoom last looked at a full tenant's jobs in the store; bounded, oldest out */
  private readonly refreshedAt = new Map<string, number>();
  private closed = false;

  constructor(opts: DynamoAdmissionOptions) {
    if (typeof opts !== 'object' || opts === null) throw new TypeError('DynamoAdmission: options are required');
    if (typeof opts.client?.send !== 'function') throw new TypeError('DynamoAdmission: option "client" must be a DynamoDBClient');
    if (typeof opts.table !== 'string' || !/^[A-Za-z0-9_.-]{3,255}$/.test(opts.table)) {
      throw new TypeError(`DynamoAdmission: option "table" must be a DynamoDB table name (3 to 255 of A-Z a-z 0-9 _ . -); got ${JSON.stringify(opts.table)}`);
    }
    if (typeof opts.store?.get !== 'function') throw new TypeError('DynamoAdmission: option "store" must be an ObjectStore (the jobs\' records)');
    const ms = (name: keyof DynamoAdmissionOptions, value: number | undefined, def: number, min: number): number => {
      if (value === undefined) return def;
      if (!Number.isSafeInteger(value) || value < min) throw new RangeError(`DynamoAdmission: option "${name}" must be an integer >= ${min} (ms); got ${String(value)}`);
      return value;
    };
    this.client = opts.client;
    this.table = opts.table;
    this.repo = new JobRepository(opts.store);
    this.now = opts.now ?? Date.now;
    this.acceptGraceMs = ms('acceptGraceMs', opts.acceptGraceMs, DEFAULT_ACCEPT_GRACE_MS, 0);
    this.maxJobAgeMs = ms('maxJobAgeMs', opts.maxJobAgeMs, DEFAULT_MAX_JOB_AGE_MS, 1);
    this.minRefreshMs = ms('minRefreshMs', opts.minRefreshMs, 1000, 0);
  }

  async admit(tenant: string, jobId: string, cap: number): Promise<boolean> {
    this.checkOpen();
    checkAdmitArgs(tenant, jobId, cap);
    if (cap > MAX_DYNAMO_CAP) throw new RangeError(`admit: cap must be at most ${MAX_DYNAMO_CAP} on DynamoDB (one item holds a tenant's jobs); got ${cap}`);
    let looked = false;
    // every turn either admits, or learns something that makes the next one differ; the bound
    // only stops a pathological race from spinning
    for (let turn = 0; turn < 20; turn++) {
      if (await this.tryAdmit(tenant, jobId, cap)) return true;
      const members = await this.members(tenant, true);
      if (members === null) {
        await this.createMap(tenant);
        continue;
      }
      // a slot came free between the refusal and the read: try again
      if (members.size < cap) continue;
      // a refusal must mean `cap` jobs are active: look at them (once) before refusing
      if (looked) return false;
      looked = true;
      if ((await this.dropFinished(tenant, members)) === 0) return false;
    }
    throw new Error(`DynamoAdmission: could not admit job ${jobId} of tenant ${tenant}: its count kept changing under 20 attempts`);
  }

  async withdraw(tenant: string, jobId: string): Promise<void> {
    this.checkOpen();
    await this.remove(tenant, [jobId]);
  }

  async release(tenant: string, jobId: string): Promise<void> {
    this.checkOpen();
    await this.remove(tenant, [jobId]);
  }

  async hasRoom(tenant: string, cap: number): Promise<boolean> {
    this.checkOpen();
    // eventually consistent: half the price, and the port allows a stale answer here
    const members = await this.members(tenant, false);
    if (members === null || members.size < cap) return true;
    // a flood at the cap reads the store at most every minRefreshMs
    const now = this.now();
    if (now - (this.refreshedAt.get(tenant) ?? -Infinity) < this.minRefreshMs) return false;
    this.refreshedAt.delete(tenant);
    if (this.refreshedAt.size >= 10_000) this.refreshedAt.delete(this.refreshedAt.keys().next().value!);
    this.refreshedAt.set(tenant, now);
    return members.size - (await this.dropFinished(tenant, members)) < cap;
  }

  /** The client belongs to the root; nothing else is held. */
  async close(): Promise<void> {
    this.closed = true;
  }

  // ---- DynamoDB -------------------------------------------------------------------------

  private key(tenant: string): Record<string, AttributeValue> {
    return { [COUNTERS_KEY]: { S: admissionKey(tenant) } };
  }

  private expiresAt(): AttributeValue {
    return { N: String(Math.ceil((this.now() + this.maxJobAgeMs) / 1000) + 24 * 3600) };
  }

  /** The conditional write: adds the job while the tenant has fewer than `cap`. False when refused, or when there is no map yet. */
  private async tryAdmit(tenant: string, jobId: string, cap: number): Promise<boolean> {
    try {
      await this.client.send(
        new UpdateItemCommand({
          TableName: this.table,
          Key: this.key(tenant),
          UpdateExpression: 'SET jobs.#job = :at, #ttl = :ttl',
          // false for an absent map too (size() of a missing attribute is no number)
          ConditionExpression: 'size(jobs) < :cap',
          ExpressionAttributeNames: { '#job': jobId, '#ttl': COUNTERS_TTL_ATTRIBUTE },
          ExpressionAttributeValues: { ':at': { N: String(this.now()) }, ':ttl': this.expiresAt(), ':cap': { N: String(cap) } },
        }),
      );
      return true;
    } catch (err) {
      if (isConditionFailed(err) || isMissingPath(err)) return false;
      throw err;
    }
  }

  /** The tenant's empty map, unless another instance made it first. */
  private async createMap(tenant: string): Promise<void> {
    await this.client.send(
      new UpdateItemCommand({
        TableName: this.table,
        Key: this.key(tenant),
        UpdateExpression: 'SET jobs = if_not_exists(jobs, :empty), #ttl = :ttl',
        ExpressionAttributeNames: { '#ttl': COUNTERS_TTL_ATTRIBUTE },
        ExpressionAttributeValues: { ':empty': { M: {} }, ':ttl': this.expiresAt() },
      }),
    );
  }

  /** The admitted jobs and their admission times; null when the tenant has no map. */
  private async members(tenant: string, consistent: boolean): Promise<Members | null> {
    const out = await this.client.send(
      new GetItemCommand({ TableName: this.table, Key: this.key(tenant), ConsistentRead: consistent, ProjectionExpression: 'jobs' }),
    );
    const jobs = out.Item?.jobs?.M;
    if (!jobs) return null;
    return new Map(Object.entries(jobs).map(([id, v]) => [id, Number(v.N ?? 0)]));
  }

  /** Removes jobs from the tenant's map; an id that is not there, or a missing map, is no error. */
  private async remove(tenant: string, ids: string[]): Promise<void> {
    for (let i = 0; i < ids.length; i += REMOVE_BATCH) {
      const batch = ids.slice(i, i + REMOVE_BATCH);
      try {
        await this.client.send(
          new UpdateItemCommand({
            TableName: this.table,
            Key: this.key(tenant),
            UpdateExpression: `REMOVE ${batch.map((_, k) => `jobs.#j${k}`).join(', ')}`,
            // REMOVE of a key of an absent map is a ValidationException; the condition turns it into a no-op
            ConditionExpression: 'attribute_exists(jobs)',
            ExpressionAttributeNames: Object.fromEntries(batch.map((id, k) => [`#j${k}`, id])),
          }),
        );
      } catch (err) {
        if (!isConditionFailed(err)) throw err;
      }
    }
  }

  // ---- the store ------------------------------------------------------------------------

  /** Removes the jobs that no longer count (see the header); returns how many. */
  private async dropFinished(tenant: string, members: Members): Promise<number> {
    const now = this.now();
    const entries = [...members];
    const gone: string[] = [];
    for (let i = 0; i < entries.length; i += READ_CONCURRENCY) {
      const batch = entries.slice(i, i + READ_CONCURRENCY);
      const verdicts = await Promise.all(batch.map(([id, at]) => this.counts(tenant, id, now - at)));
      batch.forEach(([id], k) => {
        if (!verdicts[k]) gone.push(id);
      });
    }
    if (gone.length) await this.remove(tenant, gone);
    return gone.length;
  }

  /** Whether an admitted job still counts, from the store's records and its age. */
  private async counts(tenant: string, jobId: string, ageMs: number): Promise<boolean> {
    if (ageMs > this.maxJobAgeMs) return false;
    try {
      const [status, cancel] = await Promise.all([this.repo.getStatus(tenant, jobId), this.repo.getCancel(tenant, jobId)]);
      if (isTerminal(derivedStatus(status, cancel))) return false;
      // a job a runner has touched was accepted; one that never started may never have been
      if (status === null && ageMs > this.acceptGraceMs) {
        const request = await this.repo.getRequest(tenant, jobId);
        if (!request) return false;
        return await this.repo.hasIndex(tenant, Date.parse(request.created_at), jobId);
      }
      return true;
    } catch {
      // records that cannot be read (malformed, a store error) do not show the job finished
      return true;
    }
  }

  private checkOpen(): void {
    if (this.closed) throw new Error('DynamoAdmission is closed');
  }
}

function isConditionFailed(err: unknown): boolean {
  return err instanceof ConditionalCheckFailedException || (err as { name?: unknown } | null)?.name === 'ConditionalCheckFailedException';
}

/** DynamoDB's answer to setting a key of a map that does not exist. */
function isMissingPath(err: unknown): boolean {
  const e = err as { name?: unknown; message?: unknown } | null;
  return e?.name === 'ValidationException' && typeof e.message === 'string' && /document path provided in the update expression is invalid/i.test(e.message);
}
