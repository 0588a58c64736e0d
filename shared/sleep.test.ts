import { afterEach, describe, expect, it, vi } from 'vitest';
import { sleep } from './sleep.ts';

afterEach(() => {
  vi.useRealTimers();
});

describe('sleep', () => {
  it('resolves after the time', async () => {
    vi.useFakeTimers();
    let done = false;
    const slept = sleep(1000).then(() => (done = true));
    await vi.advanceTimersByTimeAsync(999);
    expect(done).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    await slept;
    expect(done).toBe(true);
  });

  it('resolves at once on abort, and at once when already aborted, leaving no timer behind', async () => {
    vi.useFakeTimers();
    const stop = new AbortController();
    const slept = sleep(60_000, stop.signal);
    expect(vi.getTimerCount()).toBe(1);
    stop.abort();
    await slept;
    expect(vi.getTimerCount()).toBe(0);
    await sleep(60_000, stop.signal);
    expect(vi.getTimerCount()).toBe(0);
  });
});
