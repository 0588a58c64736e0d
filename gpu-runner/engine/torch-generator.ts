/**
 * torch.Generator("cpu") and torch.randn(float32) re-implemented bit for bit, so that a seed
 * given to us draws the same initial latents (and DDIM eta noise) as a diffusers pipeline run
 * with `generator=torch.Generator("cpu").manual_seed(seed)`.
 *
 * What torch does (read in PyTorch's sources: aten/src/ATen/core/MT19937RNGEngine.h,
 * CPUGeneratorImpl.cpp, core/TransformationHelper.h, core/DistributionsHelper.h,
 * native/cpu/DistributionTemplates.h and native/cpu/avx_mathfun.h; torch 1.13.1 as shipped by
 * Debian 12 and torch 2.13.0 compared below):
 *
 * 1. Engine: the reference MT19937 (Matsumoto-Nishimura 2002 init_genrand) on 32-bit words.
 *    `manual_seed(s)` takes a uint64 (a negative Python int is read as its two's complement),
 *    keeps it for `initial_seed()`, seeds the engine with the LOW 32 BITS only, and clears the
 *    cached normal sample (step 4). So s and s + 2^32 draw the same numbers.
 * 2. `randn(shape)` with numel >= 16 (always contiguous): first one float uniform per element,
 *    u = (next32() & 0xffffff) * 2^-24 in [0, 1), in memory order; then Box-Muller on blocks of
 *    16 pairing element j with j + 8: u1 = 1 - u[j], u2 = u[j + 8], radius = sqrt(-2 log u1),
 *    theta = 2 pi u2, u[j] = radius cos theta, u[j + 8] = radius sin theta. When numel is not a
 *    multiple of 16 the LAST 16 elements are redrawn from 16 fresh uniforms and transformed
 *    again (overwriting the tail of the previous block). Since every block starts on a multiple
 *    of 16, one draw of a [2, 4, h, w] batch equals two consecutive [1, 4, h, w] draws whenever
 *    4hw is a multiple of 16.
 * 3. The transform of step 2 exists twice. On a CPU with AVX2 (any x86-64 since 2013; at
 *    torch's AVX512 level REGISTER_DISPATCH leaves the normal kernel to the AVX2 one) torch
 *    runs normal_fill_16_AVX2: float32 arithmetic with the Cephes-style polynomials log256_ps
 *    and sincos256_ps of avx_mathfun.h. Without AVX2 (ATEN_CPU_CAPABILITY=default, and the
 *    aarch64 builds) it runs the scalar normal_fill_16 with the C library's logf/cosf/sinf.
 *    The two disagree in the last bit on 38% of the values (1,210,197 of 3,145,728 measured),
 *    so we implement the AVX2 one. Bit-exactness needs one more detail: GCC (Debian's GCC 12.2
 *    and whatever built the PyPI 2.13 wheel alike) compiles avx_mathfun with -mfma and fuses
 *    most multiply-add pairs of the polynomials into FMA instructions. The fused pairs, read
 *    from the disassembly of that header built with GCC 12 -O2 -mavx2 -mfma (which reproduces
 *    Debian's torch bit for bit), are exactly the `fma(...)` calls below; the same code without
 *    fusion differs in the last bit on 1% of the values (30,842 of 3,145,728). So this matches
 *    the GCC-built Linux x86-64 torch; MSVC (Windows) and clang (macOS x86) builds do not fuse
 *    intrinsics that way and likely draw those 1% differently (not measured here).
 * 4. numel < 16: one value at a time from normal_distribution<double>: two 53-bit uniforms per
 *    pair (each from two 32-bit words, high word first), u1 for the angle and u2 for the radius,
 *    r = sqrt(-2 log1p(-u2)) (1.13 wrote log(1 - u2)), value r cos(2 pi u1) rounded to float32;
 *    r sin(2 pi u1) stays cached in the generator (as a double) and is the next such value,
 *    even in a later randn call. The numel >= 16 path neither reads nor clears that cache.
 *
 * Torch 1.13 against 2.x: in 2.x normal_fill_16 became the NormalFill16 functor (float32 via
 * AVX2 as before; half/bfloat16 now drawn in float32 and rounded), the final `* std + mean`
 * became an explicit fma (exact for std 1, mean 0), and the double path took log1p. None of it
 * changes float32 randn: Debian's torch 1.13.1 and the PyPI torch 2.13.0+cpu wheel give
 * identical bits on 3,145,728 values (numel >= 16, AVX2 and default levels each) and on
 * 1,040,000 values of the numel < 16 path. One difference matters to fp16 pipelines (diffusers
 * draws in the pipeline's dtype): torch 2.13 draws float16 as this float32 draw rounded to
 * float16 (identical on 1x4x64x64, seed 42), torch 1.13 drew other numbers.
 *
 * What this is not: CUDA generators (Philox, curand's normal; the CompVis scripts draw their
 * start code on the GPU), the MPS generator, and the scalar path (aarch64, Apple silicon) draw
 * other numbers. The fixtures in test/fixtures/torch-noise/ pin the values this module
 * reproduces.
 *
 * Draw order for a sampler that wants diffusers' numbers (one generator per image, seeded with
 * that image's seed, as diffusers does with a list of generators): first the initial latents,
 * randn([1, C, h, w]) once per model in request order; then, when DDIM eta > 0, per denoising
 * step in timestep order one randn of the latent's shape per model that steps (diffusers'
 * DDIMScheduler.step draws `torch.randn(model_output.shape, generator=generator)` after the
 * model call, at every step including the last).
 *
 * Written here rather than taken from a library: bit-compatibility with one build of torch is
 * the point, and no npm package reproduces torch's AVX2 Box-Muller.
 */

