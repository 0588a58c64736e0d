/**
 * The client commands of `amdm` against the local stack (the slow test-double engine, so
 * no model files are needed and a job runs long enough to be canceled): submit --wait
 * writes the PNG, status/list/usage/cancel report what the API says, and every failure is
 * one line with the right exit code: 2 for a bad request (the field named), 1 otherwise.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { decode } from 'fast-png';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { main } from '../cli/main.ts';
import type { JobRecord } from '../shared/contract/index.ts';
import { freePort, startStack, until, type Stack } from './e2e/harness.ts';
import { SLOW_ENGINE } from './faults/runner-process.ts';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
let stack: Stack;
let dir: string;

beforeAll(async () => {
  delete process.env.AMDM_URL;
  delete process.env.AMDM_API_KEY;
  stack = await startStack({ engine: { module: SLOW_ENGINE, options: { stepMs: 15 } } });
  dir = mkdtempSync(join(tmpdir(), 'amdm-cli-'));
});
afterAll(async () => {
  await stack?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** `amdm ARGS` in process, as bin/amdm.js runs it: the exit code and what it printed. */
async function amdm(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  vi.spyOn(process.stdout, 'write').mockImplementation((s) => ((out += String(s)), true));
  vi.spyOn(process.stderr, 'write').mockImplementation((s) => ((err += String(s)), true));
  try {
    return { code: await main(args), out, err };
  } finally {
    vi.restoreAllMocks();
  }
}

const conn = () => ['--url', stack.url, '--key', stack.key];
function requestFile(name: string, body: unknown): string {
  const path = join(dir, name);
  writeFileSync(path, typeof body === 'string' ? body : JSON.stringify(body));
  return path;
}

