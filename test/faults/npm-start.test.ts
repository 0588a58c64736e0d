/**
 * `npm start` itself (single-node/start.ts) in a child process: it prints a working key, base
 * URL and curl; killed with -9 in the middle of a job and started again, the job still
 * completes, exactly once. The engine is the slow test double (AMDM_ENGINE_MODULE), so
 * the test does not depend on the model files and a job lasts long enough to be killed.
 *
 * A start that hangs (a warm-up that never finishes; an event loop blocked after the models
 * loaded, the symptom of a start that never served) ends with a log line naming the phase
 * and a non-zero exit, instead of a silent process.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import type { JobRecord } from '../../shared/contract/index.ts';
import { freePort, until } from '../e2e/harness.ts';
import { SLOW_ENGINE } from './runner-process.ts';

const HANGING_WARM_UP_ENGINE = new URL('./hanging-warm-up-engine.ts', import.meta.url).href;
const BLOCK_AFTER_MODELS = fileURLToPath(new URL('./block-event-loop-after-models.mjs', import.meta.url));

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const children: ChildProcess[] = [];
const dirs: string[] = [];
afterEach(async () => {
  for (const c of children.splice(0)) {
    if (c.exitCode === null && c.signalCode === null) {
      c.kill('SIGKILL');
      await new Promise((r) => c.once('exit', r));
    }
  }
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function npmStart(
  env: Record<string, string>,
  preload: string[] = [],
): { child: ChildProcess; output: () => string; banner: Promise<string>; exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }> } {
  // what `npm start` runs, without npm in between (so the signal reaches the server itself)
  const args = ['--import', 'tsx', ...preload.flatMap((p) => ['--import', p]), 'single-node/start.ts'];
  // running servers announce themselves for `amdm keys`: in the test's own folder, not the user's
  const runtime = { AMDM_RUNTIME_DIR: join(env.DATA_DIR ?? tmpdir(), 'runtime') };
  const child = spawn(process.execPath, args, { cwd: ROOT, env: { ...process.env, ...runtime, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.once('exit', (code, signal) => r({ code, signal })));
  children.push(child);
  let out = '';
  const banner = new Promise<string>((resolve, reject) => {
    const onData = (d: Buffer) => {
      out += d;
      if (out.includes('Stop: Ctrl-C')) resolve(out);
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', (d) => (out += d));
    child.once('exit', (code) => reject(new Error(`npm start exited with ${code}:\n${out}`)));
  });
  banner.catch(() => {}); // a test of a start that fails awaits `exited` instead
  return { child, output: () => out, banner, exited };
}

/** The JSON log lines of an output, parsed (stdout and stderr interleave: a torn line is skipped). */
function logLines(out: string): Record<string, unknown>[] {
  return out.split('\n').flatMap((l) => {
    try {
      return l.startsWith('{') ? [JSON.parse(l) as Record<string, unknown>] : [];
    } catch {
      return [];
    }
  });
}

/** The exit of a start that should end by itself; null if it is still running after `ms`. */
function exitWithin(started: ReturnType<typeof npmStart>, ms: number) {
  return Promise.race([started.exited, new Promise<null>((r) => setTimeout(() => r(null), ms))]);
}

