/**
 * The only module that imports onnxruntime-node. It picks the execution provider, builds
 * sessions, reads input names/dtypes/ranks from them, checks feeds against the session
 * (naming what is missing or unexpected), converts float32 data to whatever the graph
 * declares (float16, int32, int64, double), and times every run() call so the engine
 * can report time inside onnxruntime vs outside it.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import * as ort from 'onnxruntime-node';

export type ExecutionProvider = 'auto' | 'cpu' | 'cuda';

export interface OrtOptions {
  provider?: ExecutionProvider;
  intraOpNumThreads?: number;
  interOpNumThreads?: number;
  /**
   * onnxruntime's CPU memory arena (default on). Each session's arena keeps the largest
   * activations it has served: with three full-size UNets at 512×512 that is several GB
   * per session held between calls. Off, activations are freed after every run (slower
   * allocation, a lower peak): ORT_CPU_MEM_ARENA=0, `amdm generate --no-arena`.
   */
  cpuMemArena?: boolean;
  /** one line per notable event (provider fallback) */
  log?: (message: string) => void;
}

export type ElementType = 'float32' | 'float16' | 'int32' | 'int64' | 'float64' | 'bool' | 'other';

export interface InputInfo {
  name: string;
  type: ElementType;
  /** symbolic dims are strings; an empty array means a scalar (or an unknown shape) */
  shape: readonly (number | string)[];
}

/** Plain data for a feed: numbers in float32 (or integers) with their dims. */
export interface Feed {
  data: Float32Array | Int32Array | number[];
  dims: readonly number[];
}

/** A feed converted to an onnxruntime tensor once, for inputs that repeat every step. */
export class PreparedFeed {
  /** @internal */
  constructor(readonly tensor: ort.Tensor) {}
}

export interface Output {
  data: Float32Array;
  dims: number[];
}

/** Accumulates wall time spent inside session.run(). */
export class OrtClock {
  ms = 0;
  calls = 0;
}

let cudaWarned = false;
let cudaPresent: boolean | undefined;

/**
 * The binding lists CUDA as "supported, not bundled": its provider library is there only
 * when the package was installed with ONNXRUNTIME_NODE_INSTALL=cuda12 (the runner image).
 * Look for that library instead of letting every session creation fail loudly.
 */
function cudaAvailable(): boolean {
  if (cudaPresent === undefined) {
    const cuda = ort.listSupportedBackends().find((b) => b.name === 'cuda');
    let installed = false;
    if (cuda && !cuda.bundled) {
      const binding = dirname(createRequire(import.meta.url).resolve('onnxruntime-node/package.json'));
      const dir = join(binding, 'bin', 'napi-v6', process.platform, process.arch);
      installed = existsSync(join(dir, 'libonnxruntime_providers_cuda.so'));
    }
    cudaPresent = !!cuda && (cuda.bundled || installed);
  }
  return cudaPresent;
}

export class OnnxModel {
  private constructor(
    readonly path: string,
    private readonly session: ort.InferenceSession,
    readonly inputs: ReadonlyMap<string, InputInfo>,
    readonly outputNames: readonly string[],
    readonly provider: 'cpu' | 'cuda',
  ) {}

  static async load(path: string, opts: OrtOptions = {}): Promise<OnnxModel> {
    const base: ort.InferenceSession.SessionOptions = {
      graphOptimizationLevel: 'all',
      // errors only: at warning level onnxruntime's optimizer reports every initializer its
      // own fusions left unused, hundreds of lines for one converted SD1.x UNet
      logSeverityLevel: 3,
      ...(opts.intraOpNumThreads ? { intraOpNumThreads: opts.intraOpNumThreads } : {}),
      ...(opts.interOpNumThreads ? { interOpNumThreads: opts.interOpNumThreads } : {}),
      ...(opts.cpuMemArena === false ? { enableCpuMemArena: false } : {}),
    };
    const want = opts.provider ?? 'auto';
    let session: ort.InferenceSession | undefined;
    let provider: 'cpu' | 'cuda' = 'cpu';
    if (want !== 'cpu' && cudaAvailable()) {
      try {
        session = await ort.InferenceSession.create(path, { ...base, executionProviders: ['cuda', 'cpu'] });
        provider = 'cuda';
      } catch (err) {
        if (want === 'cuda') throw new Error(`${path}: the CUDA execution provider failed: ${(err as Error).message}`);
        cudaPresent = false; // present but unusable (no driver, no GPU): stop trying
      }
    } else if (want === 'cuda') {
      throw new Error('provider "cuda" was asked for, but this onnxruntime-node binding has no CUDA provider (install with ONNXRUNTIME_NODE_INSTALL=cuda12)');
    }
    if (!session) {
      if (want === 'auto' && !cudaWarned) {
        cudaWarned = true;
        opts.log?.('onnxruntime: no CUDA execution provider in this binding; running on CPU');
      }
      try {
        session = await ort.InferenceSession.create(path, { ...base, executionProviders: ['cpu'] });
      } catch (err) {
        throw new Error(`${path}: onnxruntime could not load the model: ${(err as Error).message}`);
      }
    }
    const inputs = new Map<string, InputInfo>();
    for (const m of session.inputMetadata) {
      inputs.set(m.name, m.isTensor ? { name: m.name, type: elementType(m.type), shape: m.shape } : { name: m.name, type: 'other', shape: [] });
    }
    return new OnnxModel(path, session, inputs, session.outputNames, provider);
  }

