/**
 * Counts a tenant's non-terminal jobs for the concurrency cap without scanning the store
 * on every create: the edge remembers the jobs it accepted, and only when a tenant looks
 * full does it re-read those jobs' status to drop the finished ones. After a restart the
 * set is rebuilt from the newest `scanLimit` index entries (older jobs that are still
 * queued then escape the count; the cap is a guard against floods, not an exact quota).
 */
import { derivedStatus, type JobRepository } from '../shared/job-repository.ts';
import { isTerminal } from '../shared/contract/index.ts';
import type { ActiveJobs } from './middleware/rate-limit/index.ts';

interface TenantJobs {
  ids: Set<string>;
  ready: Promise<void>;
  /** a refresh in progress, shared by concurrent callers */
  refreshing: Promise<void> | null;
  refreshedAt: number;
}

export class ActiveJobTracker implements ActiveJobs {
  private readonly tenants = new Map<string, TenantJobs>();

  constructor(
    private readonly repo: JobRepository,
    private readonly opts: { cap: number; scanLimit?: number; now?: () => number; minRefreshMs?: number },
  ) {}

  add(tenant: string, jobId: string): void {
    this.entry(tenant).ids.add(jobId);
  }

  remove(tenant: string, jobId: string): void {
    this.tenants.get(tenant)?.ids.delete(jobId);
  }

  async count(tenant: string): Promise<number> {
    const e = this.entry(tenant);
    await e.ready;
    if (e.ids.size >= this.opts.cap) {
      const now = (this.opts.now ?? Date.now)();
      if (!e.refreshing && now - e.refreshedAt >= (this.opts.minRefreshMs ?? 250)) {
        e.refreshing = this.refresh(tenant, e).finally(() => {
          e.refreshing = null;
          e.refreshedAt = (this.opts.now ?? Date.now)();
        });
      }
      if (e.refreshing) await e.refreshing;
    }
    return e.ids.size;
  }

  private entry(tenant: string): TenantJobs {
    let e = this.tenants.get(tenant);
    if (!e) {
      const created: TenantJobs = { ids: new Set(), ready: Promise.resolve(), refreshing: null, refreshedAt: 0 };
      created.ready = this.hydrate(tenant, created);
      this.tenants.set(tenant, created);
      e = created;
    }
    return e;
  }

  private async hydrate(tenant: string, e: TenantJobs): Promise<void> {
    try {
      const { ids } = await this.repo.listJobIds(tenant, { limit: this.opts.scanLimit ?? 200, cursor: null });
      await this.keepActive(tenant, ids, e);
    } catch {
      // a failed scan must not block job creation: the set then holds only the jobs
      // created from now on, which undercounts but never locks a tenant out
    }
  }

  private async refresh(tenant: string, e: TenantJobs): Promise<void> {
    const ids = [...e.ids];
    for (const id of ids) e.ids.delete(id);
    await this.keepActive(tenant, ids, e);
  }

  private async keepActive(tenant: string, ids: string[], e: TenantJobs): Promise<void> {
    const states = await Promise.all(
      ids.map(async (id) => {
        const [status, cancel] = await Promise.all([this.repo.getStatus(tenant, id), this.repo.getCancel(tenant, id)]);
        return { id, terminal: isTerminal(derivedStatus(status, cancel)) };
      }),
    );
    for (const s of states) if (!s.terminal) e.ids.add(s.id);
  }
}
