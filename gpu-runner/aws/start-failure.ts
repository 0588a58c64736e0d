/**
 * What a runner task does when it cannot start (models missing from the bucket, a checksum
 * mismatch, CUDA failing to build a session): the composition root (gpu-runner/main.ts) calls
 * `handle(err)` instead of just exiting.
 *
 * Without this, ECS restarts the task, it fails again, and the jobs stay in the queue: the
 * backlog never reaches zero, the fleet never scales in, and the GPU instance runs until the
 * messages expire (4 days). So each failed start is recorded in the store, and the task that
 * finds `limit` failures within `windowMinutes`, none of them followed by a successful start,
 * and no other task of the service running, gives up for the fleet:
 *
 * 1. it fails every job waiting in the queue, with a reason the user can read (a 503 problem:
 *    the runners cannot start, the operator is notified, submit again later), or marks it
 *    canceled when it was; each gets its webhook like any finished job, and its slot in the
 *    tenant's active-job count is released;
 * 2. it sets the service's desired count to 0, so ECS stops restarting it and managed scaling
 *    removes the instance;
 * 3. it exits with RUNNER_GAVE_UP_EXIT_CODE, which an EventBridge rule forwards to the
 *    operator's alert topic (infra/alerts.ts).
 *
 * The queue is then empty, so a job submitted later starts the fleet again: if the cause is
 * fixed (models uploaded) that start succeeds; if not, the first failure already finds the
 * limit reached and the job is failed at once. A failure alone is not enough to give up: a
 * start can fail for a passing reason (S3 throttling, a network blip), and ECS's restart is the
 * right answer to that. Nor is a failure while another task of the service runs (a deploy
 * whose new tasks fail while the old ones serve: the deployment circuit breaker rolls that
 * back, and the jobs have a runner).
 *
 * Records: `fleet/start-failures/{invTime}-{task}.json` and `fleet/starts/{invTime}-{task}.json`,
 * one writer each (the task), newest first in list order, so one short listing answers "how
 * many failures since the last start". They carry the expiry tag (adapters/aws/retention.ts).
 */
import { DescribeServicesCommand, type ECSClient, UpdateServiceCommand } from '@aws-sdk/client-ecs';
import { isTerminal, type Problem } from '../../shared/contract/index.ts';
import { JobRepository, MAX_INV_TIME } from '../../shared/job-repository.ts';
import type { JobQueue, Lease } from '../../shared/ports/queue.ts';
import type { ObjectStore } from '../../shared/ports/store.ts';
import { type Logger, errorFields } from '../../shared/logger.ts';
import { JobAftermath, endedStatus, jobMessageOrNull } from '../job-aftermath.ts';

/** The exit code of a runner that gave up starting (EX_CONFIG, sysexits.h); infra/alerts.ts matches it. */
export const RUNNER_GAVE_UP_EXIT_CODE = 78;
/** The exit code of a runner that failed to start and leaves the next attempt to ECS. */
export const RUNNER_START_FAILED_EXIT_CODE = 1;
export const FAILURES_PREFIX = 'fleet/start-failures/';
export const STARTS_PREFIX = 'fleet/starts/';
export const DEFAULT_START_FAILURE_LIMIT = 3;
export const DEFAULT_START_FAILURE_WINDOW_MINUTES = 30;
/** The problem type of jobs failed because no runner could start. */
export const RUNNER_UNAVAILABLE_PROBLEM = 'urn:amdm:problem:runner-unavailable';

/** The ECS service this task belongs to, as far as giving up needs it. */
export interface FleetControl {
  /** this task's id (the last field of its ARN) */
  taskId(): Promise<string>;
  /** tasks of the service that ECS counts as running, this one included */
  runningTasks(): Promise<number>;
  /** the service's desired count to 0 */
  stopService(): Promise<void>;
}

export interface StartFailureOptions {
  store: ObjectStore;
  jobs: JobQueue;
  /** the webhook outbox; null: none (webhooks of failed jobs are then not sent) */
  webhooks: JobQueue | null;
  /** null outside ECS: failures are recorded under a process id and the runner never gives up */
  fleet: FleetControl | null;
  limit?: number;
  windowMinutes?: number;
  /** jobs failed in one give-up at most (the queue is read 10 at a time); the rest wait for the next */
  maxJobs?: number;
  /** told of each job it finished (JobAdmission.release), as the worker loop does; best effort */
  releaseSlot?: ((tenant: string, jobId: string) => Promise<void>) | null;
  clock?: () => number;
  logger: Logger;
}

export interface StartFailureOutcome {
  exitCode: number;
  gaveUp: boolean;
  /** failures in the window since the last successful start, this one included */
  recentFailures: number;
  failedJobs: number;
}

