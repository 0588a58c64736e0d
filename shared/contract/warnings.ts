/**
 * Warnings: what the API did to a job that the client did not ask for, or settings that
 * make part of the job pointless. A job that runs differently from its request says so,
 * never silently: the record carries them (`warnings`), the CLI prints them, the
 * playground shows them. Shaping finds most of them, so the 202 answer already has them;
 * a prompt cut to the model's token limit is found by the runner, which tokenizes (the
 * edge has no tokenizer: on AWS it is a small web-standard bundle), so that warning
 * appears once the job runs.
 */
import { z } from 'zod';

export const WARNING_CODES = [
  /** a prompt (or negative prompt) longer than the model reads: the rest was dropped */
  'prompt_truncated',
  /** width or height rounded to the base model's multiple */
  'size_rounded',
  /** a size outside what the base model was trained at: expect repeated or broken objects */
  'size_untrained',
  /** the window aggregates no step: the auxiliary models cannot change the image */
  'window_empty',
  /** an auxiliary model whose aggregation weight is zero: it cannot change the image */
  'auxiliary_weight_zero',
  /** outputs.solo on a single-model job: there is nothing to compare it with */
  'solo_single_model',
] as const;
export type WarningCode = (typeof WARNING_CODES)[number];

export const JobWarning = z
  .object({
    code: z.enum(WARNING_CODES),
    /** the request field concerned, as a JSON path (as in errors) */
    field: z.string(),
    message: z.string(),
  })
  .meta({ id: 'JobWarning' });
export type JobWarning = z.output<typeof JobWarning>;
