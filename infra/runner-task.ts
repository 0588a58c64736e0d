/**
 * The runner's container in the task definition: what gpu-runner/main.ts is told, chosen to
 * agree with the rest of the stack. Pure (no Pulumi, no SST globals), so infra/gpu.ts builds
 * the task definition from it and tools/runner-app-check.ts runs the runner with the same
 * environment.
 */
import { DEFAULT_START_FAILURE_LIMIT, DEFAULT_START_FAILURE_WINDOW_MINUTES } from '../gpu-runner/aws/start-failure.ts';
import { JOB_MAX_RECEIVE_COUNT, JOB_VISIBILITY_TIMEOUT_SECONDS } from './queue-settings.ts';

export const RUNNER_CONTAINER = 'runner';
/** Rewritten every 10 s by the runner (gpu-runner/aws/liveness.ts), read by the health check. */
export const RUNNER_LIVENESS_FILE = '/tmp/amdm-runner.alive';
/**
 * The container health check: healthy while the liveness file is fresh (gpu-runner/aws/
 * healthcheck.mjs, 60 s by default). An unhealthy essential container makes ECS replace the
 * task; the start period (ECS's maximum, 300 s) covers the model sync and warm-up, during
 * which the runner already beats (it starts the liveness file first).
 */
export const RUNNER_HEALTH_CHECK = {
  command: ['CMD', 'node', 'gpu-runner/aws/healthcheck.mjs'],
  interval: 30,
  timeout: 5,
  retries: 3,
  startPeriod: 300,
} as const;
/** The runner's model cache inside the container (filled from s3://BUCKET/models/ at start). */
export const RUNNER_MODELS_DIR = '/var/cache/amdm/models';
/**
 * Where that cache lives: a folder of the instance, bind-mounted into every runner task, so a
 * task restarted on the same instance (a crash, a deploy, another GPU of a multi-GPU type)
 * finds the models it verified and downloads only what changed. On the root EBS volume, not
 * the instance store: not every GPU type has one, it would have to be formatted at each boot,
 * and the instance (and so the cache) lives only until scale-in either way.
 */
export const MODEL_CACHE_HOST_PATH = '/var/cache/amdm/models';
export const MODEL_CACHE_VOLUME = 'model-cache';
/** The runner image's unprivileged user (gpu-runner/Dockerfile, useradd --uid), who must own the host cache. */
export const RUNNER_UID = 10001;
/**
 * Time between SIGTERM and SIGKILL. 120 s is the maximum on Fargate only; on EC2 the task
 * definition's stopTimeout has no documented maximum and overrides the agent's
 * ECS_CONTAINER_STOP_TIMEOUT (ContainerDefinition.stopTimeout, ECS API reference). The runner
 * drains in that window: a running job may finish (RUNNER_GRACE_SECONDS), otherwise it is
 * released to the queue and its task protection cleared, and the 60 s between the two leave
 * room for that release and the cleanup before the kill.
 *
 * Why minutes rather than seconds: what stops a task that holds a job is rarely scale-in (the
 * job's task protection keeps scale-in and deployments away) but an instance going away or a
 * removal. A job released at SIGTERM starts over on another task, so its GPU time is spent
 * twice; nine minutes cover the jobs this API runs (the job timeout is an hour, an SD1.5 job
 * takes seconds to a few minutes), and an idle task exits at once whatever the timeout.
 */
export const RUNNER_STOP_TIMEOUT_SECONDS = 600;
export const RUNNER_GRACE_SECONDS = 540;
/**
 * Soft memory reservation for the runner container. Every default instance type has 16 GiB;
 * 12 GiB leaves room for the ECS agent and the OS, and being soft lets the runner use more
 * when a bigger type has it.
 */
export const RUNNER_MEMORY_RESERVATION_MIB = 12 * 1024;
/**
 * The runner container. Its settings are the variables gpu-runner/main.ts reads, chosen to
 * agree with the rest of the stack: the lease matches the queue's visibility timeout, the
 * receive limit matches the redrive policy, the grace period ends before ECS's SIGKILL.
 */
export function runnerContainerDefinition(args: {
  image: string;
  environment: Record<string, string>;
  /** env var name -> SSM parameter ARN */
  secrets: Record<string, string>;
  logGroupName: string;
  region: string;
}) {
  const environment: Record<string, string> = {
    // S3 and SQS from the SST links, model sync, task protection (gpu-runner/main.ts)
    AMDM_MODE: 'aws',
    AMDM_LIVENESS_FILE: RUNNER_LIVENESS_FILE,
    AWS_REGION: args.region,
    ORT_PROVIDER: 'cuda',
    AMDM_MODELS_DIR: RUNNER_MODELS_DIR,
    RUNNER_VISIBILITY_SECONDS: String(JOB_VISIBILITY_TIMEOUT_SECONDS),
    AMDM_MAX_RECEIVES: String(JOB_MAX_RECEIVE_COUNT),
    RUNNER_GRACE_SECONDS: String(RUNNER_GRACE_SECONDS),
    // when a runner that cannot start gives up for the fleet (gpu-runner/aws/start-failure.ts)
    AMDM_START_FAILURE_LIMIT: String(DEFAULT_START_FAILURE_LIMIT),
    AMDM_START_FAILURE_WINDOW_MINUTES: String(DEFAULT_START_FAILURE_WINDOW_MINUTES),
    ...args.environment,
  };
  const byName = ([a]: [string, string], [b]: [string, string]) => (a < b ? -1 : a > b ? 1 : 0);
  return {
    name: RUNNER_CONTAINER,
    image: args.image,
    essential: true,
    memoryReservation: RUNNER_MEMORY_RESERVATION_MIB,
    // One whole GPU per task: ECS places the task only on an instance with a free GPU and
    // exposes exactly that device to the container.
    resourceRequirements: [{ type: 'GPU', value: '1' }],
    environment: Object.entries(environment)
      .sort(byName)
      .map(([name, value]) => ({ name, value })),
    secrets: Object.entries(args.secrets)
      .sort(byName)
      .map(([name, valueFrom]) => ({ name, valueFrom })),
    stopTimeout: RUNNER_STOP_TIMEOUT_SECONDS,
    // the instance's model cache (see MODEL_CACHE_HOST_PATH), shared by the tasks it runs
    mountPoints: [{ sourceVolume: MODEL_CACHE_VOLUME, containerPath: RUNNER_MODELS_DIR, readOnly: false }],
    // An init process forwards SIGTERM to node and reaps the sampler's children.
    linuxParameters: { initProcessEnabled: true },
    // A wedged runner (its event loop stuck) stops rewriting the liveness file; ECS then
    // replaces the task, and its leases come back to the queue when they expire.
    healthCheck: { ...RUNNER_HEALTH_CHECK, command: [...RUNNER_HEALTH_CHECK.command] },
    logConfiguration: {
      logDriver: 'awslogs',
      options: {
        'awslogs-group': args.logGroupName,
        'awslogs-region': args.region,
        'awslogs-stream-prefix': 'runner',
        // Never block the runner on a slow log API; drop lines rather than stall sampling.
        mode: 'non-blocking',
        'max-buffer-size': '4m',
      },
    },
  };
}

