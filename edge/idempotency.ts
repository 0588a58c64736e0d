/**
 * Idempotency-Key for job creation, without conditional writes (docs/architecture.md, "Store
 * layout"): each request writes its own claim object under the key's prefix, then lists the
 * prefix; the first claim in key order wins, and a claim whose job already exists wins
 * outright. The winner accepts its job; every other request with the key is answered with
 * that job once it is accepted (a replay), or 422 when its body differs.
 *
 * Same-key requests in one process take turns (KeyedMutex), so there the scheme is exact.
 * Across edge instances, waiting `settleMs` after the write lets every claim that can sort
 * before ours (clock skew, a slower write) land before we look.
 */
import type { JobRecord, JobRequest } from '../shared/contract/index.ts';
import type { IdempotencyClaim, JobParts, JobRepository, StoredRequest } from '../shared/job-repository.ts';
import { sleep } from '../shared/sleep.ts';
import { type ObjectStore, StorageFullError } from '../shared/ports/store.ts';
import { canonicalJson, sha256Hex } from './hashing.ts';
import { ProblemError } from './middleware/problem/index.ts';

/** A claim older than this no longer binds its key: the key may be reused (as Stripe's 24 h). */
export const IDEMPOTENCY_TTL_MS = 24 * 3600_000;
/** A winning claim whose job never appeared within this time belongs to a crashed request. */
export const CLAIM_ABANDONED_MS = 30_000;
/** How long a same-key retry waits for the first request to finish accepting its job. */
const REPLAY_WAIT_MS = 10_000;

export interface IdempotencyOptions {
  repo: JobRepository;
  store: ObjectStore;
  clock: { now(): number };
  /** how long to wait after writing a claim before looking for the winner (0: one edge instance) */
  settleMs: number;
  /** sends the job's queue message (again): finishing an acceptance that a crashed request left half done */
  enqueue(req: StoredRequest): Promise<void>;
  assemble(parts: JobParts): Promise<JobRecord>;
}

export interface ClaimInput {
  tenant: string;
  key: string;
  request: JobRequest;
  /** the job this request would create, and when */
  jobId: string;
  now: number;
  createdAt: string;
}

/** Either this request accepted its own job, or the key's job answers it. */
export type ClaimOutcome<T> = { accepted: T; replayed: null } | { accepted: null; replayed: JobRecord };

export class Idempotency {
  private readonly keyLocks = new KeyedMutex();

  constructor(private readonly o: IdempotencyOptions) {}

  /**
   * Runs `accept` when this request's claim wins the key (or, should no claim be found at
   * all, without one), else answers with the job the key belongs to. A winner refused at the
   * active-job cap (429) or by a full disk takes its claim back, so a retry with this key does
   * not wait for a job that never comes.
   */
  async create<T>(input: ClaimInput, accept: () => Promise<T>): Promise<ClaimOutcome<T>> {
    const { tenant, jobId, now } = input;
    // both digests at once, not one crypto round trip after the other
    const [keyHash, bodyHash] = await Promise.all([sha256Hex(input.key), sha256Hex(canonicalJson(input.request))]);
    const mine: IdempotencyClaim = { job_id: jobId, body_hash: bodyHash, created_at: input.createdAt };
    const release = await this.keyLocks.acquire(`${tenant}/${keyHash}`);
    let winner: IdempotencyClaim | null;
    try {
      // A retry of a job that exists is answered from what is stored, without writing a
      // claim of its own: it works on a full disk, and that claim could never win anyway.
      winner = await this.claimOfExistingJob(tenant, keyHash, now);
      if (!winner) {
        await this.o.repo.putIdempotencyClaim(tenant, keyHash, now, mine);
        if (this.o.settleMs > 0) await sleep(this.o.settleMs);
        winner = await this.winningClaim(tenant, keyHash, now);
        if (winner?.job_id === jobId) {
          const accepted = await accept().catch(async (err: unknown) => {
            // the delete is best effort: a full disk may refuse it too
            if ((err instanceof ProblemError && err.status === 429) || err instanceof StorageFullError) await this.o.store.delete(this.o.repo.idempotencyClaimKey(tenant, keyHash, now, jobId)).catch(() => {});
            throw err;
          });
          return { accepted, replayed: null };
        }
      }
    } finally {
      release();
    }
    if (winner) return { accepted: null, replayed: await this.replay(tenant, keyHash, bodyHash, jobId) };
    return { accepted: await accept(), replayed: null };
  }

