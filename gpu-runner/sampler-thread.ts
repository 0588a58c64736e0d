/**
 * The engine in a worker thread. onnxruntime-node's run() blocks the thread it runs on for
 * the whole native call, so the sampler must not share the runner's event loop: heartbeats
 * (lease extensions), cancel checks, progress writes and signal handling all live on the
 * main thread and keep running while a UNet call is in flight.
 *
 * This module has two sides:
 * - the main thread's `SamplerThread` (one worker) and `SamplerPool` (several), both
 *   implementing the Engine interface, so the worker loop does not know threads exist;
 * - the worker side, which runs when the module is loaded inside a sampler worker: it
 *   builds the engine from a factory module named in workerData and serves requests.
 *
 * Cancellation crosses the thread boundary twice over: a message (handled whenever the
 * worker's event loop turns) and a shared flag read at every progress callback, i.e. at
 * every sampling step even if the engine never yields to the event loop in between.
 *
 * A thread is never ended while a call may be inside onnxruntime: terminating a worker (or
 * exiting the process, which terminates its workers) during a native run() makes the
 * binding fail to throw into the dying JavaScript environment, and the C++ runtime aborts
 * the whole process ("terminate called after throwing an instance of 'Napi::Error'", exit
 * 134). terminate() and dispose() first cancel the calls in flight and wait until they have
 * returned (the end of the current UNet call); only a call that ignores the cancel for
 * `abortGraceMs` is cut off anyway.
 */
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import type { JobSpec, JobWarning, ModelInfo } from '../shared/contract/index.ts';
import { EngineInputError, type Engine, type EngineProgress, type EngineResult, type GenerateOptions, type PreviewFrame } from './engine/types.ts';

/** Which module builds the engine inside the thread, and with what options (structured-cloneable). */
export interface EngineFactoryRef {
  /** file URL or absolute path of an ES module */
  module: string;
  /** the factory's export name: (options) => Engine | Promise<Engine>; default "createEngine" */
  export?: string;
  options?: unknown;
}

export interface SamplerThreadOptions {
  engine: EngineFactoryRef;
  /** thread name, shown in diagnostics */
  name?: string;
  /** how long dispose() waits for the engine to release its sessions before terminating the thread */
  disposeTimeoutMs?: number;
  /**
   * How long an aborted generate() may take to stop before the thread is terminated (a
   * native call that never returns would otherwise hold the thread, and the job, forever).
   */
  abortGraceMs?: number;
}

/** The thread died (native crash, out of memory, terminated) while a call was in flight: worth a retry. */
export class SamplerCrashedError extends Error {
  override name = 'SamplerCrashedError';
}

interface SerializedError {
  name: string;
  message: string;
  field?: string;
}

type ToWorker =
  | { type: 'generate'; id: number; spec: JobSpec; referenceImages: (Uint8Array | null)[] | null; cancelFlag: SharedArrayBuffer; previewEveryMs: number | null }
  | { type: 'cancel'; id: number; reason: string }
  | { type: 'catalog' | 'warm' | 'dispose'; id: number };

type FromWorker =
  | { type: 'progress'; id: number; progress: EngineProgress }
  | { type: 'warning'; id: number; warning: JobWarning }
  | { type: 'preview'; id: number; frame: PreviewFrame }
  | { type: 'result'; id: number; value: unknown }
  | { type: 'error'; id: number; error: SerializedError };

const ROLE = 'amdm-sampler';
const BOOT = new URL('./sampler-thread-boot.mjs', import.meta.url);
const SELF = new URL(import.meta.url).href;

function serializeError(err: unknown): SerializedError {
  const e = err as { name?: string; message?: string; field?: string };
  return {
    name: typeof e?.name === 'string' ? e.name : 'Error',
    message: typeof e?.message === 'string' ? e.message : String(err),
    ...(typeof e?.field === 'string' ? { field: e.field } : {}),
  };
}

function deserializeError(e: SerializedError): Error {
  if (e.name === 'EngineInputError') return new EngineInputError(e.message, e.field);
  if (e.name === 'AbortError') return new DOMException(e.message, 'AbortError');
  const err = new Error(e.message);
  err.name = e.name;
  return err;
}

