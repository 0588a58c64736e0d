/**
 * The size an image declares, read from its header alone (PNG IHDR, JPEG SOFn) without
 * decoding a pixel, and the limits every reference image must meet.
 *
 * A PNG or JPEG of a few hundred KB can declare 30000×30000 pixels; a decoder that trusts
 * it inflates gigabytes before anyone looks at the size. So the edge refuses over-limit
 * images by their header (422 naming the field), and the runner checks the same header
 * again before it decodes (uploads can be replaced behind the edge's back) and then holds
 * the decoder to what the header declared (gpu-runner/engine/image.ts).
 *
 * Lives in shared/ because the edge (web-standard APIs only) and the runner must agree on
 * one parser and one set of limits. Written here rather than taken from a library: the
 * common one (image-size) reads a dozen formats, throws plain Errors, and checks neither
 * the IHDR checksum and field combinations nor a JPEG's second frame header; this needs
 * only two formats, a typed error, and no allocation beyond the result, whatever the
 * bytes claim.
 */

/** What every reference image must meet; the engine resizes it to a few hundred pixels. */
export interface ImageLimits {
  /** widest or highest, in pixels */
  maxSide: number;
  /** width × height */
  maxPixels: number;
  /** decoded pixel data: width × height × channels × bytes per sample (16-bit samples count 2) */
  maxPixelBytes: number;
}

/**
 * 4096×4096 in all (a 12 MP phone photo fits), 16384 on a side (a JPEG decoder allocates
 * whole 8×8 blocks, so a 1×16M image would cost 8× its pixels), and 64 MiB decoded (8-bit
 * RGBA at the full pixel count; 16-bit RGBA stops at 8 MP).
 */
export const IMAGE_LIMITS: ImageLimits = Object.freeze({
  maxSide: 16384,
  maxPixels: 4096 * 4096,
  maxPixelBytes: 64 * 1024 * 1024,
});

export type ImageType = 'image/png' | 'image/jpeg';

interface HeaderCommon {
  width: number;
  height: number;
  /** samples per pixel (PNG: by color type; JPEG: components) */
  channels: number;
  /** bits per sample */
  bitDepth: number;
  /** width × height × channels × bytes per sample: what a decoder holds once it is done */
  pixelBytes: number;
}

export interface PngHeader extends HeaderCommon {
  type: 'image/png';
  colorType: 0 | 2 | 3 | 4 | 6;
  interlaced: boolean;
  /**
   * The exact length of the inflated image data (every scanline with its filter byte, per
   * Adam7 pass when interlaced). An IDAT stream that inflates to more is lying.
   */
  dataBytes: number;
}

export interface JpegHeader extends HeaderCommon {
  type: 'image/jpeg';
  /** the frame marker's second byte: 0xc0 baseline, 0xc1 extended, 0xc2 progressive, … */
  sof: number;
  /** sampling factors of each component, as the frame header lists them */
  sampling: { h: number; v: number }[];
}

export type ImageHeader = PngHeader | JpegHeader;

/** The bytes are not a PNG or JPEG, or their header is damaged; the message says which. */
export class ImageHeaderError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ImageHeaderError';
  }
}

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

/** The type by the first bytes alone, or null. */
export function imageTypeOf(bytes: Uint8Array): ImageType | null {
  if (bytes.length >= 8 && PNG_SIGNATURE.every((b, i) => bytes[i] === b)) return 'image/png';
  if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return 'image/jpeg';
  return null;
}

/**
 * The header of a PNG or JPEG. Reads the bytes in place and allocates nothing in
 * proportion to them or to what they claim; throws ImageHeaderError and nothing else.
 */
export function readImageHeader(bytes: Uint8Array): ImageHeader {
  const type = imageTypeOf(bytes);
  if (type === 'image/png') return readPngHeader(bytes);
  if (type === 'image/jpeg') return readJpegHeader(bytes);
  throw new ImageHeaderError('not a PNG or JPEG image (by its first bytes)');
}

