/**
 * A finished job's outputs -> the rows of the result, each image labelled for what it is.
 * Pure, so the wording is tested without a browser. Three kinds of image, easy to confuse:
 * the aggregated image; each model alone (outputs.solo: run by itself from the same noise);
 * and each model's own latent inside the aggregated run (outputs.per_model: pulled toward
 * the others during the window, so not the model alone).
 */
import { type JobRecord, outputFileName } from '../../shared/client/client.ts';

export type Output = JobRecord['outputs'][number];

export interface OutputRow {
  title: string;
  hint?: string;
  /** the side, in CSS pixels, the row's images are scaled up to at most */
  cssPx: number;
  claims: (o: Output) => boolean;
  /** what the image is, in full (its alt text) */
  label: (o: Output, job: JobRecord) => string;
  /** under the image, where the row's title already says the rest */
  caption: (o: Output, job: JobRecord) => string;
}

/** The model an output comes from; records from before `model` existed name it in `source`. */
export function outputModel(o: Output, job: Pick<JobRecord, 'spec'>): string {
  if (o.model) return o.model;
  if (o.source === 'aggregated') return job.spec.models[0]!.id;
  return o.source === 'solo' ? 'a model' : o.source;
}

/** The rows, in order: each output belongs to the first row that claims it. */
export const OUTPUT_ROWS: readonly OutputRow[] = [
  {
    title: 'Aggregated',
    cssPx: 256,
    claims: (o) => o.source === 'aggregated',
    label: (_, job) => `Aggregated (base ${job.spec.models[0]!.id})`,
    caption: (_, job) => `Aggregated (base ${job.spec.models[0]!.id})`,
  },
  {
    title: 'Each model alone',
    hint: 'Every model run by itself from the same initial noise, without the others: what it makes alone. Set beside the aggregated image, it shows what aggregating changed.',
    cssPx: 160,
    claims: (o) => o.source === 'solo',
    label: (o, job) => `${outputModel(o, job)} alone`,
    caption: (o, job) => `${outputModel(o, job)} alone`,
  },
  {
    title: 'Each model’s own latent inside the aggregated run',
    hint: 'Every model’s trajectory in this same run, decoded: during the window each was pulled toward the others, so these are not the models run alone.',
    cssPx: 160,
    claims: (o) => o.source !== 'aggregated' && o.source !== 'solo',
    label: (o) => `${o.source}: its own latent inside the aggregated run`,
    caption: (o) => o.source,
  },
];

/** The job's images by row, each row in the job's model order, then by image index; empty rows left out. */
export function outputRows(job: JobRecord): { row: OutputRow; outputs: Output[] }[] {
  const left = job.outputs.filter((o) => o.kind === 'image');
  const order = (o: Output) => job.spec.models.findIndex((m) => m.id === outputModel(o, job));
  return OUTPUT_ROWS.flatMap((row) => {
    const mine = left.filter((o) => row.claims(o)).sort((a, b) => order(a) - order(b) || a.index - b.index);
    for (const o of mine) left.splice(left.indexOf(o), 1);
    return mine.length > 0 ? [{ row, outputs: mine }] : [];
  });
}

/** The name a download of the output is saved under: the CLI's, so both agree. */
export const downloadName = (job: Pick<JobRecord, 'id'>, o: Output): string => outputFileName(job.id, o);
