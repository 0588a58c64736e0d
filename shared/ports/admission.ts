/**
 * The admission port: the per-tenant cap on active (queued or running) jobs, as one atomic
 * step that counts a new job in only while its tenant is below the cap.
 *
 * Contract (checked by test/conformance/admission.case.ts against every adapter):
 * - `admit(tenant, jobId, cap)` resolves true and counts the job as active when the tenant has
 *   fewer than `cap` active jobs, and false otherwise. Counting and admitting are one step: n
 *   parallel admits for a tenant with no active jobs admit exactly min(n, cap).
 * - A job stops counting once the store says it has finished, the way a client sees it
 *   (derivedStatus in shared/job-repository.ts): status.json holds a terminal status, or
 *   cancel.json exists while the job is not running. Adapters may notice this lazily, but
 *   always before they refuse: a refusal means `cap` jobs are active.
 * - `withdraw` takes back an admission whose job was never accepted (its writes failed).
 * - `release` is told that an admitted job finished (its terminal status, or the cancel of a
 *   queued job, is stored). An adapter that counts outside the store frees the slot at once
 *   instead of at its next look at the store; one that reads the store anyway may do nothing.
 *   It is idempotent: releasing a job twice, or one never admitted, frees no other job's slot.
 *   Callers treat it as best effort (a lost release costs a store read at the cap, never a
 *   slot), so the store stays the truth.
 * - `hasRoom` is a cheap look for refusing a flood before its bodies are read; it may be
 *   stale, and only `admit` decides.
 * - An adapter that shares a transactional log with the store and the queue (`commitLog()`,
 *   see ObjectStore.commitLog) makes `admit` a write of that log. Called inside
 *   `CommitLog.unit` together with the create's writes, it commits with them, and a refusal
 *   commits none of them; no `withdraw` is ever needed then.
 * - `close()` is idempotent.
 *
 * Adapters: the single node's SQLite (adapters/embedded/sqlite-admission.ts, exact across
 * processes, durable), DynamoDB on AWS (adapters/aws/dynamo-admission.ts, exact across Lambda
 * instances, a conditional write per admission), and the edge's in-process count
 * (edge/active-jobs.ts, exact within one process; the default of createApp).
 */
import type { CommitLog } from './store.ts';

export interface JobAdmission {
  admit(tenant: string, jobId: string, cap: number): Promise<boolean>;
  withdraw(tenant: string, jobId: string): Promise<void>;
  release(tenant: string, jobId: string): Promise<void>;
  hasRoom(tenant: string, cap: number): Promise<boolean>;
  close(): Promise<void>;
  commitLog?(): CommitLog | undefined;
}

/** The arguments of `admit`, checked alike by every adapter. */
export function checkAdmitArgs(tenant: string, jobId: string, cap: number): void {
  if (typeof tenant !== 'string' || tenant === '') throw new TypeError(`admit: tenant must be a non-empty string; got ${JSON.stringify(tenant)}`);
  if (typeof jobId !== 'string' || jobId === '') throw new TypeError(`admit: jobId must be a non-empty string; got ${JSON.stringify(jobId)}`);
  if (!Number.isSafeInteger(cap) || cap < 1) throw new RangeError(`admit: cap must be a positive integer; got ${String(cap)}`);
}
