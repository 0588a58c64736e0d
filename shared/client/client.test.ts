/**
 * ApiClient.follow against a scripted fetch: it reconnects when a stream ends before the
 * job does, falls back to polling when streams keep failing or a proxy does not stream,
 * and gives up at once on answers that retrying cannot fix. Problems become ApiErrors that
 * name the field; a refused connection is a NetworkError. And the client bundles for the
 * browser without zod or node: modules.
 */
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { describe, expect, it } from 'vitest';
import { type JobRecord, TERMINAL } from '../contract/index.ts';
import { ApiClient, ApiError, NetworkError, TERMINAL_STATUSES, outputFileName } from './client.ts';

const job = (status: JobRecord['status'], step = 0): JobRecord =>
  ({ id: 'job_x', object: 'job', status, progress: status === 'queued' ? null : { step, total: 4, phase: 'base_only', image: 1, images: 1 } }) as unknown as JobRecord;

const sse = (...jobs: JobRecord[]) =>
  new Response(jobs.map((j) => `event: job\ndata: ${JSON.stringify(j)}\n\n`).join(''), { headers: { 'content-type': 'text/event-stream' } });
const json = (body: unknown, status = 200, type = 'application/json') => new Response(JSON.stringify(body), { status, headers: { 'content-type': type } });

/** A fetch that answers each call with the next scripted response, recording what was asked. */
function scripted(...answers: (Response | Error)[]) {
  const calls: { url: string; auth: string | null }[] = [];
  const f = (async (url: string | URL | Request, init?: RequestInit) => {
    calls.push({ url: String(url), auth: new Headers(init?.headers).get('authorization') });
    const next = answers.shift();
    if (!next) throw new Error(`unexpected call ${String(url)}`);
    if (next instanceof Error) throw next;
    return next;
  }) as typeof fetch;
  return { f, calls };
}

const client = (f: typeof fetch) => new ApiClient({ baseUrl: 'http://api.test/', apiKey: 'k', fetch: f });

describe('ApiClient.follow', () => {
  it('follows one stream to the finished job, sending the key in the header', async () => {
    const { f, calls } = scripted(sse(job('queued'), job('running', 2), job('succeeded', 4)));
    const seen: string[] = [];
    const done = await client(f).follow('job_x', { onUpdate: (j, via) => seen.push(`${j.status}/${via}`) });
    expect(done.status).toBe('succeeded');
    expect(seen).toEqual(['queued/stream', 'running/stream', 'succeeded/stream']);
    expect(calls).toEqual([{ url: 'http://api.test/v1/jobs/job_x/events', auth: 'Bearer k' }]);
  });

  it('reconnects when a stream ends before the job does', async () => {
    const { f, calls } = scripted(sse(job('running', 1)), sse(job('running', 3), job('canceled', 3)));
    expect((await client(f).follow('job_x', { pollMs: 1 })).status).toBe('canceled');
    expect(calls).toHaveLength(2);
  });

  it('polls GET /v1/jobs/{id} when a proxy does not stream, or when streams keep failing', async () => {
    const buffered = scripted(json(job('running')), json(job('running', 2)), json(job('succeeded', 4)));
    const vias: string[] = [];
    expect((await client(buffered.f).follow('job_x', { pollMs: 1, onUpdate: (_j, via) => vias.push(via) })).status).toBe('succeeded');
    expect(buffered.calls.map((c) => c.url)).toEqual(['http://api.test/v1/jobs/job_x/events', 'http://api.test/v1/jobs/job_x', 'http://api.test/v1/jobs/job_x']);
    expect(vias).toEqual(['poll', 'poll']);

    const failing = scripted(new TypeError('fetch failed'), json({ title: 'Internal server error', status: 500 }, 500, 'application/problem+json'), sse(), json(job('failed')));
    expect((await client(failing.f).follow('job_x', { pollMs: 1 })).status).toBe('failed');
    expect(failing.calls.at(-1)!.url).toBe('http://api.test/v1/jobs/job_x');
  });

  it('gives up at once on a 401 or 404, with the problem', async () => {
    const problem = { type: 'urn:amdm:problem:unauthorized', title: 'Unauthorized', status: 401, errors: [{ field: 'header Authorization', message: 'not a valid API key' }] };
    const { f, calls } = scripted(json(problem, 401, 'application/problem+json'));
    const err = await client(f).follow('job_x').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).status).toBe(401);
    expect((err as ApiError).fieldErrors).toEqual(problem.errors);
    expect((err as Error).message).toBe('header Authorization: not a valid API key');
    expect(calls).toHaveLength(1);
  });

  it('stops when aborted', async () => {
    const stop = new AbortController();
    const { f } = scripted(json(job('running')), json(job('running')), json(job('running')), json(job('running')));
    const following = client(f).follow('job_x', { pollMs: 5, signal: stop.signal, onUpdate: () => stop.abort() });
    await expect(following).rejects.toThrow();
  });
});

