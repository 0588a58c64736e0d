// The clock of the start-up watchdog (start-watchdog.ts), in a thread of its own so that it
// fires even when the main thread's event loop is blocked. Plain JavaScript and started with
// no execArgv: nothing to load but this file.
//
// In: { phase: string } whenever the main thread begins a phase. At the timeout: one JSON line
// on stderr naming the phase, written from here (the main thread's console may be the thing
// that is stuck), then { timedOut: true } to the main thread, which exits 1. If the process is
// still there after the grace period, the main thread is blocked: a second line says so and
// the process is killed.
import { writeSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';

const { timeoutMs, graceMs, component } = workerData;
const started = Date.now();
const done = [];
let phase = null;
let phaseStarted = started;

const log = (msg, fields) => {
  const line = JSON.stringify({ t: new Date().toISOString(), level: 'error', component, msg, ...fields });
  try {
    writeSync(2, `${line}\n`);
  } catch {
    // stderr closed: the exit code still tells
  }
};

parentPort.on('message', (m) => {
  if (typeof m?.phase !== 'string') return;
  if (phase !== null) done.push(phase);
  phase = m.phase;
  phaseStarted = Date.now();
});

setTimeout(() => {
  log('start-up did not finish in time; exiting', {
    phase: phase ?? 'before the first phase',
    phase_seconds: Math.round((Date.now() - phaseStarted) / 1000),
    timeout_seconds: timeoutMs / 1000,
    done,
    hint: 'if this machine is only slow (large models on CPU), raise AMDM_START_TIMEOUT_SECONDS; 0 turns the watchdog off',
  });
  parentPort.postMessage({ timedOut: true });
  setTimeout(() => {
    log('the main thread did not exit: its event loop is blocked; killing the process', { phase: phase ?? 'before the first phase' });
    process.kill(process.pid, 'SIGKILL');
  }, graceMs);
}, timeoutMs);
