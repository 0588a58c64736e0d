/**
 * Read a job request file (the exact body POST /v1/jobs takes) and validate it with the
 * shared contract. Problems become one line naming the file and the field, exit code 2.
 */
import { readFile } from 'node:fs/promises';
import { JobRequest, zodFieldErrors } from '../shared/contract/index.ts';
import { UsageError } from './command.ts';

export async function readRequestFile(path: string): Promise<JobRequest> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new UsageError(`${path}: cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new UsageError(`${path}: not valid JSON: ${(err as Error).message}`);
  }
  const parsed = JobRequest.safeParse(json);
  if (!parsed.success) {
    const errors = zodFieldErrors(parsed.error.issues, JobRequest, '(body)');
    const first = errors[0]!;
    const more = errors.length > 1 ? ` (and ${errors.length - 1} more)` : '';
    throw new UsageError(`${path}: ${first.field}: ${first.message}${more}`);
  }
  return parsed.data;
}