interface Pending {
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  onProgress?: (p: EngineProgress) => void;
  onWarning?: (w: JobWarning) => void;
  onFrame?: (f: PreviewFrame) => void;
  /** the thread the call went to: a dying thread fails only its own calls */
  worker: Worker;
  /** a generate's shared cancel flag */
  cancelFlag?: SharedArrayBuffer;
  /** resolves once the call has returned, however */
  settled: Promise<void>;
}

/** One worker thread hosting one engine. Spawned lazily; respawned after a crash. */
export class SamplerThread implements Engine {
  private worker: Worker | null = null;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private disposed = false;

  constructor(private readonly opts: SamplerThreadOptions) {
    if (!opts?.engine || typeof opts.engine.module !== 'string' || opts.engine.module === '') {
      throw new TypeError('SamplerThread: option "engine.module" must name the module that builds the engine (file URL or path)');
    }
  }

  /** True while a worker thread exists. */
  get alive(): boolean {
    return this.worker !== null;
  }

  private spawn(): Worker {
    const w = new Worker(BOOT, {
      name: this.opts.name ?? 'amdm-sampler',
      workerData: { role: ROLE, entry: SELF, engine: this.opts.engine },
    });
    w.on('message', (m: FromWorker) => this.onMessage(m));
    const fail = (why: string) => {
      if (this.worker === w) this.worker = null;
      this.failCalls(w, new SamplerCrashedError(`the sampler thread ${why}`));
    };
    w.on('error', (err) => fail(`failed: ${err.message}`));
    w.on('exit', (code) => fail(`exited with code ${code}`));
    // not unref'd: while a job runs, the thread is what the runner is waiting for; the
    // runner's close() disposes the threads so they never hold a finished process open
    return w;
  }

  private failCalls(w: Worker, err: Error): void {
    for (const [id, p] of this.pending) {
      if (p.worker !== w) continue;
      this.pending.delete(id);
      p.reject(err);
    }
  }

  private onMessage(m: FromWorker): void {
    const p = this.pending.get(m.id);
    if (!p) return;
    if (m.type === 'progress') {
      p.onProgress?.(m.progress);
      return;
    }
    if (m.type === 'warning') {
      p.onWarning?.(m.warning);
      return;
    }
    if (m.type === 'preview') {
      p.onFrame?.(m.frame);
      return;
    }
    this.pending.delete(m.id);
    if (m.type === 'result') p.resolve(m.value);
    else p.reject(deserializeError(m.error));
  }

  private call<T>(msg: Omit<ToWorker, 'id'> & { type: ToWorker['type'] }, callbacks: Pick<Pending, 'onProgress' | 'onWarning' | 'onFrame'> = {}): { id: number; done: Promise<T> } {
    if (this.disposed) throw new Error('the sampler thread was disposed');
    const worker = (this.worker ??= this.spawn());
    const id = this.nextId++;
    let entry!: Pending;
    const done = new Promise<T>((resolve, reject) => {
      entry = { resolve: resolve as (v: unknown) => void, reject, worker, settled: Promise.resolve(), ...callbacks };
      if ('cancelFlag' in msg) entry.cancelFlag = msg.cancelFlag as SharedArrayBuffer;
    });
    entry.settled = done.then(
      () => {},
      () => {},
    );
    this.pending.set(id, entry);
    worker.postMessage({ ...msg, id });
    return { id, done };
  }

  /**
   * Cancel every generate in flight on `w` and wait (at most `timeoutMs`) until every call
   * there has returned, so that no onnxruntime call is running when the thread ends.
   * Returns whether the thread got there in time.
   */
  private async quiesce(w: Worker, reason: string, timeoutMs: number): Promise<boolean> {
    const calls = [...this.pending].filter(([, p]) => p.worker === w);
    if (calls.length === 0) return true;
    for (const [id, p] of calls) {
      if (!p.cancelFlag) continue;
      Atomics.store(new Int32Array(p.cancelFlag), 0, 1);
      w.postMessage({ type: 'cancel', id, reason } satisfies ToWorker);
    }
    let timer: NodeJS.Timeout | undefined;
    const inTime = await Promise.race([
      Promise.all(calls.map(([, p]) => p.settled)).then(() => true),
      new Promise<boolean>((r) => (timer = setTimeout(() => r(false), timeoutMs))),
    ]);
    clearTimeout(timer);
    return inTime;
  }

