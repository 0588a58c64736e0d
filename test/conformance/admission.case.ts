/**
 * The JobAdmission contract (shared/ports/admission.ts) as one suite that every adapter runs:
 * admission.test.ts calls it for the edge's in-process count over a memory store, for the
 * single node's SQLite adapter (both of its writers), and for DynamoDB on dynalite. Jobs are accepted the way the edge
 * accepts them (edge/jobs-service.ts): in one commit unit with the request and the index
 * entry where the adapter shares the store's log, else admitted first and withdrawn when a
 * write fails. Jobs finish through the store, as the runner and the cancel route write them.
 */
import { describe, expect, it, type TestContext } from 'vitest';
import { JobRepository, type StoredStatus } from '../../shared/job-repository.ts';
import type { JobAdmission } from '../../shared/ports/admission.ts';
import type { ObjectStore } from '../../shared/ports/store.ts';

export interface AdmissionWorld {
  admission: JobAdmission;
  /** where the jobs' records live */
  store: ObjectStore;
  /** another admission over the same records and counts: a restart, or another process */
  reopen(): Promise<JobAdmission>;
}

export interface AdmissionSuite {
  /** a fresh admission over a fresh, empty store, for one test */
  create(): Promise<AdmissionWorld>;
}

const JOB = (i: number) => `job_${String(i).padStart(26, '0')}`;

function status(s: StoredStatus['status'], retry = false): StoredStatus {
  const at = '2025-03-01T10:00:00.000Z';
  return {
    v: 1,
    status: s,
    message_id: 'm-1',
    attempt: 1,
    started_at: s === 'queued' ? null : at,
    finished_at: ['succeeded', 'failed', 'canceled'].includes(s) ? at : null,
    updated_at: at,
    progress: null,
    usage: null,
    timings: { queued_ms: null, run_ms: null, onnx_ms: null, outside_onnx_ms: null },
    error: null,
    outputs: [],
    webhook_enqueued: false,
    retry: retry ? { failed_attempt: 1, max_attempts: 5, error: 'boom', next_attempt_at: at } : null,
  };
}

