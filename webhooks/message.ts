/**
 * The webhook outbox message: the runner enqueues one on the durable 'webhooks' queue when
 * a job reaches a terminal state; the dispatcher delivers it. It carries identifiers only:
 * the dispatcher reads the job when it delivers, so each attempt carries fresh output URLs.
 */
import { z } from 'zod';
import type { JobStatus } from '../shared/contract/index.ts';

export const WebhookMessage = z
  .object({
    v: z.literal(1),
    job_id: z.string().min(1).max(100),
    tenant: z.string().min(1).max(100),
    type: z.enum(['job.succeeded', 'job.failed', 'job.canceled']),
  })
  .strict();
export type WebhookMessage = z.output<typeof WebhookMessage>;

export function webhookEventType(status: JobStatus): WebhookMessage['type'] {
  if (status === 'succeeded') return 'job.succeeded';
  if (status === 'failed') return 'job.failed';
  if (status === 'canceled') return 'job.canceled';
  throw new Error(`no webhook event for a ${status} job`);
}