/** Why the image may not be decoded here, or null when it may. */
export function imageProblem(h: ImageHeader, limits: ImageLimits = IMAGE_LIMITS): string | null {
  if (h.width > limits.maxSide || h.height > limits.maxSide || h.width * h.height > limits.maxPixels || h.pixelBytes > limits.maxPixelBytes) {
    const mp = ((h.width * h.height) / 1e6).toLocaleString('en-US', { maximumFractionDigits: 1 });
    return (
      `the image is ${h.width}×${h.height} (${mp} MP, ${h.pixelBytes} bytes decoded); at most ${limits.maxSide} pixels wide or high, ` +
      `${limits.maxPixels} pixels in all and ${limits.maxPixelBytes} bytes decoded (width × height × channels × bytes per sample) are allowed`
    );
  }
  if (h.type === 'image/png' && h.interlaced && h.bitDepth < 8) {
    // fast-png 8 reads such passes as if every sample took a byte: noise, or a misleading "Unsupported filter"
    return `the PNG is interlaced with ${h.bitDepth}-bit samples; interlaced PNGs are supported at 8 or 16 bits, and any PNG without interlacing`;
  }
  if (h.type === 'image/jpeg') {
    if (!DECODABLE_SOF.has(h.sof)) {
      return `the JPEG is ${JPEG_PROCESS[h.sof] ?? 'of an unknown kind'}; baseline, extended and progressive Huffman-coded JPEGs are supported`;
    }
    if (h.bitDepth !== 8) return `the JPEG has ${h.bitDepth}-bit samples; 8-bit JPEGs are supported`;
    if (h.channels !== 1 && h.channels !== 3 && h.channels !== 4) {
      return `the JPEG has ${h.channels} color components; 1 (gray), 3 (color) or 4 (CMYK) are supported`;
    }
  }
  return null;
}

/** Header and verdict in one: what the edge and the runner both ask of a reference image. */
export function checkImage(bytes: Uint8Array, limits: ImageLimits = IMAGE_LIMITS): { ok: true; header: ImageHeader } | { ok: false; message: string } {
  let header: ImageHeader;
  try {
    header = readImageHeader(bytes);
  } catch (err) {
    if (err instanceof ImageHeaderError) return { ok: false, message: err.message };
    throw err;
  }
  const problem = imageProblem(header, limits);
  return problem === null ? { ok: true, header } : { ok: false, message: problem };
}

// ---- PNG ------------------------------------------------------------------------------

const PNG_CHANNELS: Record<number, number> = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 };
const PNG_DEPTHS: Record<number, number[]> = { 0: [1, 2, 4, 8, 16], 2: [8, 16], 3: [1, 2, 4, 8], 4: [8, 16], 6: [8, 16] };
/** Adam7 passes: x0, y0, dx, dy */
const ADAM7 = [
  [0, 0, 8, 8],
  [4, 0, 8, 8],
  [0, 4, 4, 8],
  [2, 0, 4, 4],
  [0, 2, 2, 4],
  [1, 0, 2, 2],
  [0, 1, 1, 2],
] as const;
const PNG_MAX_DIMENSION = 2 ** 31 - 1;
/** signature 8 + IHDR length 4 + type 4 + data 13 + CRC 4 */
export const PNG_HEADER_BYTES = 33;

