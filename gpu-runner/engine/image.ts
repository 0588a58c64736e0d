/**
 * Image I/O for the engine: PNG through fast-png (pure JS, so the same request gives the
 * same bytes on every machine), JPEG decoding through jpeg-js, and the two conversions the
 * pipeline needs: decoder output [-1, 1] -> 8-bit RGB, and a reference image -> the image
 * encoder's [-1, 1] CHW input. Resizing is a small area/bilinear filter written here: the
 * inputs are a few hundred pixels, and sharp's native build would be the only native
 * image dependency for this one call.
 */
import { constants as zlibConstants, crc32 as zlibCrc32, deflateSync, inflateSync } from 'node:zlib';
import { decode as decodePngBytes, encode as encodePngBytes } from 'fast-png';
import jpeg from 'jpeg-js';
import { IMAGE_LIMITS, PNG_HEADER_BYTES, checkImage, chunkTypeName, type JpegHeader, type PngHeader } from '../../shared/image-header.ts';
import { EngineInputError } from './types.ts';

export interface RgbImage {
  width: number;
  height: number;
  /** RGB, 8 bits, row-major */
  data: Uint8Array;
}

export function encodePng(img: RgbImage): Uint8Array {
  return encodePngBytes({ width: img.width, height: img.height, data: img.data, channels: 3, depth: 8 });
}

/**
 * Decode PNG or JPEG to 8-bit RGB; alpha is composited over white, or dropped (`alpha:
 * 'drop'`, what PIL's convert("RGB") does, which CLIP's preprocessing starts with). The header is checked
 * against IMAGE_LIMITS before a byte is inflated (the edge checked it too, but an upload
 * can be replaced after the job was accepted), and each decoder is then held to what the
 * header declared, so no image takes more memory than its allowed size needs.
 */
export function decodeImage(bytes: Uint8Array, field = 'reference_image', opts: { alpha?: 'white' | 'drop' } = {}): RgbImage {
  const over = opts.alpha === 'drop' ? null : 255;
  const checked = checkImage(bytes, IMAGE_LIMITS);
  if (!checked.ok) throw new EngineInputError(`${field}: ${checked.message}`, field);
  const header = checked.header;
  try {
    if (header.type === 'image/png') {
      const png = decodePngBytes(boundedPng(bytes, header));
      // fast-png leaves 1, 2 and 4-bit samples packed, as the file has them (only gray and palette images have them)
      const data = png.depth < 8 ? unpackSamples(png.data as Uint8Array, png.width, png.height, png.depth) : (png.data as Uint8Array | Uint16Array);
      return toRgb(png.width, png.height, png.channels, png.depth, data, png.palette as number[][] | undefined, over);
    }
    const j = jpeg.decode(bytes, {
      useTArray: true,
      formatAsRGBA: true,
      maxResolutionInMP: IMAGE_LIMITS.maxPixels / 1e6,
      maxMemoryUsageInMB: jpegDecoderBytes(header, bytes.length) / 2 ** 20,
    });
    if (j.width !== header.width || j.height !== header.height) throw new Error(`decoded ${j.width}×${j.height} but the header declares ${header.width}×${header.height}`);
    return toRgb(j.width, j.height, 4, 8, j.data, undefined, over);
  } catch (err) {
    throw new EngineInputError(`${field}: the image could not be decoded: ${(err as Error).message}`, field);
  }
}

/** IDAT chunks handed to fast-png: small, so its inflater never grows one buffer to the whole image */
const IDAT_CHUNK_BYTES = 256 * 1024;

/**
 * The PNG as fast-png may safely see it. fast-png inflates every IDAT byte it is given, and
 * every iCCP profile, with no limit and before anything compares the result with the
 * header: a 1 MB file of deflated zeros becomes gigabytes. So the image data is inflated
 * here, by node's zlib stopped at the length the header implies (anything longer is a lie),
 * and handed over re-encoded as stored deflate blocks of exactly that length, with only the
 * chunks decoding needs (IHDR, PLTE, tRNS, IDAT, IEND): fast-png's own inflater then cannot
 * produce a byte more than was checked.
 */
