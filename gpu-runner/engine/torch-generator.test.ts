import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { boxMuller16Avx2, MAX_RANDN_ELEMENTS, TORCH_DEFAULT_SEED, TorchCpuGenerator } from './torch-generator.ts';

// Made by tools/torch-noise/make_fixtures.py with Debian's torch (see that script).
const DIR = new URL('../../test/fixtures/torch-noise/', import.meta.url);

interface DrawRecord {
  shape: number[];
  sha256: string;
  values?: string;
  head?: string;
  tail?: string;
}
interface Fixtures {
  torch: string;
  single: (DrawRecord & { seed: string })[];
  sequences: { seed: string; draws: DrawRecord[] }[];
  sweeps: { radius: string; angle: string; unitRadiusK: number };
}
const fixtures = JSON.parse(readFileSync(new URL('randn.json', DIR), 'utf8')) as Fixtures;

const bits = (a: Float32Array): Uint32Array => new Uint32Array(a.buffer, a.byteOffset, a.length);
const fromB64 = (s: string): Uint32Array => {
  const b = Buffer.from(s, 'base64');
  return new Uint32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
};
const sha256 = (a: Float32Array): string => createHash('sha256').update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength)).digest('hex');

/** Bit patterns compared as arrays, so a failure prints the values that differ. */
function expectDraw(ours: Float32Array, rec: DrawRecord): void {
  if (rec.values) expect(Array.from(bits(ours))).toEqual(Array.from(fromB64(rec.values)));
  if (rec.head) expect(Array.from(bits(ours.subarray(0, 32)))).toEqual(Array.from(fromB64(rec.head)));
  if (rec.tail) expect(Array.from(bits(ours.subarray(ours.length - 32)))).toEqual(Array.from(fromB64(rec.tail)));
  expect(sha256(ours)).toBe(rec.sha256);
}

describe('TorchCpuGenerator against torch.randn (float32, CPU generator)', () => {
  it.each(fixtures.single.map((r) => [`seed ${r.seed}, shape [${r.shape.join(', ')}]`, r] as const))('%s', (_, rec) => {
    const g = new TorchCpuGenerator(BigInt(rec.seed));
    expectDraw(g.randn(rec.shape), rec);
  });

  it.each(fixtures.sequences.map((s) => [`seed ${s.seed}: ${s.draws.map((d) => `[${d.shape.join(', ')}]`).join(' then ')}`, s] as const))(
    'consecutive draws on one generator, %s',
    (_, seq) => {
      const g = new TorchCpuGenerator(BigInt(seq.seed));
      for (const rec of seq.draws) expectDraw(g.randn(rec.shape), rec);
    },
  );

  it('one latent (seed 42, 1x4x64x64) value for value', () => {
    const b = readFileSync(new URL('randn-seed42-1x4x64x64.f32', DIR));
    const ref = new Uint32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
    const ours = bits(new TorchCpuGenerator(42).randn([1, 4, 64, 64]));
    const firstDiff = ours.findIndex((v, i) => v !== ref[i]);
    expect(firstDiff === -1 ? 'identical' : `first differs at ${firstDiff}: ${ours[firstDiff]!.toString(16)} vs torch ${ref[firstDiff]!.toString(16)}`).toBe('identical');
  });

  // The sweeps feed the transform every one of the 2^24 float32 uniforms torch can draw, as
  // make_fixtures.py made torch do through a chosen MT19937 state; equal hashes mean our
  // Box-Muller equals torch's for every input, not only for the ones the seeds above reach.
  const sweepHash = (block: (i: number, out: Float32Array, o: number) => void): string => {
    const blocks = 1 << 21;
    const chunk = 1 << 16;
    const h = createHash('sha256');
    const buf = new Float32Array(chunk * 16);
    for (let start = 0; start < blocks; start += chunk) {
      for (let b = 0; b < chunk; b++) {
        block(start + b, buf, b * 16);
        boxMuller16Avx2(buf, b * 16);
      }
      h.update(new Uint8Array(buf.buffer));
    }
    return h.digest('hex');
  };
  const U = 2 ** -24;

  it('radius sqrt(-2 log(1 - u)) for all 2^24 uniforms (theta 0)', () => {
    const hash = sweepHash((i, out, o) => {
      for (let j = 0; j < 8; j++) {
        out[o + j] = (i * 8 + j) * U;
        out[o + 8 + j] = 0;
      }
    });
    expect(hash).toBe(fixtures.sweeps.radius);
  });

  it('cos and sin of 2 pi u for all 2^24 uniforms (radius exactly 1)', () => {
    const k = fixtures.sweeps.unitRadiusK;
    const hash = sweepHash((i, out, o) => {
      for (let j = 0; j < 8; j++) {
        out[o + j] = k * U;
        out[o + 8 + j] = (i * 8 + j) * U;
      }
    });
    expect(hash).toBe(fixtures.sweeps.angle);
  });
});

describe('TorchCpuGenerator seeds and shapes', () => {
  const draw = (seed: number | bigint, shape = [1, 4, 8, 8]): number[] => Array.from(bits(new TorchCpuGenerator(seed).randn(shape)));

  it('keeps the uint64 seed and draws from its low 32 bits, as torch does', () => {
    expect(new TorchCpuGenerator().initialSeed()).toBe(TORCH_DEFAULT_SEED);
    expect(new TorchCpuGenerator(-1).initialSeed()).toBe(2n ** 64n - 1n);
    expect(new TorchCpuGenerator(2 ** 53 - 1).initialSeed()).toBe(2n ** 53n - 1n);
    expect(draw(-1)).toEqual(draw(2 ** 32 - 1));
    expect(draw(2n ** 64n - 1n)).toEqual(draw(2 ** 32 - 1));
    expect(draw(5 + 2 ** 32)).toEqual(draw(5));
    expect(draw(5)).not.toEqual(draw(6));
  });

  it('manualSeed restarts the stream and drops the cached normal', () => {
    const g = new TorchCpuGenerator(3);
    const first = Array.from(bits(g.randn([7])));
    g.randn([1, 4, 8, 8]);
    g.manualSeed(3);
    expect(Array.from(bits(g.randn([7])))).toEqual(first);
  });

  it('draws a batch as consecutive single latents (blocks of 16 align)', () => {
    const g = new TorchCpuGenerator(11);
    const a = g.randn([1, 4, 8, 8]);
    const b = g.randn([1, 4, 8, 8]);
    const batch = new TorchCpuGenerator(11).randn([2, 4, 8, 8]);
    expect(Array.from(bits(batch))).toEqual([...bits(a), ...bits(b)]);
  });

  it('refuses seeds and shapes torch would refuse, naming them', () => {
    expect(() => new TorchCpuGenerator(1.5)).toThrow(/seed must be an integer/);
    expect(() => new TorchCpuGenerator(Number.NaN)).toThrow(/seed must be an integer/);
    expect(() => new TorchCpuGenerator(2n ** 64n)).toThrow(/seed must be within \[-2\^63, 2\^64 - 1\]/);
    expect(() => new TorchCpuGenerator(-(2n ** 63n) - 1n)).toThrow(/seed must be within/);
    const g = new TorchCpuGenerator(0);
    expect(() => g.randn([1, -4])).toThrow(/shape\[1\] must be a non-negative integer; got -4/);
    expect(() => g.randn([2.5])).toThrow(/shape\[0\]/);
    expect(() => g.randn([MAX_RANDN_ELEMENTS, 2])).toThrow(/more than 1073741824 elements/);
    expect(g.randn([0, 4]).length).toBe(0);
  });
});