describe('ApiClient errors', () => {
  it('a body that is not a problem still becomes one naming the status; a refused connection is a NetworkError', async () => {
    const html = scripted(new Response('<html>Bad gateway</html>', { status: 502, statusText: 'Bad Gateway' }));
    const err = (await client(html.f).models().catch((e: unknown) => e)) as ApiError;
    expect(err).toBeInstanceOf(ApiError);
    expect(err.problem).toMatchObject({ status: 502, title: 'Bad Gateway', detail: '<html>Bad gateway</html>' });
    const refused = scripted(Object.assign(new TypeError('fetch failed'), { cause: { code: 'ECONNREFUSED' } }));
    const net = await client(refused.f).models().catch((e: unknown) => e);
    expect(net).toBeInstanceOf(NetworkError);
    expect((net as Error).message).toBe('cannot reach http://api.test: ECONNREFUSED');
  });

  it('refuses a base URL that is not http(s)', () => {
    expect(() => new ApiClient({ baseUrl: 'ftp://x', apiKey: 'k' })).toThrow(/http or https/);
    expect(() => new ApiClient({ baseUrl: 'not a url', apiKey: 'k' })).toThrow(/absolute http\(s\) URL/);
  });
});

describe('outputFileName', () => {
  it('names each output by what it is; a model alone carries its model, so three solo images do not share one name', () => {
    const o = (source: string, model?: string, kind: 'image' | 'latent' = 'image', index = 0) => outputFileName('job_x', { source, ...(model ? { model } : {}), index, kind });
    expect(o('aggregated', 'shapes-base')).toBe('job_x-aggregated-0.png');
    expect(o('shapes-layout', 'shapes-layout')).toBe('job_x-shapes-layout-0.png');
    expect([o('solo', 'shapes-base'), o('solo', 'shapes-layout', 'image', 1)]).toEqual(['job_x-solo-shapes-base-0.png', 'job_x-solo-shapes-layout-1.png']);
    expect(o('aggregated', 'shapes-base', 'latent')).toBe('job_x-aggregated-0.f32');
  });
});

describe('the client in a browser bundle', () => {
  it('keeps the terminal statuses in step with the contract it does not import', () => {
    expect([...TERMINAL_STATUSES]).toEqual([...TERMINAL]);
  });

  it('bundles for the browser from its own files and the shared sleep alone: no zod, no node: modules', async () => {
    const root = fileURLToPath(new URL('../..', import.meta.url));
    const out = await build({ absWorkingDir: root, entryPoints: ['shared/client/client.ts'], bundle: true, platform: 'browser', format: 'esm', write: false, metafile: true, logLevel: 'silent' });
    expect(Object.keys(out.metafile.inputs).sort()).toEqual(['shared/client/client.ts', 'shared/client/event-stream.ts', 'shared/sleep.ts']);
  });
});
