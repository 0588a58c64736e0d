/**
 * Image I/O for the engine: PNG through fast-png (pure JS, so the same request gives the
 * same bytes on every machine), JPEG decoding through jpeg-js, and the two conversions the
 * pipeline needs: decoder output [-1, 1] -> 8-bit RGB, and a reference image -> the image
 * encoder's [-1, 1] CHW input. Resizing is a small area/bilinear filter written here: the
 * inputs are a few hundred pixels, and sharp's native build would be the only native
 * image dependency for this one call.
 */
import { decode as decodePngBytes, encode as encodePngBytes } from 'fast-png';
import jpeg from 'jpeg-js';
import { EngineInputError } from './types.ts';

export interface RgbImage {
  width: number;
  height: number;
  /** RGB, 8 bits, row-major */
  data: Uint8Array;
}

const MAX_DECODED_PIXELS = 4096 * 4096;

export function encodePng(img: RgbImage): Uint8Array {
  return encodePngBytes({ width: img.width, height: img.height, data: img.data, channels: 3, depth: 8 });
}

/** Decode PNG or JPEG (by magic bytes) to 8-bit RGB; alpha is composited over white. */
export function decodeImage(bytes: Uint8Array, field = 'reference_image'): RgbImage {
  const isPng = bytes.length > 8 && bytes[0] === 0x89 && bytes[1] === 0x50 && bytes[2] === 0x4e && bytes[3] === 0x47;
  const isJpeg = bytes.length > 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff;
  try {
    if (isPng) {
      const png = decodePngBytes(bytes);
      if (png.width * png.height > MAX_DECODED_PIXELS) throw new Error(`${png.width}x${png.height} is larger than ${MAX_DECODED_PIXELS} pixels`);
      return toRgb(png.width, png.height, png.channels, png.depth, png.data as Uint8Array | Uint16Array, png.palette as number[][] | undefined);
    }
    if (isJpeg) {
      const j = jpeg.decode(bytes, { useTArray: true, formatAsRGBA: true, maxResolutionInMP: MAX_DECODED_PIXELS / 1e6, maxMemoryUsageInMB: 256 });
      return toRgb(j.width, j.height, 4, 8, j.data, undefined);
    }
  } catch (err) {
    throw new EngineInputError(`${field}: the image could not be decoded: ${(err as Error).message}`, field);
  }
  throw new EngineInputError(`${field}: not a PNG or JPEG image`, field);
}

function toRgb(width: number, height: number, channels: number, depth: number, data: Uint8Array | Uint16Array, palette: number[][] | undefined): RgbImage {
  const out = new Uint8Array(width * height * 3);
  const scale = depth === 16 ? 1 / 257 : depth < 8 && !palette ? 255 / (2 ** depth - 1) : 1;
  for (let i = 0; i < width * height; i++) {
    let r: number, g: number, b: number, a = 255;
    if (palette) {
      const e = palette[data[i]!] ?? [0, 0, 0];
      [r, g, b] = [e[0]!, e[1]!, e[2]!];
      if (e.length > 3) a = e[3]!;
    } else if (channels >= 3) {
      r = data[i * channels]! * scale;
      g = data[i * channels + 1]! * scale;
      b = data[i * channels + 2]! * scale;
      if (channels === 4) a = data[i * channels + 3]! * scale;
    } else {
      r = g = b = data[i * channels]! * scale;
      if (channels === 2) a = data[i * channels + 1]! * scale;
    }
    const alpha = a / 255;
    out[i * 3] = Math.round(r * alpha + 255 * (1 - alpha));
    out[i * 3 + 1] = Math.round(g * alpha + 255 * (1 - alpha));
    out[i * 3 + 2] = Math.round(b * alpha + 255 * (1 - alpha));
  }
  return { width, height, data: out };
}

/** Area average when shrinking, bilinear when enlarging; exact copy at the same size. */
export function resizeRgb(img: RgbImage, width: number, height: number): RgbImage {
  if (img.width === width && img.height === height) return img;
  const out = new Uint8Array(width * height * 3);
  const sx = img.width / width;
  const sy = img.height / height;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      for (let c = 0; c < 3; c++) {
        let v: number;
        if (sx >= 1 && sy >= 1) {
          const x0 = x * sx, x1 = (x + 1) * sx, y0 = y * sy, y1 = (y + 1) * sy;
          let sum = 0, wsum = 0;
          for (let yy = Math.floor(y0); yy < Math.ceil(y1); yy++) {
            const wy = Math.min(yy + 1, y1) - Math.max(yy, y0);
            for (let xx = Math.floor(x0); xx < Math.ceil(x1); xx++) {
              const wx = Math.min(xx + 1, x1) - Math.max(xx, x0);
              sum += img.data[(yy * img.width + xx) * 3 + c]! * wx * wy;
              wsum += wx * wy;
            }
          }
          v = sum / wsum;
        } else {
          const fx = Math.min(Math.max((x + 0.5) * sx - 0.5, 0), img.width - 1);
          const fy = Math.min(Math.max((y + 0.5) * sy - 0.5, 0), img.height - 1);
          const x0 = Math.floor(fx), y0 = Math.floor(fy);
          const x1 = Math.min(x0 + 1, img.width - 1), y1 = Math.min(y0 + 1, img.height - 1);
          const ax = fx - x0, ay = fy - y0;
          const p = (xx: number, yy: number) => img.data[(yy * img.width + xx) * 3 + c]!;
          v = (p(x0, y0) * (1 - ax) + p(x1, y0) * ax) * (1 - ay) + (p(x0, y1) * (1 - ax) + p(x1, y1) * ax) * ay;
        }
        out[(y * width + x) * 3 + c] = Math.round(v);
      }
    }
  }
  return { width, height, data: out };
}

/** 8-bit RGB -> [1, 3, H, W] float in [-1, 1] */
export function rgbToModel(img: RgbImage): Float32Array {
  const n = img.width * img.height;
  const out = new Float32Array(3 * n);
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < 3; c++) out[c * n + i] = (img.data[i * 3 + c]! / 255) * 2 - 1;
  }
  return out;
}

/**
 * VAE decoder output [3, H, W] in [-1, 1] -> 8-bit RGB: (x / 2 + 0.5) clipped to [0, 1],
 * times 255, rounded half up (tools/shapes/family.py to_uint8 rounds the same way).
 */
export function modelToRgb(chw: Float32Array, width: number, height: number, offset = 0): RgbImage {
  const n = width * height;
  const out = new Uint8Array(3 * n);
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < 3; c++) {
      const v = Math.min(Math.max(chw[offset + c * n + i]! / 2 + 0.5, 0), 1);
      out[i * 3 + c] = Math.floor(v * 255 + 0.5);
    }
  }
  return { width, height, data: out };
}