  catalog(): Promise<ModelInfo[]> {
    return this.call<ModelInfo[]>({ type: 'catalog' }).done;
  }

  /** Load every model now, so the first job does not pay for it. */
  warmUp(): Promise<void> {
    return this.call<void>({ type: 'warm' }).done;
  }

  async generate(spec: JobSpec, opts: GenerateOptions = {}): Promise<EngineResult> {
    const signal = opts.signal;
    if (signal?.aborted) throw new DOMException(String(signal.reason ?? 'aborted'), 'AbortError');
    const flag = new SharedArrayBuffer(4);
    const { id, done } = this.call<EngineResult>(
      { type: 'generate', spec, referenceImages: opts.referenceImages ?? null, cancelFlag: flag, previewEveryMs: opts.preview?.everyMs ?? null } as Omit<ToWorker, 'id'> & { type: 'generate' },
      { ...(opts.onProgress ? { onProgress: opts.onProgress } : {}), ...(opts.onWarning ? { onWarning: opts.onWarning } : {}), ...(opts.preview ? { onFrame: opts.preview.onFrame } : {}) },
    );
    let killer: NodeJS.Timeout | null = null;
    const onAbort = () => {
      Atomics.store(new Int32Array(flag), 0, 1);
      this.worker?.postMessage({ type: 'cancel', id, reason: String(signal?.reason ?? 'canceled') } satisfies ToWorker);
      const w = this.pending.get(id)?.worker;
      killer = setTimeout(() => {
        // still running: the engine is stuck inside a call that ignores the abort
        if (!w || !this.pending.has(id)) return;
        if (this.worker === w) this.worker = null;
        this.failCalls(w, new SamplerCrashedError(`the sampler thread did not stop within ${this.opts.abortGraceMs ?? 10_000} ms of the abort and was terminated`));
        void w.terminate();
      }, this.opts.abortGraceMs ?? 10_000);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      return await done;
    } finally {
      signal?.removeEventListener('abort', onAbort);
      if (killer) clearTimeout(killer);
    }
  }

  /**
   * Cancel what runs, ask the engine to free its sessions, then end the thread (forcibly
   * after the timeout).
   */
  async dispose(): Promise<void> {
    if (this.disposed) return;
    const w = this.worker;
    if (w) {
      // sessions must not be released under a run() that is still using them
      await this.quiesce(w, 'shutdown', this.opts.abortGraceMs ?? 10_000);
    }
    if (w && this.worker === w) {
      try {
        const { done } = this.call<void>({ type: 'dispose' });
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([done, new Promise((r) => (timer = setTimeout(r, this.opts.disposeTimeoutMs ?? 5000)))]);
        clearTimeout(timer);
      } catch {
        // a crashed or stuck thread is terminated below either way
      }
    }
    this.disposed = true;
    await this.terminate();
  }

  /**
   * End the thread now: what runs is canceled and the thread ends as soon as the current
   * UNet call returns (a running job is lost: release its lease first).
   */
  async terminate(): Promise<void> {
    const w = this.worker;
    this.worker = null;
    if (!w) return;
    const grace = this.opts.abortGraceMs ?? 10_000;
    // past the grace the call is stuck in native code; ending the thread is the last resort
    await this.quiesce(w, 'shutdown', grace);
    await w.terminate();
  }
}

/** Several sampler threads behind one Engine: a job takes an idle thread or waits for one. */
export class SamplerPool implements Engine {
  private readonly threads: SamplerThread[];
  private readonly idle: SamplerThread[];
  private readonly waiters: ((t: SamplerThread) => void)[] = [];

  constructor(opts: SamplerThreadOptions & { threads: number }) {
    if (!Number.isInteger(opts.threads) || opts.threads < 1 || opts.threads > 64) {
      throw new TypeError(`SamplerPool: option "threads" must be an integer from 1 to 64 (got ${opts.threads})`);
    }
    this.threads = Array.from({ length: opts.threads }, (_, i) => new SamplerThread({ ...opts, name: `${opts.name ?? 'amdm-sampler'}-${i}` }));
    this.idle = [...this.threads];
  }

