/**
 * The admission port (shared/ports/admission.ts) in the edge's memory, over any store: the
 * edge remembers the jobs it admitted, and only when a tenant is at its cap does it re-read
 * those jobs' status to drop the finished ones. Counting and admitting are one synchronous
 * step, so within one process the cap is exact. After a restart the set is rebuilt from the
 * newest `scanLimit` index entries (older jobs that are still queued then escape the count).
 *
 * createApp's default when the root brings no admission. The AWS edge does not use it: there
 * every Lambda instance would keep its own count, so it counts in DynamoDB instead
 * (adapters/aws/dynamo-admission.ts).
 */
import { derivedStatus, type JobRepository } from '../shared/job-repository.ts';
import { isTerminal } from '../shared/contract/index.ts';
import { checkAdmitArgs, type JobAdmission } from '../shared/ports/admission.ts';

interface TenantJobs {
  ids: Set<string>;
  ready: Promise<void>;
  /** a refresh in progress, shared by concurrent callers */
  refreshing: Promise<void> | null;
  refreshedAt: number;
}

export class ActiveJobTracker implements JobAdmission {
  private readonly tenants = new Map<string, TenantJobs>();

  constructor(
    private readonly repo: JobRepository,
    private readonly opts: { scanLimit?: number; now?: () => number; minRefreshMs?: number } = {},
  ) {}

  async admit(tenant: string, jobId: string, cap: number): Promise<boolean> {
    checkAdmitArgs(tenant, jobId, cap);
    const e = this.entry(tenant);
    await e.ready;
    // a refusal must mean `cap` jobs are active: look at them first, without the throttle
    if (e.ids.size >= cap) await this.refresh(tenant, e, 0);
    // no await between the check and the add: parallel admits cannot both take the last slot
    if (e.ids.size >= cap) return false;
    e.ids.add(jobId);
    return true;
  }

  async withdraw(tenant: string, jobId: string): Promise<void> {
    this.tenants.get(tenant)?.ids.delete(jobId);
  }

  async release(tenant: string, jobId: string): Promise<void> {
    this.tenants.get(tenant)?.ids.delete(jobId);
  }

  async hasRoom(tenant: string, cap: number): Promise<boolean> {
    const e = this.entry(tenant);
    await e.ready;
    // a flood at the cap re-reads the store at most every minRefreshMs
    if (e.ids.size >= cap) await this.refresh(tenant, e, this.opts.minRefreshMs ?? 250);
    return e.ids.size < cap;
  }

  async close(): Promise<void> {
    this.tenants.clear();
  }

  private now(): number {
    return (this.opts.now ?? Date.now)();
  }

  private entry(tenant: string): TenantJobs {
    let e = this.tenants.get(tenant);
    if (!e) {
      const created: TenantJobs = { ids: new Set(), ready: Promise.resolve(), refreshing: null, refreshedAt: -Infinity };
      created.ready = this.hydrate(tenant, created);
      this.tenants.set(tenant, created);
      e = created;
    }
    return e;
  }

  private async hydrate(tenant: string, e: TenantJobs): Promise<void> {
    try {
      const { ids } = await this.repo.listJobIds(tenant, { limit: this.opts.scanLimit ?? 200, cursor: null });
      const finished = await this.finished(tenant, ids);
      for (const id of ids) if (!finished.has(id)) e.ids.add(id);
    } catch {
      // a failed scan must not block job creation: the set then holds only the jobs
      // created from now on, which undercounts but never locks a tenant out
    }
  }

  /** Drops the finished jobs; one refresh at a time per tenant, joined by concurrent callers. */
  private async refresh(tenant: string, e: TenantJobs, minIntervalMs: number): Promise<void> {
    if (!e.refreshing && this.now() - e.refreshedAt >= minIntervalMs) {
      e.refreshing = (async () => {
        // ids admitted meanwhile stay: they are not in this snapshot
        const finished = await this.finished(tenant, [...e.ids]);
        for (const id of finished) e.ids.delete(id);
      })().finally(() => {
        e.refreshing = null;
        e.refreshedAt = this.now();
      });
    }
    if (e.refreshing) await e.refreshing;
  }

  private async finished(tenant: string, ids: string[]): Promise<Set<string>> {
    const states = await Promise.all(
      ids.map(async (id) => {
        try {
          const [status, cancel] = await Promise.all([this.repo.getStatus(tenant, id), this.repo.getCancel(tenant, id)]);
          return { id, terminal: isTerminal(derivedStatus(status, cancel)) };
        } catch {
          // records that cannot be read (malformed, a store error) do not show the job finished
          return { id, terminal: false };
        }
      }),
    );
    return new Set(states.filter((s) => s.terminal).map((s) => s.id));
  }
}