function boundedPng(b: Uint8Array, h: PngHeader): Uint8Array {
  const compressed = new Uint8Array(b.length); // the IDAT contents, at most the file
  let compressedBytes = 0;
  let plte: Uint8Array | null = null;
  let trns: Uint8Array | null = null;
  let idatSeen = false;
  let idatEnded = false;
  let ended = false;
  for (let at = PNG_HEADER_BYTES; !ended; ) {
    if (at + 12 > b.length) throw new Error('the file ends before its IEND chunk');
    const length = readU32(b, at);
    const type = chunkTypeName(b, at + 4);
    const start = at + 8;
    if (length > 2 ** 31 - 1 || start + length + 4 > b.length) throw new Error(`the ${type} chunk at byte ${at} runs past the end of the file`);
    const data = b.subarray(start, start + length);
    if (idatSeen && type !== 'IDAT') idatEnded = true;
    switch (type) {
      case 'IDAT':
        if (idatEnded) throw new Error('the IDAT chunks are not consecutive');
        idatSeen = true;
        compressed.set(data, compressedBytes);
        compressedBytes += length;
        break;
      case 'PLTE':
        if (idatSeen || plte) throw new Error('PLTE must come once, before the image data');
        if (length === 0 || length % 3 !== 0 || length / 3 > 256) throw new Error(`PLTE holds ${length} bytes; it takes 1 to 256 entries of 3 bytes`);
        plte = data;
        break;
      case 'tRNS': {
        const allowed = h.colorType === 0 ? length === 2 : h.colorType === 2 ? length === 6 : h.colorType === 3 ? plte !== null && length <= plte.length / 3 : false;
        if (idatSeen || trns || !allowed) throw new Error(`a tRNS chunk of ${length} bytes does not fit color type ${h.colorType}`);
        trns = data;
        break;
      }
      case 'IEND':
        ended = true;
        break;
      case 'IHDR':
        throw new Error('a second IHDR chunk');
      default:
        // ancillary chunks (iCCP, text, APNG frames, …) are dropped; an unknown critical one (upper-case first letter) may change how to decode
        if ((b[at + 4]! & 0x20) === 0) throw new Error(`unknown critical chunk ${type}`);
    }
    at = start + length + 4;
  }
  if (!idatSeen) throw new Error('no image data (IDAT)');
  if (h.colorType === 3 && !plte) throw new Error('an indexed-color PNG needs a PLTE chunk');

  let raw: Uint8Array;
  try {
    raw = inflateSync(compressed.subarray(0, compressedBytes), { maxOutputLength: h.dataBytes });
  } catch (err) {
    if ((err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE') {
      throw new Error(`the image data inflates to more than the ${h.dataBytes} bytes a ${h.width}×${h.height} image of this kind holds`);
    }
    throw new Error(`the image data is not a valid zlib stream (${(err as Error).message})`);
  }
  if (raw.length !== h.dataBytes) throw new Error(`the image data inflates to ${raw.length} bytes; a ${h.width}×${h.height} image of this kind holds ${h.dataBytes}`);
  const stored = deflateSync(raw, { level: zlibConstants.Z_NO_COMPRESSION });

  const chunks: Uint8Array[] = [b.subarray(8, PNG_HEADER_BYTES)];
  if (plte) chunks.push(pngChunk('PLTE', plte));
  if (trns) chunks.push(pngChunk('tRNS', trns));
  for (let i = 0; i < stored.length; i += IDAT_CHUNK_BYTES) chunks.push(pngChunk('IDAT', stored.subarray(i, i + IDAT_CHUNK_BYTES)));
  chunks.push(pngChunk('IEND', new Uint8Array(0)));
  const out = new Uint8Array(8 + chunks.reduce((n, c) => n + c.length, 0));
  out.set(b.subarray(0, 8));
  let offset = 8;
  for (const c of chunks) {
    out.set(c, offset);
    offset += c.length;
  }
  return out;
}

function pngChunk(type: string, data: Uint8Array): Uint8Array {
  const c = new Uint8Array(12 + data.length);
  const view = new DataView(c.buffer);
  view.setUint32(0, data.length);
  for (let i = 0; i < 4; i++) c[4 + i] = type.charCodeAt(i);
  c.set(data, 8);
  view.setUint32(8 + data.length, zlibCrc32(c.subarray(4, 8 + data.length)));
  return c;
}

function readU32(b: Uint8Array, at: number): number {
  return ((b[at]! << 24) | (b[at + 1]! << 16) | (b[at + 2]! << 8) | b[at + 3]!) >>> 0;
}

/**
 * What jpeg-js may allocate for this frame header, by its own accounting
 * (maxMemoryUsageInMB): 256 bytes per 8×8 block of every component, padded to whole MCUs;
 * each component's sample plane; the component and RGBA outputs; and its tables, which the
 * file bounds (at most 4 accounted bytes per file byte). A scan or frame beyond the header
 * then exceeds the cap and is refused before jpeg-js allocates for it.
 */
export function jpegDecoderBytes(h: JpegHeader, fileBytes: number): number {
  const maxH = Math.max(...h.sampling.map((s) => s.h));
  const maxV = Math.max(...h.sampling.map((s) => s.v));
  const mcusPerLine = Math.ceil(h.width / 8 / maxH);
  const mcusPerColumn = Math.ceil(h.height / 8 / maxV);
  let bytes = h.width * h.height * (h.channels + 4) + 4 * fileBytes;
  for (const { h: ch, v: cv } of h.sampling) {
    bytes += mcusPerLine * ch * mcusPerColumn * cv * 256;
    const blocksPerLine = Math.ceil((Math.ceil(h.width / 8) * ch) / maxH);
    const blocksPerColumn = Math.ceil((Math.ceil(h.height / 8) * cv) / maxV);
    bytes += blocksPerLine * 8 * blocksPerColumn * 8;
  }
  return bytes;
}

/** Rows of 1, 2 or 4-bit samples, each row starting on a byte -> one byte per sample. */
function unpackSamples(packed: Uint8Array, width: number, height: number, depth: number): Uint8Array {
  const out = new Uint8Array(width * height);
  const rowBytes = Math.ceil((width * depth) / 8);
  const mask = (1 << depth) - 1;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const bit = x * depth;
      out[y * width + x] = (packed[y * rowBytes + (bit >> 3)]! >> (8 - depth - (bit & 7))) & mask;
    }
  }
  return out;
}

/** `over`: the gray level alpha is composited over, or null to drop alpha */
function toRgb(width: number, height: number, channels: number, depth: number, data: Uint8Array | Uint16Array, palette: number[][] | undefined, over: number | null): RgbImage {
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
    const alpha = over === null ? 1 : a / 255;
    const bg = over ?? 0;
    out[i * 3] = Math.round(r * alpha + bg * (1 - alpha));
    out[i * 3 + 1] = Math.round(g * alpha + bg * (1 - alpha));
    out[i * 3 + 2] = Math.round(b * alpha + bg * (1 - alpha));
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
