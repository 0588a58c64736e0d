/**
 * Stage parameters: every knob that differs between stages, read in one place.
 *
 * They come from the environment of `sst deploy` (SST loads `.env` and `.env.<stage>` before
 * it evaluates sst.config.ts, so `.env.prod` is the natural home for a stage's values). This
 * module never touches `process.env` itself: sst.config.ts passes the environment in, which
 * keeps the parsing pure and testable.
 *
 * A bad value fails the deploy before any resource is planned, with a message naming the
 * variable, the value and what is allowed.
 */
import { ORIGIN_READ_TIMEOUT_SECONDS, PREFER_WAIT_MARGIN_SECONDS } from './edge-timing.ts';

export interface StageParams {
  /** EC2 instance types for the GPU Auto Scaling group, in order of preference. */
  readonly gpuInstanceTypes: readonly string[];
  /** Upper bound for runner tasks (and GPU instances: one task per GPU). */
  readonly maxTasks: number;
  /**
   * Runner tasks kept running with an empty queue (a warm pool): jobs skip the cold start, at
   * the price of that many GPU instances around the clock (docs/deploy.md). 0 scales to zero.
   */
  readonly minTasks: number;
  /**
   * Minutes runner tasks may be wanted with none running before the fleet is declared unable
   * to start (alarm, notification, scale to zero; infra/alerts.ts).
   */
  readonly startTimeoutMinutes: number;
  /** An email address subscribed to the stage's alerts (it must confirm the subscription). */
  readonly alertEmail: string | null;
  /** An existing SNS topic that also receives the stage's alerts (chat, paging), by ARN. */
  readonly alertTopicArn: string | null;
  /** Minutes the job queue must stay empty (visible + in flight == 0) before scaling to zero. */
  readonly idleMinutes: number;
  /** Days before objects tagged as job outputs expire from the bucket. */
  readonly retentionDays: number;
  /** Target tracking value: queued + in-flight jobs per running task. */
  readonly targetBacklogPerTask: number;
  /** Tag of the runner image in the stack's ECR repository. */
  readonly runnerImageTag: string;
  /** Origins besides the Router's own URL allowed to GET/PUT the bucket from a browser. */
  readonly extraCorsOrigins: readonly string[];
  /** The model catalog bundled into the edge Lambda (shared/model-catalog.ts), relative to the project root. */
  readonly modelCatalog: string;
  /**
   * The longest `Prefer: wait` the edge honours; longer ones are applied as this. It must end
   * before CloudFront's origin read timeout (infra/edge-timing.ts).
   */
  readonly maxWaitSeconds: number;
  /** Requests one client address may make in 5 minutes before the Router's WAF blocks it with a 429. */
  readonly wafRateLimitPerIp: number;
}

/** The variable that sets each parameter: the names an operator types into `.env.<stage>`. */
export const PARAM_ENV = {
  gpuInstanceTypes: 'AMDM_GPU_INSTANCE_TYPES',
  maxTasks: 'AMDM_MAX_TASKS',
  minTasks: 'AMDM_MIN_TASKS',
  startTimeoutMinutes: 'AMDM_START_TIMEOUT_MINUTES',
  alertEmail: 'AMDM_ALERT_EMAIL',
  alertTopicArn: 'AMDM_ALERT_TOPIC_ARN',
  idleMinutes: 'AMDM_IDLE_MINUTES',
  retentionDays: 'AMDM_RETENTION_DAYS',
  targetBacklogPerTask: 'AMDM_TARGET_BACKLOG_PER_TASK',
  runnerImageTag: 'AMDM_RUNNER_IMAGE_TAG',
  extraCorsOrigins: 'AMDM_CORS_ORIGINS',
  modelCatalog: 'AMDM_MODEL_CATALOG',
  maxWaitSeconds: 'AMDM_MAX_WAIT_SECONDS',
  wafRateLimitPerIp: 'AMDM_WAF_RATE_PER_IP',
} as const satisfies Record<keyof StageParams, string>;

/** The image tag until one is pushed: no such image exists, and the fleet is held at zero (infra/autoscaling.ts). */
export const BOOTSTRAP_IMAGE_TAG = 'bootstrap';