export class StartFailures {
  private readonly o: Required<Omit<StartFailureOptions, 'fleet' | 'webhooks' | 'releaseSlot'>> & Pick<StartFailureOptions, 'fleet' | 'webhooks' | 'releaseSlot'>;
  private readonly repo: JobRepository;
  private readonly aftermath: JobAftermath;

  constructor(options: StartFailureOptions) {
    this.o = {
      limit: DEFAULT_START_FAILURE_LIMIT,
      windowMinutes: DEFAULT_START_FAILURE_WINDOW_MINUTES,
      maxJobs: 1000,
      clock: Date.now,
      ...options,
    };
    if (!Number.isInteger(this.o.limit) || this.o.limit < 1 || this.o.limit > 100) {
      throw new RangeError(`StartFailures: limit=${this.o.limit}; allowed: 1..100`);
    }
    if (!Number.isInteger(this.o.windowMinutes) || this.o.windowMinutes < 1 || this.o.windowMinutes > 1440) {
      throw new RangeError(`StartFailures: windowMinutes=${this.o.windowMinutes}; allowed: 1..1440`);
    }
    this.repo = new JobRepository(this.o.store);
    this.aftermath = new JobAftermath({ repo: this.repo, webhookQueue: this.o.webhooks, releaseSlot: this.o.releaseSlot ?? null, logger: this.o.logger });
  }

  /** After a successful start: later failures count from here. Best effort (a lost record only makes giving up later). */
  async recordStart(): Promise<void> {
    try {
      const task = await this.taskId();
      await this.o.store.put(`${STARTS_PREFIX}${invTime(this.o.clock())}-${task}.json`, JSON.stringify({ at: iso(this.o.clock()), task }), 'application/json');
    } catch (err) {
      this.o.logger.warn('could not record the successful start', errorFields(err));
    }
  }

  /** Records the failure and decides: give up for the fleet, or leave the next attempt to ECS. */
  async handle(error: unknown): Promise<StartFailureOutcome> {
    const now = this.o.clock();
    const reason = publicReason(error);
    const log = this.o.logger;
    log.error('runner cannot start', { reason, ...errorFields(error) });
    const task = await this.taskId();
    await this.o.store.put(`${FAILURES_PREFIX}${invTime(now)}-${task}.json`, JSON.stringify({ at: iso(now), task, reason }), 'application/json');

    const recentFailures = await this.failuresSinceLastStart(now);
    const retry = (why: string): StartFailureOutcome => {
      log.warn(`start failure ${recentFailures} of ${this.o.limit} within ${this.o.windowMinutes} min; ${why}`, { reason });
      return { exitCode: RUNNER_START_FAILED_EXIT_CODE, gaveUp: false, recentFailures, failedJobs: 0 };
    };
    if (recentFailures < this.o.limit) return retry('ECS starts the next attempt');
    if (!this.o.fleet) return retry('not on ECS: nothing to scale to zero, no jobs failed');
    const running = await this.o.fleet.runningTasks();
    if (running > 1) return retry(`${running - 1} other task(s) of the service run, so the jobs have a runner`);

    const failedJobs = await this.failWaitingJobs(reason);
    await this.o.fleet.stopService();
    log.error('gave up starting: waiting jobs failed, the service set to 0 tasks', { failed_jobs: failedJobs, recent_failures: recentFailures, reason });
    return { exitCode: RUNNER_GAVE_UP_EXIT_CODE, gaveUp: true, recentFailures, failedJobs };
  }

  private async taskId(): Promise<string> {
    const id = this.o.fleet ? await this.o.fleet.taskId() : `process-${process.pid}`;
    return id.replace(/[^A-Za-z0-9_-]/g, '_').slice(0, 100) || 'unknown';
  }

  /** Failures newer than the window and than the newest successful start: two short listings. */
  private async failuresSinceLastStart(now: number): Promise<number> {
    const since = now - this.o.windowMinutes * 60_000;
    const [starts, failures] = await Promise.all([
      this.o.store.list(STARTS_PREFIX, { limit: 1 }),
      this.o.store.list(FAILURES_PREFIX, { limit: 100 }),
    ]);
    const lastStart = starts.keys.length ? timeOf(starts.keys[0]!, STARTS_PREFIX) : -Infinity;
    return failures.keys.map((k) => timeOf(k, FAILURES_PREFIX)).filter((t) => t >= since && t > lastStart).length;
  }

  private async failWaitingJobs(reason: string): Promise<number> {
    let failed = 0;
    while (failed < this.o.maxJobs) {
      const leases = await this.o.jobs.receive({ max: 10, waitSeconds: 1, visibilitySeconds: 60 });
      if (leases.length === 0) break;
      for (const lease of leases) {
        try {
          if (await this.failJob(lease, reason)) failed++;
        } catch (err) {
          // it comes back to the queue when the lease ends, for the next task or give-up
          this.o.logger.error('could not fail a waiting job; it stays queued', { message_id: lease.messageId, ...errorFields(err) });
        }
      }
    }
    return failed;
  }