/** torch's default_rng_seed_val: the seed of a freshly constructed torch.Generator(). */
export const TORCH_DEFAULT_SEED = 67280421310721n;

/** Bounds the memory one randn call may claim (4 GiB of float32). */
export const MAX_RANDN_ELEMENTS = 2 ** 30;

const N = 624;
const M = 397;
const UPPER = 0x80000000;
const LOWER = 0x7fffffff;
const MATRIX_A = 0x9908b0df;

const TWO_POW_64 = 1n << 64n;
const TWO_POW_63 = 1n << 63n;

/** Reads a seed the way torch.Generator.manual_seed does: uint64, negatives as two's complement. */
function toUint64Seed(seed: number | bigint): bigint {
  let s: bigint;
  if (typeof seed === 'number') {
    if (!Number.isSafeInteger(seed)) throw new RangeError(`seed must be an integer within ±(2^53 - 1) or a bigint; got ${seed}`);
    s = BigInt(seed);
  } else if (typeof seed === 'bigint') {
    s = seed;
  } else {
    throw new TypeError(`seed must be a number or a bigint; got ${typeof seed}`);
  }
  if (s < -TWO_POW_63 || s >= TWO_POW_64) throw new RangeError(`seed must be within [-2^63, 2^64 - 1] like torch's; got ${s}`);
  return s < 0n ? s + TWO_POW_64 : s;
}

const f32 = Math.fround;

// Float32 bit access for the exponent and mantissa tricks of log256_ps.
const scratchF = new Float32Array(1);
const scratchU = new Uint32Array(scratchF.buffer);

/**
 * One vfmadd lane: float32 a*b + c rounded once. a*b is exact in a double (48 bits), so only
 * the double sum rounds before the float32 rounding; that double rounding can differ from a
 * single one only when the double sum lands exactly on a float32 midpoint. For the inputs
 * torch can produce (uniforms k / 2^24) it never does: the sweeps in torch-generator.test.ts
 * compare radius, cos and sin with torch's for all 2^24 of them. (A TwoSum tie-break makes
 * it exact for any input, and the whole draw 2.5 times slower, for no bit changed here.)
 */
function fma(a: number, b: number, c: number): number {
  return f32(a * b + c);
}