function readPngHeader(b: Uint8Array): PngHeader {
  if (b.length < PNG_HEADER_BYTES) throw new ImageHeaderError(`PNG: the file ends inside its header (${b.length} bytes; the header takes ${PNG_HEADER_BYTES})`);
  const length = u32(b, 8);
  const type = chunkTypeName(b, 12);
  if (type !== 'IHDR') throw new ImageHeaderError(`PNG: the first chunk must be IHDR, not ${type}`);
  if (length !== 13) throw new ImageHeaderError(`PNG: the IHDR chunk must hold 13 bytes, not ${length}`);
  if (crc32(b, 12, 29) !== u32(b, 29)) throw new ImageHeaderError('PNG: the header (IHDR) checksum does not match; the file is damaged');
  const width = u32(b, 16);
  const height = u32(b, 20);
  const bitDepth = b[24]!;
  const colorType = b[25]!;
  if (width === 0 || height === 0 || width > PNG_MAX_DIMENSION || height > PNG_MAX_DIMENSION) {
    throw new ImageHeaderError(`PNG: width and height must be 1 to ${PNG_MAX_DIMENSION} (the header says ${width}×${height})`);
  }
  const depths = PNG_DEPTHS[colorType];
  if (!depths) throw new ImageHeaderError(`PNG: color type ${colorType} does not exist (0, 2, 3, 4 or 6)`);
  if (!depths.includes(bitDepth)) throw new ImageHeaderError(`PNG: bit depth ${bitDepth} is not allowed with color type ${colorType} (${depths.join(', ')})`);
  if (b[26] !== 0) throw new ImageHeaderError(`PNG: compression method ${b[26]} does not exist (0)`);
  if (b[27] !== 0) throw new ImageHeaderError(`PNG: filter method ${b[27]} does not exist (0)`);
  if (b[28]! > 1) throw new ImageHeaderError(`PNG: interlace method ${b[28]} does not exist (0 or 1)`);
  const channels = PNG_CHANNELS[colorType]!;
  const interlaced = b[28] === 1;
  const bitsPerPixel = channels * bitDepth;
  const scanlines = (w: number, h: number) => (w === 0 || h === 0 ? 0 : h * (1 + Math.ceil((w * bitsPerPixel) / 8)));
  const dataBytes = interlaced
    ? ADAM7.reduce((sum, [x0, y0, dx, dy]) => sum + scanlines(Math.ceil((width - x0) / dx), Math.ceil((height - y0) / dy)), 0)
    : scanlines(width, height);
  return {
    type: 'image/png',
    width,
    height,
    channels,
    bitDepth,
    pixelBytes: width * height * channels * (bitDepth === 16 ? 2 : 1),
    colorType: colorType as PngHeader['colorType'],
    interlaced,
    dataBytes,
  };
}

/** A chunk type as text when it is four letters, as hex otherwise (it may be anything). */
export function chunkTypeName(b: Uint8Array, at: number): string {
  const codes = [b[at]!, b[at + 1]!, b[at + 2]!, b[at + 3]!];
  const letters = codes.every((c) => (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a));
  return letters ? String.fromCharCode(...codes) : `0x${codes.map((c) => c.toString(16).padStart(2, '0')).join('')}`;
}

function u32(b: Uint8Array, at: number): number {
  return ((b[at]! << 24) | (b[at + 1]! << 16) | (b[at + 2]! << 8) | b[at + 3]!) >>> 0;
}

let crcTable: Uint32Array | null = null;