describe('npm start', () => {
  it('prints a working key and curl; after kill -9 mid-job and a restart the job completes exactly once', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'amdm-start-'));
    dirs.push(dataDir);
    const port = await freePort();
    const env = { DATA_DIR: dataDir, PORT: String(port), AMDM_ENGINE_MODULE: SLOW_ENGINE, AMDM_ENGINE_OPTIONS: '{"stepMs":40}', RUNNER_VISIBILITY_SECONDS: '2' };

    const first = npmStart(env);
    const banner = await first.banner;
    const key = /API key\s+(amdm_\S+)/.exec(banner)?.[1];
    expect(key, banner).toBeDefined();
    expect(banner).toContain(`http://127.0.0.1:${port}`);
    expect(banner).toMatch(/curl -sS http:\/\/127\.0\.0\.1:\d+\/v1\/jobs -H "Authorization: Bearer amdm_\S+" .*--data @\S*examples\/single\.json/);
    expect(readFileSync(join(dataDir, 'local-api-key'), 'utf8').trim()).toBe(key);
    // DATA_DIR is not ./data: the key command says where the keys must go
    expect(banner).toContain(`npx amdm keys create --tenant NAME --data-dir ${dataDir}`);
    // ...and without it, from another folder, `amdm keys create` finds the running server's folder
    const { DATA_DIR: _unset, ...cliEnv } = process.env;
    const made = spawnSync(process.execPath, [join(ROOT, 'bin/amdm.js'), 'keys', 'create', '--tenant', 'bob'], {
      cwd: tmpdir(),
      env: { ...cliEnv, AMDM_RUNTIME_DIR: join(dataDir, 'runtime') },
      encoding: 'utf8',
    });
    expect(made.status, made.stderr).toBe(0);
    expect(made.stderr).toContain(`using the data folder of the server running at http://127.0.0.1:${port}: ${dataDir}`);
    const bobs = await fetch(`http://127.0.0.1:${port}/v1/jobs`, { headers: { authorization: `Bearer ${made.stdout.trim()}` } });
    expect(bobs.status).toBe(200);
    // every phase of the start says when it is done, and how long it took
    const phases = logLines(banner).filter((l) => l.component === 'start' && l.msg === 'phase done');
    expect(phases.map((l) => l.phase)).toEqual(['secrets', 'adapters', 'models', 'listen', 'local key']);
    for (const p of phases) expect(p.ms).toEqual(expect.any(Number));
    expect(phases.find((p) => p.phase === 'listen')?.url).toBe(`http://127.0.0.1:${port}`);
    expect(logLines(banner)).toContainEqual(expect.objectContaining({ component: 'start', msg: 'started', url: `http://127.0.0.1:${port}` }));

    // the printed curl's request, with a longer job so that it is still running when killed
    const api = (path: string, body?: unknown) =>
      fetch(`http://127.0.0.1:${port}${path}`, {
        method: body === undefined ? 'GET' : 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      });
    const example = JSON.parse(readFileSync(join(ROOT, 'examples/single.json'), 'utf8')) as { sampler?: object };
    const res = await api('/v1/jobs', { ...example, sampler: { ...example.sampler, steps: 60 } });
    expect(res.status).toBe(202);
    const { id } = (await res.json()) as JobRecord;
    await until(async () => (((await (await api(`/v1/jobs/${id}`)).json()) as JobRecord).progress?.step ?? 0) >= 5, 'the job to be mid-way', 60_000);
    first.child.kill('SIGKILL');
    await new Promise((r) => first.child.once('exit', r));

    const second = npmStart(env);
    const again = await second.banner;
    expect(again).toContain(key!); // the same local key, not a new one
    const done = await until(async () => {
      const r = (await (await api(`/v1/jobs/${id}`)).json()) as JobRecord;
      return ['succeeded', 'failed', 'canceled'].includes(r.status) ? r : null;
    }, 'the job to complete after the restart', 60_000);
    expect(done.status, second.output()).toBe('succeeded');
    // the runner writes the usage record just after the terminal status (gpu-runner/job-aftermath.ts)
    const usage = await until(async () => {
      const u = (await (await api('/v1/usage')).json()) as { total: { jobs: number; unet_evals: number } };
      return u.total.jobs > 0 ? u : null;
    }, 'the usage record of the job');
    expect(usage.total).toEqual(expect.objectContaining({ jobs: 1, unet_evals: 60 }));

    second.child.kill('SIGTERM');
    const code = await new Promise<number | null>((r) => second.child.once('exit', (c) => r(c)));
    expect(code).toBe(0);
  });

  it('real engine: a second signal mid-job stops at once, exits cleanly and requeues the job once; one Ctrl-C delivered twice only drains', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'amdm-start-'));
    dirs.push(dataDir);
    const port = await freePort();
    // the built-in models on onnxruntime: the sampler thread is inside a native UNet call most of the time
    const env = { DATA_DIR: dataDir, PORT: String(port) };
    const first = npmStart(env);
    const key = /API key\s+(amdm_\S+)/.exec(await first.banner)![1]!;
    const api = (path: string, body?: unknown) =>
      fetch(`http://127.0.0.1:${port}${path}`, {
        method: body === undefined ? 'GET' : 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      });
    const job = { models: [{ id: 'shapes-base', role: 'base', prompt: 'a red circle' }], sampler: { steps: 100, seed: 3, width: 64, height: 64 } };
    const submit = async () => ((await (await api('/v1/jobs', job)).json()) as JobRecord).id;
    const midway = (id: string) => until(async () => (((await (await api(`/v1/jobs/${id}`)).json()) as JobRecord).progress?.step ?? 0) >= 3, 'the job to be mid-way', 60_000);

    const id = await submit();
    await midway(id);
    first.child.kill('SIGINT');
    await new Promise((r) => setTimeout(r, 700)); // a second keypress, not the same one relayed
    first.child.kill('SIGINT');
    const exit = await first.exited;
    expect(first.output()).not.toMatch(/Napi::Error|terminate called/);
    expect(exit, first.output()).toEqual({ code: 1, signal: null });
    const firstLines = logLines(first.output());
    expect(firstLines.filter((l) => l.msg === 'released a running job for another runner')).toHaveLength(1);

    // a fresh start runs it again, as the second attempt, and bills it once
    const second = npmStart(env);
    await second.banner;
    const done = await until(async () => {
      const r = (await (await api(`/v1/jobs/${id}`)).json()) as JobRecord;
      return ['succeeded', 'failed', 'canceled'].includes(r.status) ? r : null;
    }, 'the job to complete after the restart', 120_000);
    expect(done.status, second.output()).toBe('succeeded');
    const runs = logLines(second.output()).filter((l) => l.msg === 'running' && l.job_id === id);
    expect(runs.map((l) => l.attempt)).toEqual([2]);
    const usage = await until(async () => {
      const u = (await (await api('/v1/usage')).json()) as { total: { jobs: number; unet_evals: number } };
      return u.total.jobs > 0 ? u : null;
    }, 'the usage record of the job');
    expect(usage.total).toEqual(expect.objectContaining({ jobs: 1, unet_evals: 100 }));

    // one Ctrl-C reaches the server from the terminal's process group and again from npm/tsx,
    // a few ms apart: that is one request to drain, so the running job finishes
    const id2 = await submit();
    await midway(id2);
    second.child.kill('SIGINT');
    second.child.kill('SIGINT');
    const drained = await second.exited;
    expect(drained, second.output()).toEqual({ code: 0, signal: null });
    const secondLines = logLines(second.output());
    expect(secondLines).toContainEqual(expect.objectContaining({ msg: 'succeeded', job_id: id2 }));
    expect(secondLines.filter((l) => l.msg === 'stopping now; running jobs go back to the queue')).toEqual([]);
    expect(second.output()).not.toMatch(/Napi::Error|terminate called/);
  });

  it('a warm-up that never finishes: the watchdog names the phase and exits 1', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'amdm-start-'));
    dirs.push(dataDir);
    const env = { DATA_DIR: dataDir, PORT: String(await freePort()), AMDM_ENGINE_MODULE: HANGING_WARM_UP_ENGINE, AMDM_START_TIMEOUT_SECONDS: '3' };
    const start = npmStart(env);
    const exit = await exitWithin(start, 45_000);
    expect(exit, `still running:\n${start.output()}`).not.toBeNull();
    expect(exit!.code, start.output()).toBe(1);
    expect(logLines(start.output())).toContainEqual(
      expect.objectContaining({ level: 'error', component: 'start', msg: 'start-up did not finish in time; exiting', phase: 'models', timeout_seconds: 3, done: ['secrets', 'adapters'] }),
    );
    expect(start.output()).not.toContain('Stop: Ctrl-C');
  });

  it('an event loop blocked after the models loaded: the watchdog says so and kills the process', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'amdm-start-'));
    dirs.push(dataDir);
    // long enough for the slow engine's threads to start on a busy machine; the block comes after
    const env = { DATA_DIR: dataDir, PORT: String(await freePort()), AMDM_ENGINE_MODULE: SLOW_ENGINE, AMDM_START_TIMEOUT_SECONDS: '8' };
    const start = npmStart(env, [BLOCK_AFTER_MODELS]);
    const exit = await exitWithin(start, 50_000);
    expect(exit, `still running:\n${start.output()}`).not.toBeNull();
    expect(exit!.signal, start.output()).toBe('SIGKILL');
    const lines = logLines(start.output());
    expect(lines).toContainEqual(expect.objectContaining({ component: 'runner', msg: 'models loaded' }));
    expect(lines).toContainEqual(expect.objectContaining({ level: 'error', component: 'start', msg: 'start-up did not finish in time; exiting', phase: 'models' }));
    expect(lines).toContainEqual(expect.objectContaining({ level: 'error', component: 'start', msg: expect.stringMatching(/event loop is blocked; killing the process/), phase: 'models' }));
  });
});
