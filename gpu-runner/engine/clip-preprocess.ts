/**
 * CLIP's image preprocessing, as transformers' CLIPImageProcessor (the slow, PIL-based one
 * that IP-Adapter's reference code instantiates) does it, so that an image encoder trained
 * on it sees the numbers it expects:
 *
 * 1. resize so the shorter side is `size` and the longer int(size × long / short), with
 *    PIL's bicubic resampling (Image.resize(..., BICUBIC), Pillow's libImaging/Resample.c:
 *    cubic convolution a = -0.5, the kernel widened by the scale factor when shrinking,
 *    separable, horizontal pass first, coefficients in 22-bit fixed point, 8-bit results
 *    after each pass);
 * 2. a center crop of height × width at top = (h - height) // 2, left = (w - width) // 2;
 * 3. value × rescale (in float64, then float32), then (v - mean[c]) / std[c] in float32;
 * 4. channels first, [3, height, width].
 *
 * Each step is reproduced bit for bit (test/fixtures/clip-preprocess, made with Pillow);
 * the decoders before it are not: JPEG decoders differ from libjpeg in the last level, and a
 * 16-bit PNG is rounded to 8 bits where PIL truncates. Written here rather than taken from
 * a library: sharp (libvips) and the canvas packages resample differently, and only Pillow's
 * exact arithmetic gives the encoder its training-time input. Memory stays within one
 * intermediate of out-width × the source rows the output reads.
 */
import type { RgbImage } from './image.ts';

export interface ClipPreprocess {
  /** the crop; the shorter side is resized to min(width, height) */
  width: number;
  height: number;
  rescale: number;
  mean: readonly [number, number, number];
  std: readonly [number, number, number];
}

const PRECISION_BITS = 32 - 8 - 2;
const SUPPORT = 2;

/** Pillow's bicubic_filter (a = -0.5). */
function bicubic(x: number): number {
  const a = -0.5;
  if (x < 0) x = -x;
  if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
  return 0;
}

interface Coeffs {
  ksize: number;
  /** per output pixel: first input pixel, count */
  bounds: Int32Array;
  /** fixed-point weights, ksize per output pixel */
  kk: Int32Array;
}

/** precompute_coeffs + normalize_coeffs_8bpc for one axis (box = the whole input). */
function coeffs(inSize: number, outSize: number): Coeffs {
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1);
  const support = SUPPORT * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const kk = new Int32Array(outSize * ksize);
  const k = new Float64Array(ksize);
  const ss = 1 / filterscale;
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    // C's (int) cast truncates; a negative start is clamped to 0 either way
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const xmax = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
    let ww = 0;
    for (let x = 0; x < xmax; x++) {
      const w = bicubic((x + xmin - center + 0.5) * ss);
      k[x] = w;
      ww += w;
    }
    for (let x = 0; x < xmax; x++) {
      const v = ww !== 0 ? k[x]! / ww : k[x]!;
      kk[xx * ksize + x] = v < 0 ? Math.trunc(-0.5 + v * (1 << PRECISION_BITS)) : Math.trunc(0.5 + v * (1 << PRECISION_BITS));
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  return { ksize, bounds, kk };
}

function clip8(v: number): number {
  if (v >= 1 << PRECISION_BITS << 8) return 255;
  if (v <= 0) return 0;
  return Math.floor(v / (1 << PRECISION_BITS));
}

const ROUND = 1 << (PRECISION_BITS - 1);