  input(name: string): InputInfo {
    const info = this.inputs.get(name);
    if (!info) throw new Error(`${this.path}: the graph has no input "${name}"; inputs: ${[...this.inputs.keys()].join(', ')}`);
    return info;
  }

  /** Convert a feed for `name` once; pass the result to run() as often as needed. */
  prepare(name: string, feed: Feed): PreparedFeed {
    return new PreparedFeed(toTensor(this.input(name), feed, this.path));
  }

  async run(feeds: Record<string, Feed | PreparedFeed>, clock?: OrtClock): Promise<Record<string, Output>> {
    const missing = [...this.inputs.keys()].filter((n) => !(n in feeds));
    const unknown = Object.keys(feeds).filter((n) => !this.inputs.has(n));
    if (missing.length || unknown.length) {
      throw new Error(
        `${this.path}: feeds do not match the graph inputs` +
          (missing.length ? `; missing: ${missing.join(', ')}` : '') +
          (unknown.length ? `; not inputs of this graph: ${unknown.join(', ')}` : ''),
      );
    }
    const tensors: Record<string, ort.Tensor> = {};
    for (const [name, feed] of Object.entries(feeds)) tensors[name] = feed instanceof PreparedFeed ? feed.tensor : toTensor(this.inputs.get(name)!, feed, this.path);
    const t0 = performance.now();
    const result = await this.session.run(tensors);
    if (clock) {
      clock.ms += performance.now() - t0;
      clock.calls++;
    }
    const out: Record<string, Output> = {};
    for (const name of this.outputNames) {
      const t = result[name]!;
      // CPU output tensors own plain JS arrays: float32 data is used as is, without a copy
      out[name] = { data: toFloat32(t), dims: [...t.dims] };
    }
    return out;
  }

  async dispose(): Promise<void> {
    await this.session.release();
  }
}

function elementType(t: string): ElementType {
  switch (t) {
    case 'float32':
    case 'float16':
    case 'int32':
    case 'int64':
    case 'bool':
      return t;
    case 'float64':
      return 'float64';
    default:
      return 'other';
  }
}

function toTensor(info: InputInfo, feed: Feed, path: string): ort.Tensor {
  const n = feed.dims.reduce((a, b) => a * b, 1);
  if (feed.data.length !== n) throw new Error(`${path}: input "${info.name}" has ${feed.data.length} values for dims [${feed.dims.join(', ')}]`);
  if (info.shape.length > 0 && info.shape.length !== feed.dims.length) {
    throw new Error(`${path}: input "${info.name}" has rank ${info.shape.length} [${info.shape.join(', ')}], fed rank ${feed.dims.length}`);
  }
  const dims = [...feed.dims];
  switch (info.type) {
    case 'float32':
      return new ort.Tensor('float32', feed.data instanceof Float32Array ? feed.data : Float32Array.from(feed.data), dims);
    case 'float16': {
      const h = new Uint16Array(n);
      for (let i = 0; i < n; i++) h[i] = toHalf(feed.data[i]!);
      return new ort.Tensor('float16', h, dims);
    }
    case 'float64':
      return new ort.Tensor('float64', Float64Array.from(feed.data), dims);
    case 'int32':
      return new ort.Tensor('int32', Int32Array.from(feed.data, (v) => Math.round(v)), dims);
    case 'int64': {
      const a = new BigInt64Array(n);
      for (let i = 0; i < n; i++) a[i] = BigInt(Math.round(feed.data[i]!));
      return new ort.Tensor('int64', a, dims);
    }
    default:
      throw new Error(`${path}: input "${info.name}" has element type ${info.type}, which the engine cannot feed`);
  }
}

function toFloat32(t: ort.Tensor): Float32Array {
  switch (t.type) {
    case 'float32':
      return t.data as Float32Array;
    case 'float16': {
      const h = t.data as Uint16Array;
      const out = new Float32Array(h.length);
      for (let i = 0; i < h.length; i++) out[i] = fromHalf(h[i]!);
      return out;
    }
    case 'float64':
      return Float32Array.from(t.data as Float64Array);
    default:
      throw new Error(`unsupported output element type ${t.type}`);
  }
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** float32 -> IEEE 754 binary16 bits, round to nearest even (Node 20 has no Float16Array). */
export function toHalf(v: number): number {
  f32[0] = v;
  const x = u32[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0); // inf / nan
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00; // overflow -> inf
  if (e <= 0) {
    if (e < -10) return sign; // underflow -> signed zero
    mant |= 0x800000;
    const shift = 14 - e;
    let h = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && h & 1)) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && h & 1)) h++;
  return sign | h;
}

export function fromHalf(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}