  /**
   * The claim that owns the key. A claim whose job already exists wins outright: a request
   * that arrives after the key was used must never win by sorting earlier (a clock behind
   * by a few ms, or a tie in the same ms). Otherwise the first live claim in key order wins.
   * Claims past the TTL, or abandoned by a crashed request, do not count.
   */
  private async winningClaim(tenant: string, keyHash: string, now: number, except?: string): Promise<IdempotencyClaim | null> {
    const live: { claim: IdempotencyClaim; age: number }[] = [];
    for (const claim of await this.o.repo.listIdempotencyClaims(tenant, keyHash)) {
      // a request that already stood down never becomes the winner again
      if (claim.job_id === except) continue;
      const age = now - Date.parse(claim.created_at);
      if (!(age <= IDEMPOTENCY_TTL_MS)) continue;
      if (await this.o.repo.getRequest(tenant, claim.job_id)) return claim;
      live.push({ claim, age });
    }
    return live.find((c) => c.age <= CLAIM_ABANDONED_MS)?.claim ?? null;
  }

  /** The first live claim, in key order, whose job exists: the one winningClaim() picks outright. */
  private async claimOfExistingJob(tenant: string, keyHash: string, now: number): Promise<IdempotencyClaim | null> {
    for (const claim of await this.o.repo.listIdempotencyClaims(tenant, keyHash)) {
      if (!(now - Date.parse(claim.created_at) <= IDEMPOTENCY_TTL_MS)) continue;
      if (await this.o.repo.getRequest(tenant, claim.job_id)) return claim;
    }
    return null;
  }

  /**
   * The job the key belongs to, once it is accepted. The winner is looked up again on every
   * turn: a claimant that looked like the winner may itself have found an older job that
   * already existed, and then that job is the answer.
   */
  private async replay(tenant: string, keyHash: string, bodyHash: string, mine: string): Promise<JobRecord> {
    const { repo, clock } = this.o;
    // a wall-clock bound: this is how long we hold the client's request, whatever deps.clock says
    const deadline = Date.now() + REPLAY_WAIT_MS;
    let delay = 25;
    for (;;) {
      const winner = await this.winningClaim(tenant, keyHash, clock.now(), mine);
      if (winner && winner.body_hash !== bodyHash) {
        throw new ProblemError(422, {
          type: 'idempotency-key-reused',
          title: 'Idempotency-Key reused with another body',
          detail: `this Idempotency-Key was first used for job ${winner.job_id} with a different request body; use a new key for a new request`,
          errors: [{ field: 'header Idempotency-Key', message: 'already used with a different body' }],
        });
      }
      if (winner) {
        const createdMs = Date.parse(winner.created_at);
        const [req, indexed] = await Promise.all([repo.getRequest(tenant, winner.job_id), repo.hasIndex(tenant, createdMs, winner.job_id)]);
        if (req && indexed) {
          const parts = await repo.getParts(tenant, winner.job_id);
          if (parts) return this.o.assemble(parts);
        }
        if (req && !indexed && clock.now() - createdMs > CLAIM_ABANDONED_MS) {
          // the first request died between writing the job and marking it accepted; it may
          // or may not have enqueued it. Enqueue (again): the runner drops a duplicate message.
          await this.o.enqueue(req);
          await repo.putIndex(tenant, createdMs, req.id);
          continue;
        }
      }
      if (Date.now() >= deadline) {
        throw new ProblemError(409, {
          type: 'idempotent-request-in-progress',
          title: 'A request with this Idempotency-Key is in progress',
          detail: `the first request with this key${winner ? ` (job ${winner.job_id})` : ''} has not finished; retry shortly`,
          headers: { 'retry-after': '1' },
        });
      }
      await sleep(delay);
      delay = Math.min(delay * 2, 500);
    }
  }
}

/** One holder per key at a time, FIFO; the map holds only keys in use. */
export class KeyedMutex {
  private readonly tails = new Map<string, Promise<void>>();

  async acquire(key: string): Promise<() => void> {
    const previous = this.tails.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    const tail = previous.then(() => mine);
    this.tails.set(key, tail);
    await previous;
    return () => {
      release();
      if (this.tails.get(key) === tail) this.tails.delete(key);
    };
  }
}
