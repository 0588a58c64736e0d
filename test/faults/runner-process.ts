/**
 * Runs gpu-runner/main.ts in a child process over a DATA_DIR, with the slow test-double
 * engine, so fault tests can SIGKILL a real runner in the middle of a job.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const SLOW_ENGINE = new URL('./slow-engine.ts', import.meta.url).href;
export const CRASHING_ENGINE = new URL('./crashing-engine.ts', import.meta.url).href;

export interface RunnerProcess {
  child: ChildProcess;
  /** everything it printed, for failure messages */
  output(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

export function startRunnerProcess(env: Record<string, string>): RunnerProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', 'gpu-runner/main.ts'], {
    cwd: ROOT,
    env: { ...process.env, RUNNER_WARM_UP: '0', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.once('exit', (code, signal) => r({ code, signal })));
  return {
    child,
    output: () => out,
    exited,
    async kill(signal: NodeJS.Signals = 'SIGKILL') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited;
    },
  };
}