export function describeAdmissionConformance(name: string, suite: AdmissionSuite): void {
  const open = async (ctx: TestContext) => {
    const world = await suite.create();
    const repo = new JobRepository(world.store);
    const extra: JobAdmission[] = [];
    ctx.onTestFinished(async () => {
      for (const a of extra) await a.close();
      await world.admission.close();
      await world.store.close();
    });
    let clock = Date.parse('2025-03-01T10:00:00.000Z');
    /** Admits the job and writes its request and index entry as the edge does; true when accepted. */
    const accept = async (tenant: string, jobId: string, cap: number, admission = world.admission): Promise<boolean> => {
      const created = clock++;
      const stored = { v: 1 as const, id: jobId, tenant, created_at: new Date(created).toISOString(), spec: {} as never, webhook: null };
      const log = admission.commitLog?.();
      if (log && world.store.commitLog?.(repo.requestKey(tenant, jobId)) === log) {
        const [admitted, ...writes] = log.unit(() => [admission.admit(tenant, jobId, cap), repo.putRequest(stored), repo.putIndex(tenant, created, jobId)]);
        const [outcome, ...rest] = await Promise.allSettled([admitted, ...writes]);
        if (outcome!.status === 'rejected') throw outcome!.reason;
        if (!outcome!.value) {
          expect(rest.every((r) => r.status === 'rejected')).toBe(true);
          return false;
        }
        for (const r of rest) if (r.status === 'rejected') throw r.reason;
        return true;
      }
      if (!(await admission.admit(tenant, jobId, cap))) return false;
      await repo.putRequest(stored);
      await repo.putIndex(tenant, created, jobId);
      return true;
    };
    const reopen = async () => {
      const a = await world.reopen();
      extra.push(a);
      return a;
    };
    return { ...world, repo, accept, reopen };
  };

  describe(`JobAdmission conformance: ${name}`, () => {
    it('admits up to the cap and then refuses, per tenant', async (ctx) => {
      const w = await open(ctx);
      for (let i = 0; i < 3; i++) expect(await w.accept('acme', JOB(i), 3)).toBe(true);
      expect(await w.accept('acme', JOB(3), 3)).toBe(false);
      expect(await w.admission.hasRoom('acme', 3)).toBe(false);
      // a refused job left nothing behind
      expect(await w.repo.getRequest('acme', JOB(3))).toBeNull();
      // another tenant has its own count
      expect(await w.admission.hasRoom('other', 3)).toBe(true);
      expect(await w.accept('other', JOB(4), 3)).toBe(true);
      // a higher cap lets the same tenant in again
      expect(await w.accept('acme', JOB(5), 4)).toBe(true);
    });

    it('100 parallel admissions for a fresh tenant with a cap of 50: exactly 50', async (ctx) => {
      const w = await open(ctx);
      const results = await Promise.all(Array.from({ length: 100 }, (_, i) => w.accept('fresh', JOB(i), 50)));
      expect(results.filter(Boolean)).toHaveLength(50);
      const accepted = (await w.repo.listJobIds('fresh', { limit: 1000, cursor: null })).ids;
      expect(accepted).toHaveLength(50);
    });

    it('a job stops counting once the store says it finished, as derivedStatus does', async (ctx) => {
      const w = await open(ctx);
      const ids = [0, 1, 2, 3, 4, 5, 6].map(JOB);
      for (const id of ids) expect(await w.accept('acme', id, 7)).toBe(true);
      // none of these is finished: a retry waiting in the queue, a running job asked to stop,
      // malformed status JSON
      await w.repo.putStatus('acme', ids[0]!, status('queued', true));
      await w.repo.putStatus('acme', ids[1]!, status('running'));
      await w.repo.putCancel('acme', ids[1]!, { requested_at: '2025-03-01T10:00:01.000Z' });
      await w.store.put(w.repo.statusKey('acme', ids[2]!), '{"status":', 'application/json');
      expect(await w.accept('acme', JOB(10), 7)).toBe(false);
      expect(await w.admission.hasRoom('acme', 7)).toBe(false);
      // finished: each terminal status, a cancel before the job ran, a cancel of a retry
      await w.repo.putStatus('acme', ids[3]!, status('succeeded'));
      await w.repo.putStatus('acme', ids[4]!, status('failed'));
      await w.repo.putStatus('acme', ids[5]!, status('canceled'));
      await w.repo.putCancel('acme', ids[6]!, { requested_at: '2025-03-01T10:00:01.000Z' });
      await w.repo.putCancel('acme', ids[0]!, { requested_at: '2025-03-01T10:00:01.000Z' });
      expect(await w.admission.hasRoom('acme', 7)).toBe(true);
      const results = await Promise.all([10, 11, 12, 13, 14, 15, 16].map((i) => w.accept('acme', JOB(i), 7)));
      expect(results.filter(Boolean)).toHaveLength(5);
      expect(await w.admission.hasRoom('acme', 7)).toBe(false);
    });

    it('withdraw gives the slot of a job that was never accepted back', async (ctx) => {
      const w = await open(ctx);
      expect(await w.admission.admit('acme', JOB(0), 1)).toBe(true);
      expect(await w.admission.admit('acme', JOB(1), 1)).toBe(false);
      await w.admission.withdraw('acme', JOB(0));
      expect(await w.admission.hasRoom('acme', 1)).toBe(true);
      expect(await w.admission.admit('acme', JOB(1), 1)).toBe(true);
    });

    it('release of a finished job frees its slot once: twice, or an unknown job, frees no other', async (ctx) => {
      const w = await open(ctx);
      for (let i = 0; i < 3; i++) expect(await w.accept('acme', JOB(i), 3)).toBe(true);
      // the runner's order: the terminal status first, then the release (and again on a redelivery)
      await w.repo.putStatus('acme', JOB(0), status('succeeded'));
      await w.admission.release('acme', JOB(0));
      await w.admission.release('acme', JOB(0));
      await w.admission.release('acme', JOB(99));
      await w.admission.release('other', JOB(1));
      const results = await Promise.all([10, 11, 12].map((i) => w.accept('acme', JOB(i), 3)));
      expect(results.filter(Boolean)).toHaveLength(1);
      expect(await w.admission.hasRoom('acme', 3)).toBe(false);
    });

    it('another admission over the same records counts the same jobs (a restart)', async (ctx) => {
      const w = await open(ctx);
      for (let i = 0; i < 3; i++) expect(await w.accept('acme', JOB(i), 3)).toBe(true);
      const again = await w.reopen();
      expect(await again.hasRoom('acme', 3)).toBe(false);
      expect(await w.accept('acme', JOB(3), 3, again)).toBe(false);
      await w.repo.putStatus('acme', JOB(1), status('succeeded'));
      expect(await w.accept('acme', JOB(4), 3, again)).toBe(true);
      expect(await w.accept('acme', JOB(5), 3, again)).toBe(false);
    });

    it('refuses nonsense arguments, naming them', async (ctx) => {
      const w = await open(ctx);
      await expect(w.admission.admit('acme', JOB(0), 0)).rejects.toThrow(/cap must be a positive integer/);
      await expect(w.admission.admit('', JOB(0), 1)).rejects.toThrow(/tenant/);
      await expect(w.admission.admit('acme', '', 1)).rejects.toThrow(/jobId/);
    });
  });
}
