// Runs one exported graph in onnxruntime (CPU) on inputs the converter wrote, and prints
// the max abs difference of each output against the torch outputs, as one JSON line.
// Python has no onnxruntime here; Node has the same onnxruntime the engine runs.
//
//   node tools/convert/ort-check.mjs DIR      (DIR/index.json, raw little-endian tensors)
//
// index.json: { model, inputs: [{name, dtype, shape, file}], outputs: [{name, shape, file}] }
// Expected outputs are float32; float16 graph outputs are widened before comparing.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';

const dir = process.argv[2];
if (!dir) {
  console.error('usage: node tools/convert/ort-check.mjs DIR');
  process.exit(2);
}
const index = JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8'));

function bytes(file) {
  const b = readFileSync(join(dir, file));
  return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength);
}

const ARRAYS = { float32: Float32Array, float16: Uint16Array, int64: BigInt64Array, int32: Int32Array };

function halfToFloat(h) {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * f * 2 ** -24;
  if (e === 31) return f ? NaN : s * Infinity;
  return s * (1 + f / 1024) * 2 ** (e - 15);
}

function asFloat32(t) {
  if (t.type === 'float32') return t.data;
  if (t.type === 'float16') {
    const out = new Float32Array(t.data.length);
    for (let i = 0; i < out.length; i++) out[i] = halfToFloat(t.data[i]);
    return out;
  }
  throw new Error(`output of type ${t.type} cannot be compared`);
}

const t0 = performance.now();
const session = await ort.InferenceSession.create(index.model, { executionProviders: ['cpu'], graphOptimizationLevel: 'all' });
const loadMs = performance.now() - t0;
const feeds = {};
for (const i of index.inputs) {
  const Arr = ARRAYS[i.dtype];
  if (!Arr) throw new Error(`input ${i.name}: dtype ${i.dtype} not supported`);
  feeds[i.name] = new ort.Tensor(i.dtype, new Arr(bytes(i.file)), i.shape);
}
const t1 = performance.now();
const result = await session.run(feeds);
const runMs = performance.now() - t1;
const outputs = [];
for (const o of index.outputs) {
  const got = result[o.name];
  if (!got) {
    outputs.push({ name: o.name, error: `the graph has no output "${o.name}"; outputs: ${session.outputNames.join(', ')}` });
    continue;
  }
  const want = new Float32Array(bytes(o.file));
  const g = asFloat32(got);
  const sameShape = got.dims.length === o.shape.length && got.dims.every((d, k) => d === o.shape[k]);
  let maxDiff = 0;
  let maxRef = 0;
  let nonFinite = 0;
  if (sameShape) {
    for (let k = 0; k < want.length; k++) {
      if (!Number.isFinite(g[k])) nonFinite++;
      const d = Math.abs(g[k] - want[k]);
      if (d > maxDiff || Number.isNaN(d)) maxDiff = Number.isNaN(d) ? Infinity : d;
      const r = Math.abs(want[k]);
      if (r > maxRef) maxRef = r;
    }
  }
  outputs.push({ name: o.name, shape: got.dims, type: got.type, same_shape: sameShape, max_abs_diff: maxDiff, max_abs_ref: maxRef, non_finite: nonFinite });
}
await session.release();
console.log(JSON.stringify({ load_ms: Math.round(loadMs), run_ms: Math.round(runMs), outputs }));