describe('amdm submit', () => {
  it('--wait --out DIR follows the job to the end and writes its PNG', async () => {
    const file = requestFile('one.json', { models: [{ id: 'shapes-base', role: 'base', prompt: 'a red circle' }], sampler: { steps: 40, seed: 5, width: 48, height: 32 } });
    const outDir = join(dir, 'out');
    const r = await amdm('submit', file, '--wait', '--out', outDir, ...conn());
    expect(r.code, r.err).toBe(0);
    const written = r.out.trim().split('\n');
    expect(written).toHaveLength(1);
    expect(written[0]).toMatch(/job_[a-z0-9]+-aggregated-0\.png$/);
    expect(readdirSync(outDir)).toEqual([written[0]!.split('/').at(-1)]);
    const png = decode(readFileSync(written[0]!));
    expect([png.width, png.height]).toEqual([48, 32]);
    // no terminal: a line per change of state, ending with the finished job
    expect(r.err).toMatch(/running/);
    expect(r.err).toMatch(/succeeded: seed 5/);
  });

  it('without --wait prints the job id at once; status, list and usage show it', async () => {
    const file = requestFile('two.json', { models: [{ id: 'shapes-base', role: 'base', prompt: 'a blue square' }], sampler: { steps: 4, seed: 9 } });
    const r = await amdm('submit', file, ...conn());
    expect(r.code, r.err).toBe(0);
    const id = r.out.trim();
    expect(id).toMatch(/^job_[a-z0-9]+$/);
    await until(async () => ((await (await stack.api(`/v1/jobs/${id}`)).json()) as JobRecord).status === 'succeeded', 'the job to finish');

    const status = await amdm('status', id, ...conn());
    expect(status.code).toBe(0);
    expect(status.out).toMatch(new RegExp(`^${id} succeeded: 4 steps`));
    expect(status.out).toMatch(/aggregated-0 {2}http:\/\/127\.0\.0\.1:\d+\/v1\/blobs\//);
    const json = await amdm('status', id, '--json', ...conn());
    expect((JSON.parse(json.out) as JobRecord).spec.sampler.seed).toBe(9);

    const list = await amdm('list', '--limit', '5', ...conn());
    expect(list.code).toBe(0);
    expect(list.out.split('\n')[0]).toMatch(/^ID\s+CREATED\s+MODELS\s+STATE$/);
    expect(list.out).toContain(id);

    const usage = await amdm('usage', '--json', ...conn());
    expect(usage.code).toBe(0);
    expect(JSON.parse(usage.out).total.jobs).toBeGreaterThanOrEqual(1);
  });

  it('cancel stops a running job, and a submit --wait on it then exits 1', async () => {
    const file = requestFile('long.json', { models: [{ id: 'shapes-base', role: 'base', prompt: 'x' }], sampler: { steps: 100, seed: 1 }, outputs: { images: 4 } });
    // the waiting submit in its own process, as a user would run it while cancelling from another shell
    const child = spawn(process.execPath, ['bin/amdm.js', 'submit', file, '--wait', ...conn()], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    const id = await until(async () => /^(job_[a-z0-9]+) running/m.exec(err)?.[1], 'the waiting submit to report the job running', 30_000);
    const c = await amdm('cancel', id, ...conn());
    expect(c.code, c.err).toBe(0);
    expect(c.out).toMatch(new RegExp(`^${id} (canceled|cancel requested)`));
    expect(await exited, err).toBe(1);
    expect(out).toBe('');
    expect(err.trimEnd().split('\n').at(-1)).toBe(`amdm submit: job ${id} was canceled`);
    const status = await amdm('status', id, ...conn());
    expect(status.out).toMatch(new RegExp(`^${id} canceled at step \\d+/100`));
  });
});

describe('amdm help', () => {
  it('every command answers --help and -h with its own usage line, exit 0, and runs nothing', async () => {
    for (const name of ['generate', 'tokenize', 'keys', 'aws', 'submit', 'status', 'cancel', 'list', 'usage']) {
      for (const flag of ['--help', '-h']) {
        const r = await amdm(name, flag);
        expect(r.code, `${name} ${flag}`).toBe(0);
        expect(r.out).toMatch(new RegExp(`^usage: amdm ${name} `));
        expect(r.err).toBe('');
      }
    }
    const all = await amdm('--help');
    expect(all.code).toBe(0);
    expect(all.out.split('\n').filter((l) => l.startsWith('  ')).length).toBe(9);
  });
});

describe('amdm client failures: one line, exit 2 for bad input, 1 otherwise', () => {
  it('a request file the contract refuses is one line naming the field, exit 2, and nothing is sent (bin/amdm.js)', async () => {
    const file = requestFile('bad.json', { models: [{ id: 'shapes-base', role: 'base', prompt: 'x', grounding: [{ phrase: 'a', box: [0.6, 0.1, 0.2, 0.5] }] }] });
    const before = ((await (await stack.api('/v1/jobs?limit=100')).json()) as { data: unknown[] }).data.length;
    const r = spawnSync(process.execPath, ['bin/amdm.js', 'submit', file, '--wait', ...conn()], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, AMDM_DEBUG: '' } });
    expect(r.status, r.stderr).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^amdm submit: .*bad\.json: models\[0\]\.grounding\[0\]\.box: box must have x0 < x1/);
    const after = ((await (await stack.api('/v1/jobs?limit=100')).json()) as { data: unknown[] }).data.length;
    expect(after).toBe(before);
  });

  it('a misspelt field is reported as the unknown field with what is allowed, not as the field it left missing', async () => {
    // "promt" leaves "prompt" missing: zod reports the missing one first ("expected string, received undefined")
    const misspelt = await amdm('submit', requestFile('misspelt.json', { models: [{ id: 'shapes-base', role: 'base', promt: 'a red circle' }] }), ...conn());
    expect(misspelt.code).toBe(2);
    expect(misspelt.err).toMatch(/^amdm submit: .*misspelt\.json: models\[0\]\.promt: unknown field "promt"; allowed: id, role, prompt, .* \(and 1 more\)\n$/);
    // the same order from the server, for clients that send without checking first
    const res = await stack.api('/v1/jobs', { body: { models: [{ id: 'shapes-base', role: 'base', promt: 'x' }], sampler: { seeed: 1 } } });
    expect(res.status).toBe(422);
    const fields = ((await res.json()) as { errors: { field: string }[] }).errors.map((e) => e.field);
    expect(fields).toEqual(['models[0].promt', 'sampler.seeed', 'models[0].prompt']);
  });

  it('a request the server refuses (unknown model) is exit 2 naming the field; a file that is not JSON too', async () => {
    const unknown = await amdm('submit', requestFile('unknown.json', { models: [{ id: 'no-such-model', role: 'base', prompt: 'x' }] }), ...conn());
    expect(unknown.code).toBe(2);
    expect(unknown.err).toMatch(/^amdm submit: .*unknown\.json: models\[0\]\.id: unknown model "no-such-model"; installed: shapes-base.* \(HTTP 422\)\n$/);
    const notJson = await amdm('submit', requestFile('broken.json', '{"models": ['), ...conn());
    expect(notJson.code).toBe(2);
    expect(notJson.err).toMatch(/broken\.json: not valid JSON/);
  });

  it('no key, a wrong key, an unknown job and an unreachable server', async () => {
    const noKey = await amdm('list', '--url', stack.url);
    expect(noKey.code).toBe(2);
    expect(noKey.err).toMatch(/^amdm list: no API key: set AMDM_API_KEY or pass --key/);
    const badKey = await amdm('list', '--url', stack.url, '--key', 'amdm_aaaaaaaaaaaa_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb');
    expect(badKey.code).toBe(1);
    expect(badKey.err).toMatch(/header Authorization: not a valid API key \(HTTP 401\)\n$/);
    const missing = await amdm('status', 'job_00000000000000000000000000', ...conn());
    expect(missing.code).toBe(1);
    expect(missing.err).toMatch(/\(HTTP 404\)\n$/);
    const closed = await freePort();
    const down = await amdm('usage', '--url', `http://127.0.0.1:${closed}`, '--key', stack.key);
    expect(down.code).toBe(1);
    expect(down.err).toBe(`amdm usage: cannot reach http://127.0.0.1:${closed}: ECONNREFUSED\n`);
    const badDay = await amdm('usage', '--from', '2025-02-30', ...conn());
    expect(badDay.code).toBe(2);
    expect(badDay.err).toMatch(/query\.from: must be a real calendar date/);
    // only --from, more than a year ago: the line names the option given, not the `to` the server filled in
    const longAgo = await amdm('usage', '--from', '2000-01-01', ...conn());
    expect(longAgo.code).toBe(2);
    expect(longAgo.err).toMatch(/^amdm usage: query\.from: at most 366 days before `to` \(not given: today, \d{4}-\d\d-\d\d\); give `to` as well \(HTTP 400\)\n$/);
    for (const r of [noKey, badKey, missing, down, badDay, longAgo]) expect(r.err.trimEnd().split('\n')).toHaveLength(1);
  });
});
