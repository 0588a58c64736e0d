// Fault injection for the start-up watchdog test, preloaded with --import: once the runner
// has logged "models loaded", the main thread's event loop is blocked for good, as a
// synchronous wait that never returns would block it. The symptom reported in the issue:
// the models loaded, and then the port never answered and nothing more was logged.
// Plain JavaScript: worker threads inherit the preload, and they have no TypeScript loader.
import { isMainThread } from 'node:worker_threads';

if (isMainThread) {
  const write = process.stdout.write.bind(process.stdout);
  process.stdout.write = (chunk, ...rest) => {
    const written = write(chunk, ...rest);
    // stdout to a pipe is synchronous on Linux: the line is out before the wait begins
    if (String(chunk).includes('"msg":"models loaded"')) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);
    return written;
  };
}
