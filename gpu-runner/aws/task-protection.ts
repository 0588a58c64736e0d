/**
 * ECS task scale-in protection, so scaling in never kills a task in the middle of a job.
 *
 * When Application Auto Scaling lowers the runner service's desired count (or scales it to
 * zero), ECS picks tasks to stop; a task with protection on is skipped. The runner turns
 * protection on when it takes a job and off when it goes idle, through the ECS agent's
 * endpoint in the task (`$ECS_AGENT_URI/task-protection/v1/state`), which calls
 * ecs:UpdateTaskProtection with the task role (granted in infra/iam.ts).
 *
 * Protection has an expiry (ECS caps it at 48 h), so a runner that dies without clearing it
 * cannot pin the task forever; the runner renews it on its heartbeat while the job runs.
 *
 * Outside ECS (local runs, tests) there is no agent: the class becomes a no-op and says so
 * once. The composition root reads ECS_AGENT_URI and passes it in; this module reads no
 * environment.
 */

/** ECS accepts 1 minute to 2880 minutes (48 hours). */
export const MIN_EXPIRES_IN_MINUTES = 1;
export const MAX_EXPIRES_IN_MINUTES = 2880;
export const DEFAULT_EXPIRES_IN_MINUTES = 60;

export interface TaskProtectionOptions {
  /** The value of ECS_AGENT_URI, or undefined when not running on ECS. */
  agentUri: string | undefined;
  fetch: typeof globalThis.fetch;
  log: (line: string) => void;
  /** Per-request timeout; the agent is local, so a slow answer means something is wrong. */
  timeoutMs?: number;
}

export interface ProtectionState {
  protectionEnabled: boolean;
  /** ISO time the protection lapses, when on. */
  expirationDate: string | null;
  taskArn: string | null;
}

export class TaskProtectionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TaskProtectionError';
  }
}

export class TaskProtection {
  private readonly endpoint: string | null;
  private readonly fetchFn: typeof globalThis.fetch;
  private readonly log: (line: string) => void;
  private readonly timeoutMs: number;
  /** Requests run one at a time, in call order, so the last call decides the final state. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(opts: TaskProtectionOptions) {
    this.fetchFn = opts.fetch;
    this.log = opts.log;
    this.timeoutMs = opts.timeoutMs ?? 5_000;
    if (!Number.isInteger(this.timeoutMs) || this.timeoutMs <= 0) {
      throw new RangeError(`TaskProtection: timeoutMs=${opts.timeoutMs}; allowed: a whole number of milliseconds > 0`);
    }
    const uri = opts.agentUri?.trim();
    if (!uri) {
      this.endpoint = null;
      this.log('task protection: ECS_AGENT_URI is not set (not running on ECS); scale-in protection is off');
      return;
    }
    if (!URL.canParse(uri)) {
      throw new TypeError(`TaskProtection: agentUri "${uri}" is not a URL; expected the ECS_AGENT_URI of the task`);
    }
    this.endpoint = `${uri.replace(/\/+$/, '')}/task-protection/v1/state`;
  }

  /** False when there is no ECS agent to talk to; protect/clear then do nothing. */
  get enabled(): boolean {
    return this.endpoint !== null;
  }

  /** Protects this task from scale-in for `expiresInMinutes` (renew before it lapses). */
  protect(expiresInMinutes = DEFAULT_EXPIRES_IN_MINUTES): Promise<ProtectionState | null> {
    if (
      !Number.isInteger(expiresInMinutes) ||
      expiresInMinutes < MIN_EXPIRES_IN_MINUTES ||
      expiresInMinutes > MAX_EXPIRES_IN_MINUTES
    ) {
      return Promise.reject(
        new RangeError(
          `TaskProtection.protect: expiresInMinutes=${expiresInMinutes}; allowed: ${MIN_EXPIRES_IN_MINUTES}..${MAX_EXPIRES_IN_MINUTES}`,
        ),
      );
    }
    return this.enqueue({ ProtectionEnabled: true, ExpiresInMinutes: expiresInMinutes });
  }

  /** Lets ECS stop this task again; call when the runner goes idle or drains. */
  clear(): Promise<ProtectionState | null> {
    return this.enqueue({ ProtectionEnabled: false });
  }

  private enqueue(body: { ProtectionEnabled: boolean; ExpiresInMinutes?: number }): Promise<ProtectionState | null> {
    if (this.endpoint === null) return Promise.resolve(null);
    const endpoint = this.endpoint;
    const run = this.queue.then(
      () => this.put(endpoint, body),
      () => this.put(endpoint, body),
    );
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async put(endpoint: string, body: object): Promise<ProtectionState> {
    let response: Response;
    try {
      response = await this.fetchFn(endpoint, {
        method: 'PUT',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (cause) {
      throw new TaskProtectionError(`task protection: PUT ${endpoint} failed: ${describe(cause)}`);
    }
    const text = await response.text();
    let parsed: any;
    try {
      parsed = text === '' ? {} : JSON.parse(text);
    } catch {
      throw new TaskProtectionError(`task protection: agent answered ${response.status} with a body that is not JSON: ${text.slice(0, 200)}`);
    }
    // The agent reports ECS API failures either as an HTTP error with {error: {Code, Message}}
    // or as 200 with {failure: {Arn, Reason, Detail}}.
    if (parsed?.error) {
      throw new TaskProtectionError(
        `task protection: agent answered ${response.status}: ${parsed.error.Code ?? 'error'}: ${parsed.error.Message ?? text}`,
      );
    }
    if (parsed?.failure) {
      throw new TaskProtectionError(
        `task protection: ECS refused for ${parsed.failure.Arn ?? 'this task'}: ${parsed.failure.Reason ?? 'unknown reason'}${
          parsed.failure.Detail ? ` (${parsed.failure.Detail})` : ''
        }`,
      );
    }
    if (!response.ok || !parsed?.protection) {
      throw new TaskProtectionError(`task protection: agent answered ${response.status}: ${text.slice(0, 200)}`);
    }
    return {
      protectionEnabled: parsed.protection.ProtectionEnabled === true,
      expirationDate: parsed.protection.ExpirationDate ?? null,
      taskArn: parsed.protection.TaskArn ?? null,
    };
  }
}

function describe(error: unknown): string {
  if (error instanceof Error) {
    return error.name === 'TimeoutError' ? 'no answer before the timeout' : error.message;
  }
  return String(error);
}