/** CRC-32 (ISO-HDLC, as PNG uses) of b[from, to). */
export function crc32(b: Uint8Array, from = 0, to = b.length): number {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let c = 0xffffffff;
  for (let i = from; i < to; i++) c = crcTable[(c ^ b[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

// ---- JPEG -----------------------------------------------------------------------------

const JPEG_PROCESS: Record<number, string> = {
  0xc0: 'baseline',
  0xc1: 'extended sequential',
  0xc2: 'progressive',
  0xc3: 'lossless',
  0xc5: 'differential sequential',
  0xc6: 'differential progressive',
  0xc7: 'differential lossless',
  0xc9: 'arithmetic-coded sequential',
  0xca: 'arithmetic-coded progressive',
  0xcb: 'arithmetic-coded lossless',
  0xcd: 'arithmetic-coded differential sequential',
  0xce: 'arithmetic-coded differential progressive',
  0xcf: 'arithmetic-coded differential lossless',
};
const DECODABLE_SOF = new Set([0xc0, 0xc1, 0xc2]);
/** SOFn: C0–CF except DHT (C4), JPG (C8) and DAC (CC) */
const isFrameMarker = (m: number) => m >= 0xc0 && m <= 0xcf && m !== 0xc4 && m !== 0xc8 && m !== 0xcc;
/** markers without a length: TEM and RST0–7 (SOI and EOI are handled apart) */
const isStandalone = (m: number) => m === 0x01 || (m >= 0xd0 && m <= 0xd7);

/**
 * Walks every segment to the end of the file, across the entropy-coded data of each scan,
 * so that a second frame header anywhere is seen: a decoder that honours it would size its
 * buffers by that one instead. A file may end without EOI (decoders show what is there);
 * a segment may not claim more bytes than remain.
 */
function readJpegHeader(b: Uint8Array): JpegHeader {
  const n = b.length;
  let frame: JpegHeader | null = null;
  let at = 2; // after SOI
  while (at < n) {
    if (b[at] !== 0xff) throw new ImageHeaderError(`JPEG: expected a marker at byte ${at}, found 0x${b[at]!.toString(16).padStart(2, '0')}`);
    let m = at + 1;
    while (m < n && b[m] === 0xff) m++; // fill bytes
    if (m >= n) break;
    const marker = b[m]!;
    const markerAt = m - 1;
    at = m + 1;
    if (marker === 0xd9) break; // EOI
    if (marker === 0x00 || marker === 0xd8) throw new ImageHeaderError(`JPEG: unexpected marker 0xff${marker.toString(16).padStart(2, '0')} at byte ${markerAt}`);
    if (isStandalone(marker)) continue;
    if (at + 2 > n) throw new ImageHeaderError(`JPEG: the file ends inside the segment at byte ${markerAt}`);
    const length = (b[at]! << 8) | b[at + 1]!;
    if (length < 2) throw new ImageHeaderError(`JPEG: the segment at byte ${markerAt} declares length ${length} (at least 2)`);
    const end = at + length;
    if (end > n) throw new ImageHeaderError(`JPEG: the segment at byte ${markerAt} declares ${length} bytes but the file ends after ${n - at}`);
    if (isFrameMarker(marker) || marker === 0xde /* DHP: a hierarchical image's size */) {
      if (frame) throw new ImageHeaderError(`JPEG: a second frame header at byte ${markerAt}; single-frame JPEGs only`);
      frame = readFrame(b, marker, markerAt, at + 2, end);
    } else if (marker === 0xda) {
      if (!frame) throw new ImageHeaderError(`JPEG: a scan at byte ${markerAt} comes before any frame header (SOF)`);
      at = skipEntropyCoded(b, end);
      continue;
    }
    at = end;
  }
  if (!frame) throw new ImageHeaderError('JPEG: no frame header (SOF) in the file');
  return frame;
}

function readFrame(b: Uint8Array, marker: number, markerAt: number, from: number, end: number): JpegHeader {
  if (end - from < 6) throw new ImageHeaderError(`JPEG: the frame header at byte ${markerAt} is ${end - from} bytes long (at least 6)`);
  const precision = b[from]!;
  const height = (b[from + 1]! << 8) | b[from + 2]!;
  const width = (b[from + 3]! << 8) | b[from + 4]!;
  const components = b[from + 5]!;
  if (components === 0) throw new ImageHeaderError(`JPEG: the frame header at byte ${markerAt} declares no color components`);
  if (end - from !== 6 + 3 * components) {
    throw new ImageHeaderError(`JPEG: the frame header at byte ${markerAt} is ${end - from} bytes long; ${components} components take ${6 + 3 * components}`);
  }
  if (width === 0) throw new ImageHeaderError('JPEG: the frame header declares width 0');
  if (height === 0) throw new ImageHeaderError('JPEG: the frame header declares height 0 (a height set later by a DNL marker is not supported)');
  const sampling: { h: number; v: number }[] = [];
  for (let i = 0; i < components; i++) {
    const hv = b[from + 6 + 3 * i + 1]!;
    const h = hv >> 4;
    const v = hv & 15;
    if (h < 1 || h > 4 || v < 1 || v > 4) throw new ImageHeaderError(`JPEG: component ${i + 1} has sampling factors ${h}×${v} (1 to 4 each)`);
    // at most 255 entries, bounded by the segment the file holds, not by a claimed size
    sampling.push({ h, v });
  }
  return {
    type: 'image/jpeg',
    width,
    height,
    channels: components,
    bitDepth: precision,
    pixelBytes: width * height * components * (precision > 8 ? 2 : 1),
    sof: marker,
    sampling,
  };
}

/** The offset of the next marker after a scan's entropy-coded data (or the end). */
function skipEntropyCoded(b: Uint8Array, from: number): number {
  const n = b.length;
  for (let i = from; i < n - 1; i++) {
    if (b[i] !== 0xff) continue;
    const next = b[i + 1]!;
    // a stuffed zero or a restart marker belongs to the data; 0xff 0xff is fill before a marker
    if (next === 0x00 || (next >= 0xd0 && next <= 0xd7)) {
      i++;
      continue;
    }
    return i;
  }
  return n;
}
