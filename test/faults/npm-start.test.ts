/**
 * `npm start` itself (tools/start.ts) in a child process: it prints a working key, base
 * URL and curl; killed with -9 in the middle of a job and started again, the job still
 * completes, exactly once. The engine is the slow test double (AMDM_ENGINE_MODULE), so
 * the test does not depend on the model files and a job lasts long enough to be killed.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import type { JobRecord } from '../../shared/contract/index.ts';
import { freePort, until } from '../e2e/harness.ts';
import { SLOW_ENGINE } from './runner-process.ts';

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

function npmStart(env: Record<string, string>): { child: ChildProcess; output: () => string; banner: Promise<string> } {
  // what `npm start` runs, without npm in between (so the signal reaches the server itself)
  const child = spawn(process.execPath, ['--import', 'tsx', 'tools/start.ts'], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
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
  return { child, output: () => out, banner };
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
    const usage = (await (await api('/v1/usage')).json()) as { total: { jobs: number; unet_evals: number } };
    expect(usage.total).toEqual(expect.objectContaining({ jobs: 1, unet_evals: 60 }));

    second.child.kill('SIGTERM');
    const code = await new Promise<number | null>((r) => second.child.once('exit', (c) => r(c)));
    expect(code).toBe(0);
  });
});