// avx_mathfun.h constants, rounded to float32 as the _PS256_CONST tables hold them.
const SQRTHF = f32(0.707106781186547524);
const LOG_P0 = f32(7.0376836292e-2);
const LOG_P1 = f32(-1.151461031e-1);
const LOG_P2 = f32(1.167699874e-1);
const LOG_P3 = f32(-1.2420140846e-1);
const LOG_P4 = f32(1.4249322787e-1);
const LOG_P5 = f32(-1.6668057665e-1);
const LOG_P6 = f32(2.0000714765e-1);
const LOG_P7 = f32(-2.4999993993e-1);
const LOG_P8 = f32(3.3333331174e-1);
const LOG_Q1 = f32(-2.1219444e-4);
const LOG_Q2 = f32(0.693359375);
const MINUS_DP1 = f32(-0.78515625);
const MINUS_DP2 = f32(-2.4187564849853515625e-4);
const MINUS_DP3 = f32(-3.77489497744594108e-8);
const SINCOF_P0 = f32(-1.9515295891e-4);
const SINCOF_P1 = f32(8.3321608736e-3);
const SINCOF_P2 = f32(-1.6666654611e-1);
const COSCOF_P0 = f32(2.443315711809948e-5);
const COSCOF_P1 = f32(-1.388731625493765e-3);
const COSCOF_P2 = f32(4.166664568298827e-2);
const FOPI = f32(1.27323954473516); // 4 / pi
const TWO_PI_F32 = f32(2 * Math.PI); // _mm256_set1_ps(2.0f * c10::pi<double>)

/** log256_ps for one lane, u1 in (0, 1] (torch never passes anything else). */
function log256(v: number): number {
  scratchF[0] = Math.max(v, 1.1754943508222875e-38); // cut off denormals
  const bits = scratchU[0]!;
  let e = f32(((bits >>> 23) - 0x7f) + 1);
  scratchU[0] = (bits & ~0x7f800000) | 0x3f000000; // mantissa in [0.5, 1)
  let x = scratchF[0]!;
  // x < sqrt(1/2): use 2x - 1 and one exponent less, keeping the argument near 0
  const below = x < SQRTHF;
  const tmp = below ? x : 0;
  x = f32(x - 1);
  if (below) e = f32(e - 1);
  x = f32(x + tmp);
  const z = f32(x * x);
  let y = fma(LOG_P0, x, LOG_P1);
  y = fma(y, x, LOG_P2);
  y = fma(y, x, LOG_P3);
  y = fma(y, x, LOG_P4);
  y = fma(y, x, LOG_P5);
  y = fma(y, x, LOG_P6);
  y = fma(y, x, LOG_P7);
  y = fma(y, x, LOG_P8);
  y = f32(y * x);
  y = fma(y, z, f32(e * LOG_Q1));
  y = fma(-z, 0.5, y);
  x = f32(x + y);
  return fma(e, LOG_Q2, x);
}

// sincos256's two results, without allocating a pair per lane
const sinCos = new Float64Array(2);

/** sincos256_ps for one lane, theta >= 0 (torch's is 2 pi u2); results in sinCos. */
function sincos256(theta: number): void {
  let x = Math.abs(theta);
  // octant j (even), then x reduced by j pi/4 in three float32 pieces (Cody-Waite)
  let j = Math.trunc(f32(x * FOPI));
  j = (j + 1) & ~1;
  const y = j;
  const sinSign = (j & 4) !== 0 !== theta < 0;
  const cosSign = ((j - 2) & 4) === 0;
  const cosPoly = (j & 2) === 0;
  x = fma(y, MINUS_DP1, x);
  x = fma(y, MINUS_DP2, x);
  x = fma(y, MINUS_DP3, x);
  const z = f32(x * x);
  let c = fma(COSCOF_P0, z, COSCOF_P1);
  c = fma(c, z, COSCOF_P2);
  c = fma(f32(c * z), z, -f32(z * 0.5));
  c = f32(c + 1);
  let s = fma(SINCOF_P0, z, SINCOF_P1);
  s = fma(s, z, SINCOF_P2);
  s = fma(x, f32(s * z), x);
  const sv = cosPoly ? s : c;
  const cv = cosPoly ? c : s;
  sinCos[0] = sinSign ? -sv : sv;
  sinCos[1] = cosSign ? -cv : cv;
}

/**
 * normal_fill_16_AVX2 in place on data[o .. o + 16): torch's uniforms (multiples of 2^-24 in
 * [0, 1)) in, standard normals out. The final `* std + mean` (std 1, mean 0) only turns a -0
 * into +0.
 */
export function boxMuller16Avx2(data: Float32Array, o: number): void {
  for (let j = 0; j < 8; j++) {
    const u1 = f32(1 - data[o + j]!);
    const u2 = data[o + j + 8]!;
    const radius = f32(Math.sqrt(f32(-2 * log256(u1))));
    sincos256(f32(TWO_PI_F32 * u2));
    data[o + j] = f32(radius * sinCos[1]!) + 0;
    data[o + j + 8] = f32(radius * sinCos[0]!) + 0;
  }
}

