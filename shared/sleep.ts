/**
 * Waits `ms` milliseconds, or until `signal` aborts, whichever comes first; resolves either
 * way, so a loop that sleeps between attempts checks the signal itself (`signal.aborted`,
 * `throwIfAborted()`) where it decides to stop. Web-standard only: the browser's client uses it.
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}
