/**
 * Stopping with a job inside the sampler thread (onnxruntime running a UNet call) ends the
 * process cleanly: no "terminate called after throwing an instance of 'Napi::Error'", no
 * abort, and the job goes back to the queue once.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

function runScript(args: string[]): Promise<{ code: number | null; signal: NodeJS.Signals | null; out: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  return new Promise((r) => child.once('exit', (code, signal) => r({ code, signal, out })));
}

describe('stopping a sampler thread in the middle of a UNet call (real engine)', () => {
  it.each(['terminate', 'dispose'])('%s: the process exits 0 without a Napi::Error abort', async (how) => {
    const r = await runScript(['test/faults/stop-sampler-mid-run.ts', how]);
    expect(r.out).not.toContain('Napi::Error');
    expect({ code: r.code, signal: r.signal }, r.out).toEqual({ code: 0, signal: null });
    expect(r.out).toMatch(/"generate":"AbortError"/);
  });
});
