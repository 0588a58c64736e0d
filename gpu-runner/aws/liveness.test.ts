/**
 * The liveness file and the health check script that reads it, run as the container runs it:
 * `node gpu-runner/aws/healthcheck.mjs`, judged by its exit code.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, stat, utimes } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LivenessFile } from './liveness.ts';

const script = fileURLToPath(new URL('./healthcheck.mjs', import.meta.url));
let dir: string;
let file: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'amdm-liveness-'));
  file = join(dir, 'alive');
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

function healthcheck(env: Record<string, string>): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [script], { env: { PATH: process.env.PATH ?? '', ...env } }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, output: stdout + stderr });
    });
  });
}

describe('LivenessFile + healthcheck.mjs', () => {
  it('is healthy while the runner beats and unhealthy once it stops', async () => {
    const liveness = new LivenessFile({ path: file, intervalMs: 50 });
    await liveness.start();
    const first = (await stat(file)).mtimeMs;
    await new Promise((r) => setTimeout(r, 150));
    expect((await stat(file)).mtimeMs).toBeGreaterThan(first);
    expect(await healthcheck({ AMDM_LIVENESS_FILE: file })).toMatchObject({ code: 0 });
    await liveness.stop();
    const after = await healthcheck({ AMDM_LIVENESS_FILE: file });
    expect(after.code).toBe(1);
    expect(after.output).toMatch(/no liveness file/);
  });

  it('calls a file older than the limit unhealthy', async () => {
    const liveness = new LivenessFile({ path: file });
    await liveness.beat();
    const old = new Date(Date.now() - 120_000);
    await utimes(file, old, old);
    const result = await healthcheck({ AMDM_LIVENESS_FILE: file, AMDM_LIVENESS_MAX_AGE_SECONDS: '60' });
    expect(result.code).toBe(1);
    expect(result.output).toMatch(/is 120 s old \(limit 60 s\)/);
    expect((await healthcheck({ AMDM_LIVENESS_FILE: file, AMDM_LIVENESS_MAX_AGE_SECONDS: '300' })).code).toBe(0);
  });

  it('refuses a nonsensical age limit instead of passing', async () => {
    await new LivenessFile({ path: file }).beat();
    const result = await healthcheck({ AMDM_LIVENESS_FILE: file, AMDM_LIVENESS_MAX_AGE_SECONDS: 'soon' });
    expect(result.code).toBe(1);
  });

  it('refuses to start twice and logs a write failure once', async () => {
    const lines: string[] = [];
    const liveness = new LivenessFile({ path: join(dir, 'missing-dir', 'alive'), log: (l) => lines.push(l) });
    await liveness.beat();
    await liveness.beat();
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/cannot write/);
    const ok = new LivenessFile({ path: file, intervalMs: 1000 });
    await ok.start();
    await expect(ok.start()).rejects.toThrow(/already started/);
    await ok.stop();
  });
});
