/**
 * The API client of the `amdm` commands that talk to a server (submit, status, cancel,
 * list, usage): where the server is and which key to use (--url/--key, else AMDM_URL and
 * AMDM_API_KEY), and the API's answers turned into the CLI's exit codes. The HTTP client
 * itself is the web-standard one the playground uses too (shared/client/client.ts).
 *
 * Exit codes: a request the API refuses as invalid (400, 422) is bad input, 2, with the
 * field it names; everything else that fails (auth, not found, conflict, network, 5xx) is
 * a run-time failure, 1.
 */
import { writeFile } from 'node:fs/promises';
import { ApiClient, ApiError, NetworkError, describeProblem, outputFileName, type JobRecord, type JobWarning } from '../shared/client/client.ts';
import { UsageError } from './command.ts';

export { ApiClient, ApiError, NetworkError, describeProblem, outputFileName };
export type { JobPreview, JobRecord, UsageReport } from '../shared/client/client.ts';

/** Where `npm start` serves the API unless told otherwise. */
export const DEFAULT_URL = 'http://127.0.0.1:8787';

/** The parseArgs options every server command takes. */
export const CONNECTION_OPTIONS = {
  url: { type: 'string' },
  key: { type: 'string' },
} as const;

export function connect(values: { url?: string | undefined; key?: string | undefined }, env: NodeJS.ProcessEnv = process.env): ApiClient {
  const url = values.url ?? env.AMDM_URL ?? DEFAULT_URL;
  const key = values.key ?? env.AMDM_API_KEY;
  if (!key) throw new UsageError('no API key: set AMDM_API_KEY or pass --key (a single node keeps its key in DATA_DIR/local-api-key)');
  try {
    return new ApiClient({ baseUrl: url, apiKey: key });
  } catch (err) {
    throw new UsageError(`${values.url !== undefined ? '--url' : 'AMDM_URL'}: ${(err as Error).message}`);
  }
}

/** An API or network failure as the one line and exit code the CLI reports. */
export function cliError(err: unknown, context?: string): Error {
  const prefix = context ? `${context}: ` : '';
  if (err instanceof ApiError) {
    const line = `${prefix}${describeProblem(err.problem)} (HTTP ${err.status})`;
    return err.status === 400 || err.status === 422 ? new UsageError(line) : new Error(line);
  }
  if (err instanceof NetworkError) return new Error(`${prefix}${err.message}`);
  return err as Error;
}

/** Run `f`, reporting API failures as CLI errors. */
export async function withApi<T>(f: () => Promise<T>, context?: string): Promise<T> {
  try {
    return await f();
  } catch (err) {
    throw cliError(err, context);
  }
}

/** Download a signed output URL (no API key: the URL is the credential) to `path`. */
export async function download(url: string, path: string): Promise<number> {
  let res: Response;
  try {
    res = await fetch(url);
  } catch (err) {
    throw new Error(`cannot download ${new URL(url).origin}${new URL(url).pathname}: ${(err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message}`);
  }
  if (!res.ok) throw new Error(`downloading ${new URL(url).pathname} failed: HTTP ${res.status}${res.status === 403 ? ' (the signed URL expired; run amdm status ID for fresh ones)' : ''}`);
  const bytes = new Uint8Array(await res.arrayBuffer());
  await writeFile(path, bytes);
  return bytes.byteLength;
}

/** "warning: sampler.width: width 100 was rounded to 96: ..." */
export function describeWarning(w: JobWarning): string {
  return `warning: ${w.field}: ${w.message}`;
}

/** "step 7/20 aggregating" or the queue reason: the state of a job in a few words. */
export function describeState(job: Pick<JobRecord, 'status' | 'progress' | 'queue'>): string {
  if (job.status === 'queued') return job.queue ? `queued${job.queue.position !== null ? ` (position ${job.queue.position})` : ''}: ${job.queue.reason}` : 'queued';
  const p = job.progress;
  if (!p) return job.status;
  const image = p.images > 1 ? ` image ${p.image}/${p.images}` : '';
  if (job.status === 'succeeded') return `succeeded: ${p.total} steps${p.images > 1 ? `, ${p.images} images` : ''}`;
  if (job.status !== 'running') return `${job.status} at step ${p.step}/${p.total}${image}`;
  const phase = p.phase === 'solo' ? `${p.model ?? 'a model'} alone` : p.phase.replace('_', ' ');
  return `running: step ${p.step}/${p.total} ${phase}${image}`;
}
