/**
 * Runs a conformance fixture script (`tsx SCRIPT DIR ...ARGS`) as a separate process, as the
 * adapters' multi-process and kill -9 tests need. With `killAfterLines`, SIGKILLs it once it
 * printed that many lines. Resolves with the whole lines it printed (a line cut short by the
 * kill is not an acknowledgement), the time it exited and the signal that ended it.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const REPO = fileURLToPath(new URL('../../', import.meta.url));

export interface ChildResult {
  lines: string[];
  exitedAt: number;
  signal: string | null;
}

export function runChild(script: string, dir: string, args: string[], killAfterLines = Infinity): Promise<ChildResult> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, ['--import', 'tsx', script, dir, ...args], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    proc.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      if (out.split('\n').length > killAfterLines) proc.kill('SIGKILL');
    });
    proc.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
    proc.on('error', reject);
    proc.on('exit', (code, signal) => {
      if (code !== 0 && signal !== 'SIGKILL') reject(new Error(`child ${args.join(' ')} exited ${code}: ${err}`));
      else resolve({ lines: out.split('\n').slice(0, out.endsWith('\n') ? undefined : -1).filter(Boolean), exitedAt: Date.now(), signal });
    });
  });
}
