/** installSignalHandlers (gpu-runner/main.ts): the first signal drains, a second forces, one keypress counts once. */
import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { installSignalHandlers } from './main.ts';

const quiet = { info() {}, warn() {}, error() {} };

function setup() {
  let now = 0;
  const calls: string[] = [];
  const exits: number[] = [];
  let drained!: () => void;
  const source = new EventEmitter();
  installSignalHandlers(
    {
      close: () => {
        calls.push('close');
        return new Promise<void>((r) => (drained = r));
      },
      abortNow: async () => {
        calls.push('abortNow');
      },
    },
    quiet,
    (code) => exits.push(code),
    { source: source as unknown as NodeJS.Process, now: () => now },
  );
  return { calls, exits, signal: (sig: string, at: number) => ((now = at), source.emit(sig, sig)), drain: () => drained() };
}

describe('installSignalHandlers', () => {
  it('the same Ctrl-C delivered again a few ms later (process group, npm, tsx) is one request to drain', async () => {
    const s = setup();
    s.signal('SIGINT', 1000);
    s.signal('SIGINT', 1037);
    s.signal('SIGINT', 1046);
    expect(s.calls).toEqual(['close']);
    s.drain();
    await new Promise((r) => setImmediate(r));
    expect(s.exits).toEqual([0]);
  });

  it('a second signal later stops at once and exits 1', async () => {
    const s = setup();
    s.signal('SIGTERM', 1000);
    s.signal('SIGINT', 2500);
    expect(s.calls).toEqual(['close', 'abortNow']);
    await new Promise((r) => setImmediate(r));
    expect(s.exits).toEqual([1]);
  });
});