export const DEFAULT_PARAMS: StageParams = {
  // Single-GPU x86_64 types that the ECS GPU AMI supports; several types raise the chance that
  // one of them has capacity when a scale-out from zero needs an instance right now.
  gpuInstanceTypes: ['g5.xlarge', 'g6.xlarge', 'g4dn.xlarge'],
  maxTasks: 2,
  minTasks: 0,
  // A task counts as running once its image is pulled and its container started, so this
  // covers instance launch, boot, agent registration and the image pull (docs/deploy.md puts
  // them at a few minutes each); each minute beyond a real start is paid GPU time.
  startTimeoutMinutes: 20,
  alertEmail: null,
  alertTopicArn: null,
  idleMinutes: 15,
  retentionDays: 7,
  targetBacklogPerTask: 3,
  // Placeholder until the first image is pushed (docs/deploy.md): the service sits at zero
  // tasks until a job arrives, so a first deploy without an image costs nothing and breaks
  // nothing but a job that would fail to start.
  runnerImageTag: BOOTSTRAP_IMAGE_TAG,
  extraCorsOrigins: [],
  // written by `npm run models:catalog` beside the packages' checksums.json
  modelCatalog: 'models/catalog.json',
  // 50 + PREFER_WAIT_MARGIN_SECONDS (8) < CloudFront's 60 s origin read timeout
  maxWaitSeconds: 50,
  // The API lets one tenant make 20 requests a second (6000 in WAF's 5-minute window): a client
  // with one key on one address never meets the WAF before the API's own 429.
  wafRateLimitPerIp: 6000,
};

/**
 * Instance families with NVIDIA GPUs on x86_64, which is what the ECS GPU-optimized AMI runs
 * on. Graviton GPU types (g5g) need an arm64 AMI and image, so they are refused here.
 */
const GPU_FAMILIES = new Set([
  'g4dn', 'g5', 'g6', 'g6e', 'gr6', 'p3', 'p3dn', 'p4d', 'p4de', 'p5', 'p5e', 'p5en',
]);

/** A typo guard: a GPU fleet above this size is a decision to make in code review, not in an env file. */
const MAX_TASKS_LIMIT = 100;
/** S3 lifecycle expiry is in whole days; ten years is far beyond any sane job retention. */
const MAX_RETENTION_DAYS = 3650;
/** A CloudWatch alarm evaluates at most 1440 one-minute periods (24 h). */
const MAX_IDLE_MINUTES = 1440;

export class StageParamError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StageParamError';
  }
}

export function readStageParams(env: Readonly<Record<string, string | undefined>>): StageParams {
  const value = (key: keyof StageParams): string | undefined => {
    const raw = env[PARAM_ENV[key]];
    return raw === undefined || raw.trim() === '' ? undefined : raw.trim();
  };

  const maxTasks = parseInteger('maxTasks', value('maxTasks'), 1, MAX_TASKS_LIMIT);
  const minTasks = parseInteger('minTasks', value('minTasks'), 0, MAX_TASKS_LIMIT);
  if (minTasks > maxTasks) {
    throw new StageParamError(`${PARAM_ENV.minTasks}=${minTasks} is above ${PARAM_ENV.maxTasks}=${maxTasks}; allowed: 0..${maxTasks}`);
  }
  return {
    gpuInstanceTypes: parseInstanceTypes(value('gpuInstanceTypes')),
    maxTasks,
    minTasks,
    startTimeoutMinutes: parseInteger('startTimeoutMinutes', value('startTimeoutMinutes'), 10, MAX_IDLE_MINUTES),
    alertEmail: parseEmail(value('alertEmail')),
    alertTopicArn: parseTopicArn(value('alertTopicArn')),
    idleMinutes: parseInteger('idleMinutes', value('idleMinutes'), 1, MAX_IDLE_MINUTES),
    retentionDays: parseInteger('retentionDays', value('retentionDays'), 1, MAX_RETENTION_DAYS),
    targetBacklogPerTask: parseInteger('targetBacklogPerTask', value('targetBacklogPerTask'), 1, 1000),
    runnerImageTag: parseImageTag(value('runnerImageTag')),
    extraCorsOrigins: parseOrigins(value('extraCorsOrigins')),
    modelCatalog: parseCatalogPath(value('modelCatalog')),
    maxWaitSeconds: parseInteger('maxWaitSeconds', value('maxWaitSeconds'), 1, ORIGIN_READ_TIMEOUT_SECONDS - PREFER_WAIT_MARGIN_SECONDS - 1),
    // WAF's rate-based rules allow 10 to 2,000,000,000 requests per window
    wafRateLimitPerIp: parseInteger('wafRateLimitPerIp', value('wafRateLimitPerIp'), 10, 2_000_000_000),
  };
}

function parseEmail(raw: string | undefined): string | null {
  if (raw === undefined) return null;
  // SNS sends a confirmation mail; a typo would only ever show as alerts that never arrive
  if (!/^[^\s@,]+@[^\s@,]+\.[^\s@,]+$/.test(raw)) {
    throw new StageParamError(`${PARAM_ENV.alertEmail}="${raw}" is not an email address; allowed: one address, e.g. ops@example.com`);
  }
  return raw;
}