  catalog(): Promise<ModelInfo[]> {
    return this.threads[0]!.catalog();
  }

  async warmUp(): Promise<void> {
    await Promise.all(this.threads.map((t) => t.warmUp()));
  }

  async generate(spec: JobSpec, opts?: GenerateOptions): Promise<EngineResult> {
    const t = this.idle.pop() ?? (await new Promise<SamplerThread>((r) => this.waiters.push(r)));
    try {
      return await t.generate(spec, opts);
    } finally {
      const next = this.waiters.shift();
      if (next) next(t);
      else this.idle.push(t);
    }
  }

  async dispose(): Promise<void> {
    await Promise.allSettled(this.threads.map((t) => t.dispose()));
  }

  async terminate(): Promise<void> {
    await Promise.allSettled(this.threads.map((t) => t.terminate()));
  }
}

// ---- worker side ------------------------------------------------------------------------

async function serve(): Promise<void> {
  const port = parentPort!;
  const ref = workerData.engine as EngineFactoryRef;
  const moduleUrl = ref.module.startsWith('file:') ? ref.module : new URL(`file://${ref.module}`).href;
  // build the engine lazily: a bad factory fails the first call with its own message
  type WarmableEngine = Engine & { warmUp?: () => Promise<void> };
  let engine: Promise<WarmableEngine> | null = null;
  const getEngine = () =>
    (engine ??= import(moduleUrl).then((mod: Record<string, unknown>) => {
      const factory = mod[ref.export ?? 'createEngine'];
      if (typeof factory !== 'function') throw new Error(`${ref.module} has no function export "${ref.export ?? 'createEngine'}"`);
      return (factory as (o: unknown) => WarmableEngine | Promise<WarmableEngine>)(ref.options);
    }));
  const running = new Map<number, { controller: AbortController; flag: Int32Array }>();

  port.on('message', async (m: ToWorker) => {
    try {
      switch (m.type) {
        case 'cancel': {
          const r = running.get(m.id);
          if (r) {
            Atomics.store(r.flag, 0, 1);
            r.controller.abort(m.reason);
          }
          return;
        }
        case 'catalog':
          port.postMessage({ type: 'result', id: m.id, value: await (await getEngine()).catalog() } satisfies FromWorker);
          return;
        case 'warm': {
          const e = await getEngine();
          await e.warmUp?.();
          port.postMessage({ type: 'result', id: m.id, value: null } satisfies FromWorker);
          return;
        }
        case 'dispose': {
          if (engine) await (await engine).dispose();
          port.postMessage({ type: 'result', id: m.id, value: null } satisfies FromWorker);
          return;
        }
        case 'generate': {
          const controller = new AbortController();
          const flag = new Int32Array(m.cancelFlag);
          running.set(m.id, { controller, flag });
          try {
            const result = await (await getEngine()).generate(m.spec, {
              signal: controller.signal,
              ...(m.referenceImages ? { referenceImages: m.referenceImages } : {}),
              onProgress: (progress) => {
                // a step just ended: the cheapest, most reliable place to notice a cancel
                if (Atomics.load(flag, 0) === 1 && !controller.signal.aborted) controller.abort('canceled');
                port.postMessage({ type: 'progress', id: m.id, progress } satisfies FromWorker);
              },
              onWarning: (warning) => port.postMessage({ type: 'warning', id: m.id, warning } satisfies FromWorker),
              ...(m.previewEveryMs !== null
                ? { preview: { everyMs: m.previewEveryMs, onFrame: (frame: PreviewFrame) => port.postMessage({ type: 'preview', id: m.id, frame } satisfies FromWorker) } }
                : {}),
            });
            port.postMessage({ type: 'result', id: m.id, value: result } satisfies FromWorker);
          } finally {
            running.delete(m.id);
          }
          return;
        }
      }
    } catch (err) {
      port.postMessage({ type: 'error', id: m.id, error: serializeError(err) } satisfies FromWorker);
    }
  });
}

if (!isMainThread && (workerData as { role?: string } | null)?.role === ROLE) {
  void serve();
}
