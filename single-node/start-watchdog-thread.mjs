// The clock of the start-up watchdog (start-watchdog.ts), in a thread of its own so that it
// fires even when the main thread's event loop is blocked. Plain JavaScript and started with
// no execArgv: nothing to load but this file.
//
// In: { phase: string } whenever the main thread begins a phase. At the timeout: one JSON line
// on stderr naming the phase, written from here (the main thread's console may be the thing
// that is stuck), then { timedOut: true } to the main thread, which exits 1. If the process is
// still there after the grace period, the main thread is blocked: a second line says so and
// the process is killed.
import { write } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';

const { timeoutMs, graceMs, component } = workerData;
const started = Date.now();
const done = [];
let phase = null;
let phaseStarted = started;

/** One log line on stderr, then `then`, whether or not the write succeeded. */
const say = (msg, fields, then) => {
  const line = JSON.stringify({ t: new Date().toISOString(), level: 'error', component, msg, ...fields });
  // not writeSync: a stderr that nobody reads would block this thread too, and the kill with it
  write(2, `${line}\n`, () => then());
};
const kill = () => process.kill(process.pid, 'SIGKILL');

parentPort.on('message', (m) => {
  if (typeof m?.phase !== 'string') return;
  if (phase !== null) done.push(phase);
  phase = m.phase;
  phaseStarted = Date.now();
});

setTimeout(() => {
  const stuck = phase ?? 'before the first phase';
  say(
    'start-up did not finish in time; exiting',
    {
      phase: stuck,
      phase_seconds: Math.round((Date.now() - phaseStarted) / 1000),
      timeout_seconds: timeoutMs / 1000,
      done,
      hint: 'if this machine is only slow (large models on CPU), raise AMDM_START_TIMEOUT_SECONDS; 0 turns the watchdog off',
    },
    () => parentPort.postMessage({ timedOut: true }),
  );
  setTimeout(() => {
    say('the main thread did not exit: its event loop is blocked; killing the process', { phase: stuck }, kill);
    // and if even that line cannot get out
    setTimeout(kill, 1000);
  }, graceMs);
}, timeoutMs);