  /** One waiting job, failed (or canceled, if it was) and acked. False when the message names no job. */
  private async failJob(lease: Lease, reason: string): Promise<boolean> {
    const msg = jobMessageOrNull(lease.body);
    const req = msg ? await this.repo.getRequest(msg.tenant, msg.job_id) : null;
    if (!msg || !req) {
      // poison: leave it to the redrive policy and the worker loop's dead-letter handling
      await this.o.jobs.release(lease, 0);
      return false;
    }
    const [status, cancel] = await Promise.all([this.repo.getStatus(msg.tenant, msg.job_id), this.repo.getCancel(msg.tenant, msg.job_id)]);
    if (status && isTerminal(status.status)) {
      await this.o.jobs.ack(lease);
      return false;
    }
    const problem: Problem = {
      type: RUNNER_UNAVAILABLE_PROBLEM,
      title: 'The job could not run',
      status: 503,
      detail: `The GPU runners of this deployment cannot start (${reason}). The operator has been notified; submit the job again later.`,
    };
    // this task holds the message's lease, so it is the status's only writer (docs/architecture.md)
    const final = endedStatus(status, lease, iso(this.o.clock()), cancel ? { status: 'canceled' } : { status: 'failed', error: problem });
    await this.aftermath.finish(req, final, () => this.o.jobs.ack(lease));
    return true;
  }
}

/**
 * The reason as users may read it: the error's first line, without the bucket's name, file
 * system paths or anything past 200 characters. The full error goes to the log.
 */
export function publicReason(error: unknown): string {
  const message = (error as { message?: unknown })?.message;
  const text = typeof message === 'string' && message.trim() !== '' ? message : String(error);
  return text
    .split('\n')[0]!
    .replace(/s3:\/\/[^\s/]+\//g, 's3://<bucket>/')
    // a path of the file system, not the key after s3://<bucket>
    .replace(/(?<![\w>.:/])(?:file:\/\/)?(?:\/[\w.@-]+){2,}/g, '<path>')
    .slice(0, 200);
}

const iso = (ms: number) => new Date(ms).toISOString();
const invTime = (ms: number) => String(MAX_INV_TIME - ms).padStart(15, '0');
const timeOf = (key: string, prefix: string) => MAX_INV_TIME - Number(key.slice(prefix.length, prefix.length + 15));

/** The two ECS calls giving up needs, on the SDK client. */
export function ecsApi(client: ECSClient) {
  return {
    async describeServices(cluster: string, service: string): Promise<number> {
      const out = await client.send(new DescribeServicesCommand({ cluster, services: [service] }));
      const found = out.services?.[0];
      if (!found) throw new Error(`ECS knows no service ${service} in cluster ${cluster} (${JSON.stringify(out.failures ?? [])})`);
      return found.runningCount ?? 0;
    },
    async setDesiredCount(cluster: string, service: string, count: number): Promise<void> {
      await client.send(new UpdateServiceCommand({ cluster, service, desiredCount: count }));
    },
  };
}

/**
 * The ECS side, from the task metadata endpoint (ECS_CONTAINER_METADATA_URI_V4/task: the
 * cluster, the task ARN, the service name with agent 1.63.1 or later) and the ECS API
 * (DescribeServices, UpdateService, granted on this cluster's services in infra/iam.ts).
 */
export function ecsFleetControl(opts: {
  metadataUri: string;
  fetch: typeof globalThis.fetch;
  ecs: { describeServices(cluster: string, service: string): Promise<number>; setDesiredCount(cluster: string, service: string, count: number): Promise<void> };
}): FleetControl {
  let task: Promise<{ cluster: string; taskArn: string; service: string }> | null = null;
  const metadata = () =>
    (task ??= (async () => {
      const res = await opts.fetch(`${opts.metadataUri}/task`, { signal: AbortSignal.timeout(5_000) });
      if (!res.ok) throw new Error(`task metadata ${opts.metadataUri}/task answered ${res.status}`);
      const body = (await res.json()) as { Cluster?: string; TaskARN?: string; ServiceName?: string };
      if (!body.Cluster || !body.TaskARN || !body.ServiceName) {
        throw new Error('task metadata has no Cluster, TaskARN or ServiceName (the ECS agent must be 1.63.1 or later, and the task part of a service)');
      }
      return { cluster: body.Cluster, taskArn: body.TaskARN, service: body.ServiceName };
    })());
  return {
    taskId: async () => (await metadata()).taskArn.split('/').at(-1)!,
    runningTasks: async () => {
      const m = await metadata();
      return opts.ecs.describeServices(m.cluster, m.service);
    },
    stopService: async () => {
      const m = await metadata();
      await opts.ecs.setDesiredCount(m.cluster, m.service, 0);
    },
  };
}