/** Image.resize((width, height), Image.BICUBIC) of an RGB image, bit for bit as Pillow does it. */
export function resizeBicubicPil(img: RgbImage, width: number, height: number): RgbImage {
  if (!(Number.isInteger(width) && Number.isInteger(height) && width > 0 && height > 0)) throw new RangeError(`resize to ${width}×${height}: sides must be positive integers`);
  if (img.width === width && img.height === height) return { width, height, data: Uint8Array.from(img.data) };
  const needH = width !== img.width;
  const needV = height !== img.height;
  const cv = coeffs(img.height, height);
  let src = img;
  let rowOffset = 0;
  if (needH) {
    // only the source rows the vertical pass reads
    const first = cv.bounds[0]!;
    const last = cv.bounds[(height - 1) * 2]! + cv.bounds[(height - 1) * 2 + 1]!;
    const rows = needV ? last - first : img.height;
    rowOffset = needV ? first : 0;
    const ch = coeffs(img.width, width);
    const out = new Uint8Array(width * rows * 3);
    for (let y = 0; y < rows; y++) {
      const inRow = (y + rowOffset) * img.width * 3;
      for (let xx = 0; xx < width; xx++) {
        const xmin = ch.bounds[xx * 2]!;
        const n = ch.bounds[xx * 2 + 1]!;
        const k = xx * ch.ksize;
        let s0 = ROUND;
        let s1 = ROUND;
        let s2 = ROUND;
        for (let x = 0; x < n; x++) {
          const w = ch.kk[k + x]!;
          const p = inRow + (x + xmin) * 3;
          s0 += img.data[p]! * w;
          s1 += img.data[p + 1]! * w;
          s2 += img.data[p + 2]! * w;
        }
        const o = (y * width + xx) * 3;
        out[o] = clip8(s0);
        out[o + 1] = clip8(s1);
        out[o + 2] = clip8(s2);
      }
    }
    src = { width, height: rows, data: out };
  }
  if (!needV) return src;
  const out = new Uint8Array(src.width * height * 3);
  for (let yy = 0; yy < height; yy++) {
    const ymin = cv.bounds[yy * 2]! - rowOffset;
    const n = cv.bounds[yy * 2 + 1]!;
    const k = yy * cv.ksize;
    for (let xx = 0; xx < src.width; xx++) {
      let s0 = ROUND;
      let s1 = ROUND;
      let s2 = ROUND;
      for (let y = 0; y < n; y++) {
        const w = cv.kk[k + y]!;
        const p = ((y + ymin) * src.width + xx) * 3;
        s0 += src.data[p]! * w;
        s1 += src.data[p + 1]! * w;
        s2 += src.data[p + 2]! * w;
      }
      const o = (yy * src.width + xx) * 3;
      out[o] = clip8(s0);
      out[o + 1] = clip8(s1);
      out[o + 2] = clip8(s2);
    }
  }
  return { width: src.width, height, data: out };
}

/** The size of the resize before the crop: the shorter side becomes `short`, as transformers computes it. */
export function shortestEdgeSize(width: number, height: number, short: number): [number, number] {
  if (width <= height) return [short, Math.trunc((short * height) / width)];
  return [Math.trunc((short * width) / height), short];
}

/** Steps 1 and 2: the 8-bit crop the encoder's input is computed from. */
export function clipResizeCrop(img: RgbImage, p: Pick<ClipPreprocess, 'width' | 'height'>): RgbImage {
  const [w, h] = shortestEdgeSize(img.width, img.height, Math.min(p.width, p.height));
  const resized = resizeBicubicPil(img, w, h);
  const top = Math.floor((h - p.height) / 2);
  const left = Math.floor((w - p.width) / 2);
  const out = new Uint8Array(p.width * p.height * 3);
  for (let y = 0; y < p.height; y++) out.set(resized.data.subarray(((y + top) * w + left) * 3, ((y + top) * w + left + p.width) * 3), y * p.width * 3);
  return { width: p.width, height: p.height, data: out };
}

/** The whole preprocessing: [3, height, width] float32, channels first. */
export function clipPreprocess(img: RgbImage, p: ClipPreprocess): Float32Array {
  const crop = clipResizeCrop(img, p);
  const f = Math.fround;
  const mean = p.mean.map(f);
  const std = p.std.map(f);
  const n = p.width * p.height;
  const out = new Float32Array(3 * n);
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < 3; c++) out[c * n + i] = f(f(f(crop.data[i * 3 + c]! * p.rescale) - mean[c]!) / std[c]!);
  }
  return out;
}
