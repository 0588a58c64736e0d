/**
 * Seeded Gaussian noise for initial latents: xoshiro128** seeded through splitmix32 from
 * (seed, image, model), Box-Muller in float64, rounded to float32. Never Math.random, so
 * a request and its seed reproduce byte for byte; tools/shapes/noise.py implements the
 * same generator, so the Python control table and `npm run eval` start from the same noise.
 * Written here rather than taken from a library because bit-compatibility with the Python
 * side is the point, and the generator is twenty lines.
 */
const GOLDEN = 0x9e3779b9;

function splitmix32(state: number): [number, number] {
  state = (state + GOLDEN) >>> 0;
  let z = state;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
  return [state, (z ^ (z >>> 16)) >>> 0];
}

const rotl = (x: number, k: number): number => ((x << k) | (x >>> (32 - k))) >>> 0;

export class Xoshiro128 {
  private readonly s = new Uint32Array(4);

  constructor(seed: number, image = 0, model = 0) {
    let st = (seed ^ Math.imul(image, 0x9e3779b1) ^ Math.imul(model, 0x85ebca77)) >>> 0;
    for (let i = 0; i < 4; i++) {
      const [next, v] = splitmix32(st);
      st = next;
      this.s[i] = v;
    }
  }

  nextUint32(): number {
    const s = this.s;
    const result = Math.imul(rotl(Math.imul(s[1]!, 5) >>> 0, 7), 9) >>> 0;
    const t = (s[1]! << 9) >>> 0;
    s[2]! ^= s[0]!;
    s[3]! ^= s[1]!;
    s[1]! ^= s[2]!;
    s[0]! ^= s[3]!;
    s[2]! ^= t;
    s[3] = rotl(s[3]!, 11);
    return result;
  }
}

/** n standard normal values for (seed, image, model). */
export function gaussianNoise(seed: number, image: number, model: number, n: number): Float32Array {
  const rng = new Xoshiro128(seed, image, model);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    const u1 = (rng.nextUint32() + 1) / 4294967296; // (0, 1]
    const u2 = rng.nextUint32() / 4294967296; // [0, 1)
    const r = Math.sqrt(-2 * Math.log(u1));
    out[i] = r * Math.cos(2 * Math.PI * u2);
    if (i + 1 < n) out[i + 1] = r * Math.sin(2 * Math.PI * u2);
  }
  return out;
}

/**
 * The eta-noise stream: the variance noise DDIM adds at step `step` of image `image` when
 * eta > 0. The seed is salted so the stream is apart from the initial latents' noise, and
 * each (image, step) pair has its own generator (a step index is below 1000, the most a
 * 1000-timestep schedule can take).
 */
const ETA_NOISE_SALT = 0x5eed;

export function etaNoise(seed: number, image: number, step: number, model: number, n: number): Float32Array {
  return gaussianNoise(seed ^ ETA_NOISE_SALT, image * 1000 + step, model, n);
}
