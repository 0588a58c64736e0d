/**
 * Queues: jobs for the GPU runners and the webhook outbox, each with its own dead-letter queue.
 *
 * Job lease (visibility timeout): 120 s. The runner extends its lease on a heartbeat while a
 * job runs, every half lease (gpu-runner/job-lease.ts), so a job never has to fit in the
 * timeout; the timeout only has to exceed the longest gap between two extensions. That gap is
 * the 60 s heartbeat interval plus whatever delays one beat: the sampler runs in worker
 * threads, so a UNet step (well under a second on a GPU, seconds on a CPU fallback) only
 * delays a beat if the main thread is starved, plus SQS API retries. 120 s leaves a full
 * minute for that, and keeps the redelivery delay after a crashed runner at two minutes.
 * The runner is given the same number (RUNNER_VISIBILITY_SECONDS, infra/gpu.ts) and passes it
 * on every receive and extend; this queue default only matters to a consumer that does not.
 */
import type { Input } from '@pulumi/pulumi';
import { JOB_MAX_RECEIVE_COUNT, JOB_MESSAGE_RETENTION_SECONDS, WEBHOOK_MAX_RECEIVE_COUNT, WEBHOOK_VISIBILITY_TIMEOUT_SECONDS, JOB_VISIBILITY_TIMEOUT_SECONDS } from './queue-settings.ts';

export { JOB_MAX_RECEIVE_COUNT, JOB_VISIBILITY_TIMEOUT_SECONDS, WEBHOOK_MAX_RECEIVE_COUNT, WEBHOOK_VISIBILITY_TIMEOUT_SECONDS };


const DAY = 24 * 60 * 60;
/**
 * Dead letters keep the SQS maximum, 14 days. A standard queue's DLQ counts retention from the
 * original enqueue, so it must be longer than the source queue's for a message to survive at all.
 */
const DEAD_LETTER_RETENTION_SECONDS = 14 * DAY;
/** Jobs and webhooks: 4 days (the SQS default) covers a weekend of the fleet being broken. */
const SOURCE_RETENTION_SECONDS = JOB_MESSAGE_RETENTION_SECONDS;

export function deadLetterArgs() {
  return {
    transform: {
      queue: { messageRetentionSeconds: DEAD_LETTER_RETENTION_SECONDS },
    },
  };
}

export function jobQueueArgs(deadLetterArn: Input<string>) {
  return {
    visibilityTimeout: `${JOB_VISIBILITY_TIMEOUT_SECONDS} seconds` as const,
    dlq: { queue: deadLetterArn, retry: JOB_MAX_RECEIVE_COUNT },
    transform: {
      queue: {
        messageRetentionSeconds: SOURCE_RETENTION_SECONDS,
        // Long polling by default: fewer empty receives, which SQS bills as requests.
        receiveWaitTimeSeconds: 20,
      },
    },
  };
}

export function webhookQueueArgs(deadLetterArn: Input<string>) {
  return {
    visibilityTimeout: `${WEBHOOK_VISIBILITY_TIMEOUT_SECONDS} seconds` as const,
    dlq: { queue: deadLetterArn, retry: WEBHOOK_MAX_RECEIVE_COUNT },
    transform: {
      queue: {
        messageRetentionSeconds: SOURCE_RETENTION_SECONDS,
        receiveWaitTimeSeconds: 20,
      },
    },
  };
}

export function createQueues() {
  const jobDeadLetters = new sst.aws.Queue('JobDeadLetters', deadLetterArgs());
  const jobs = new sst.aws.Queue('JobQueue', jobQueueArgs(jobDeadLetters.arn));
  const webhookDeadLetters = new sst.aws.Queue('WebhookDeadLetters', deadLetterArgs());
  const webhooks = new sst.aws.Queue('WebhookQueue', webhookQueueArgs(webhookDeadLetters.arn));
  return { jobs, jobDeadLetters, webhooks, webhookDeadLetters };
}