function parseTopicArn(raw: string | undefined): string | null {
  if (raw === undefined) return null;
  if (!/^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?$/.test(raw)) {
    throw new StageParamError(`${PARAM_ENV.alertTopicArn}="${raw}" is not an SNS topic ARN; allowed: arn:aws:sns:REGION:ACCOUNT:NAME`);
  }
  return raw;
}

function parseCatalogPath(raw: string | undefined): string {
  if (raw === undefined) return DEFAULT_PARAMS.modelCatalog;
  if (raw.startsWith('/')) {
    // SST copies it into the bundle from the project root (copyFiles), which takes relative paths only
    throw new StageParamError(`${PARAM_ENV.modelCatalog}="${raw}" is absolute; allowed: a path relative to the project root, e.g. models/catalog.json`);
  }
  if (!raw.endsWith('.json') || /[\0\n]/.test(raw)) {
    throw new StageParamError(`${PARAM_ENV.modelCatalog}="${raw}" is not a path to a .json file; allowed: a file written by \`npm run models:catalog\``);
  }
  return raw;
}

function parseInteger(key: keyof StageParams, raw: string | undefined, min: number, max: number): number {
  if (raw === undefined) return DEFAULT_PARAMS[key] as number;
  if (!/^\d+$/.test(raw)) {
    throw new StageParamError(`${PARAM_ENV[key]}="${raw}" is not a whole number; allowed: ${min}..${max}`);
  }
  const n = Number(raw);
  if (n < min || n > max) {
    throw new StageParamError(`${PARAM_ENV[key]}=${n} is out of range; allowed: ${min}..${max}`);
  }
  return n;
}

function parseInstanceTypes(raw: string | undefined): readonly string[] {
  if (raw === undefined) return DEFAULT_PARAMS.gpuInstanceTypes;
  const types = raw.split(',').map((t) => t.trim()).filter((t) => t !== '');
  if (types.length === 0) {
    throw new StageParamError(`${PARAM_ENV.gpuInstanceTypes}="${raw}" names no instance type`);
  }
  // A mixed instances policy takes at most 40 overrides.
  if (types.length > 40) {
    throw new StageParamError(`${PARAM_ENV.gpuInstanceTypes} lists ${types.length} types; allowed: at most 40`);
  }
  for (const type of types) {
    const match = /^([a-z][a-z0-9]*)\.([a-z0-9]+)$/.exec(type);
    if (!match || !GPU_FAMILIES.has(match[1]!)) {
      throw new StageParamError(
        `${PARAM_ENV.gpuInstanceTypes} contains "${type}", which is not an x86_64 NVIDIA GPU instance type; ` +
          `allowed families: ${[...GPU_FAMILIES].join(', ')} (for example g5.xlarge)`,
      );
    }
  }
  if (new Set(types).size !== types.length) {
    throw new StageParamError(`${PARAM_ENV.gpuInstanceTypes}="${raw}" lists a type twice`);
  }
  return types;
}

function parseImageTag(raw: string | undefined): string {
  if (raw === undefined) return DEFAULT_PARAMS.runnerImageTag;
  // The ECR repository has immutable tags, so a moving tag like "latest" could never be updated
  // and would only hide which build runs.
  if (raw === 'latest') {
    throw new StageParamError(`${PARAM_ENV.runnerImageTag}=latest is refused; use an immutable tag such as the git commit`);
  }
  if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/.test(raw)) {
    throw new StageParamError(
      `${PARAM_ENV.runnerImageTag}="${raw}" is not a valid image tag; allowed: letters, digits, _ . - (max 128, not starting with . or -)`,
    );
  }
  return raw;
}

function parseOrigins(raw: string | undefined): readonly string[] {
  if (raw === undefined) return DEFAULT_PARAMS.extraCorsOrigins;
  return raw
    .split(',')
    .map((o) => o.trim())
    .filter((o) => o !== '')
    .map((origin) => {
      const url = URL.canParse(origin) ? new URL(origin) : null;
      if (url === null) {
        throw new StageParamError(`${PARAM_ENV.extraCorsOrigins} contains "${origin}", which is not a URL; allowed: https://host[:port] or http://localhost[:port]`);
      }
      const local = url.hostname === 'localhost' || url.hostname === '127.0.0.1';
      // An origin is scheme://host[:port] exactly: browsers send no path, so one here would
      // never match and the rule would silently allow nothing.
      if (url.origin !== origin || (url.protocol !== 'https:' && !(local && url.protocol === 'http:'))) {
        throw new StageParamError(
          `${PARAM_ENV.extraCorsOrigins} contains "${origin}"; allowed: https://host[:port] or http://localhost[:port], without a path or trailing slash`,
        );
      }
      return origin;
    });
}