export class TorchCpuGenerator {
  private readonly mt = new Uint32Array(N);
  private index = N;
  private seed = 0n;
  /** normal_distribution<double>'s second Box-Muller value, kept across calls like torch's. */
  private cachedNormal: number | null = null;

  constructor(seed: number | bigint = TORCH_DEFAULT_SEED) {
    this.manualSeed(seed);
  }

  /** torch.Generator.manual_seed: any integer in [-2^63, 2^64); resets the cached normal. */
  manualSeed(seed: number | bigint): this {
    this.seed = toUint64Seed(seed);
    const mt = this.mt;
    mt[0] = Number(this.seed & 0xffffffffn);
    for (let i = 1; i < N; i++) {
      const prev = mt[i - 1]!;
      mt[i] = Math.imul(1812433253, prev ^ (prev >>> 30)) + i;
    }
    this.index = N;
    this.cachedNormal = null;
    return this;
  }

  /** torch.Generator.initial_seed: the uint64 last given to manualSeed. */
  initialSeed(): bigint {
    return this.seed;
  }

  private twist(): void {
    const mt = this.mt;
    let k = 0;
    for (; k < N - M; k++) {
      const y = (mt[k]! & UPPER) | (mt[k + 1]! & LOWER);
      mt[k] = mt[k + M]! ^ (y >>> 1) ^ (mt[k + 1]! & 1 ? MATRIX_A : 0);
    }
    for (; k < N - 1; k++) {
      const y = (mt[k]! & UPPER) | (mt[k + 1]! & LOWER);
      mt[k] = mt[k + M - N]! ^ (y >>> 1) ^ (mt[k + 1]! & 1 ? MATRIX_A : 0);
    }
    const y = (mt[N - 1]! & UPPER) | (mt[0]! & LOWER);
    mt[N - 1] = mt[M - 1]! ^ (y >>> 1) ^ (mt[0]! & 1 ? MATRIX_A : 0);
    this.index = 0;
  }

  /** The generator's next 32-bit word (CPUGeneratorImpl::random). */
  nextUint32(): number {
    if (this.index >= N) this.twist();
    let y = this.mt[this.index++]!;
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }

  /** uniform_real_distribution<double>(0, 1): 53 bits of random64 (high word drawn first). */
  private nextDouble(): number {
    const hi = this.nextUint32();
    const lo = this.nextUint32();
    return ((hi & 0x1fffff) * 4294967296 + lo) / 9007199254740992;
  }

  /** normal_distribution<double>(0, 1) with torch's one-value cache. */
  private nextNormalDouble(): number {
    if (this.cachedNormal !== null) {
      const v = this.cachedNormal;
      this.cachedNormal = null;
      return v;
    }
    const u1 = this.nextDouble();
    const u2 = this.nextDouble();
    const r = Math.sqrt(-2 * Math.log1p(-u2));
    const theta = 2 * Math.PI * u1;
    this.cachedNormal = r * Math.sin(theta);
    return r * Math.cos(theta);
  }

  /** torch.randn(shape, generator=this) in float32, advancing this generator as torch does. */
  randn(shape: readonly number[]): Float32Array {
    let n = 1;
    for (const [i, d] of shape.entries()) {
      if (!Number.isSafeInteger(d) || d < 0) throw new RangeError(`randn: shape[${i}] must be a non-negative integer; got ${d}`);
      n *= d;
      if (n > MAX_RANDN_ELEMENTS) throw new RangeError(`randn: shape [${shape.join(', ')}] has more than ${MAX_RANDN_ELEMENTS} elements`);
    }
    const out = new Float32Array(n);
    if (n < 16) {
      for (let i = 0; i < n; i++) out[i] = this.nextNormalDouble() + 0;
      return out;
    }
    this.fillUniform(out, 0, n);
    for (let i = 0; i + 16 <= n; i += 16) boxMuller16Avx2(out, i);
    if (n % 16 !== 0) {
      this.fillUniform(out, n - 16, n);
      boxMuller16Avx2(out, n - 16);
    }
    return out;
  }

  private fillUniform(out: Float32Array, from: number, to: number): void {
    for (let i = from; i < to; i++) out[i] = (this.nextUint32() & 0xffffff) * 5.960464477539063e-8; // 2^-24
  }
}
