/**
 * The engine's image decoder: ordinary PNGs and JPEGs decode as before; hostile ones are
 * refused by their header before anything is inflated, and image data that inflates past
 * what the header declares is cut off at that length. (How much memory a refusal takes is
 * measured in a process of its own: test/faults/image-bombs.test.ts.)
 */
import { deflateSync } from 'node:zlib';
import { decode as fastPngDecode, encode as encodePngBytes } from 'fast-png';
import jpeg from 'jpeg-js';
import { describe, expect, it } from 'vitest';
import { readImageHeader, type JpegHeader, type PngHeader } from '../../shared/image-header.ts';
import { BASELINE_422_JPEG, PROGRESSIVE_420_JPEG, ihdr, jpegDeclaring, png, pngBomb, pngChunk, pngLyingData, pngProfileBomb } from '../../test/fixtures/images.ts';
import { decodeImage, jpegDecoderBytes } from './image.ts';
import { EngineInputError } from './types.ts';

const IEND = pngChunk('IEND', new Uint8Array(0));
const FIELD = 'models[1].reference_image';

function refusal(bytes: Uint8Array): EngineInputError {
  try {
    decodeImage(bytes, FIELD);
  } catch (err) {
    expect(err).toBeInstanceOf(EngineInputError);
    expect((err as EngineInputError).field).toBe(FIELD);
    return err as EngineInputError;
  }
  throw new Error('expected the image to be refused');
}

/** deterministic bytes, so failures reproduce */
function pattern(n: number, seed = 7): Uint8Array {
  const out = new Uint8Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) out[i] = (s = (s * 1103515245 + 12345) >>> 0) >>> 24;
  return out;
}

describe('ordinary images decode as fast-png and jpeg-js decode them', () => {
  it('PNG: every channel count and both depths, alpha composited over white', () => {
    for (const [channels, depth] of [[1, 8], [2, 8], [3, 8], [4, 8], [3, 16], [4, 16]] as const) {
      const n = 7 * 5 * channels;
      const data = depth === 16 ? new Uint16Array(pattern(n * 2).buffer) : pattern(n);
      const bytes = encodePngBytes({ width: 7, height: 5, data, channels, depth });
      const img = decodeImage(bytes, FIELD);
      const direct = fastPngDecode(bytes);
      expect(direct.data).toEqual(data);
      expect(img).toMatchObject({ width: 7, height: 5 });
      for (let i = 0; i < 35; i++) {
        const sample = (c: number) => (depth === 16 ? data[i * channels + c]! / 257 : data[i * channels + c]!);
        const alpha = channels === 2 || channels === 4 ? sample(channels - 1) / 255 : 1;
        for (let c = 0; c < 3; c++) {
          const v = channels >= 3 ? sample(c) : sample(0);
          expect(img.data[i * 3 + c], `${channels}×${depth} pixel ${i}`).toBe(Math.round(v * alpha + 255 * (1 - alpha)));
        }
      }
    }
  });

  it('PNG: a palette with transparency, image data split over many IDAT chunks, and ancillary chunks on the way', () => {
    const palette = new Uint8Array([255, 0, 0, 0, 0, 255, 10, 20, 30]);
    const rows = new Uint8Array([0, 0, 1, 0, 0, 2, 1, 0]); // two rows of 3 indices, each after filter byte 0
    const z = deflateSync(rows);
    const bytes = png(
      ihdr(3, 2, { colorType: 3 }),
      pngChunk('PLTE', palette),
      pngChunk('tRNS', new Uint8Array([255, 0])),
      pngChunk('tEXt', new TextEncoder().encode('Comment\0hello')),
      ...Array.from(z, (b) => pngChunk('IDAT', new Uint8Array([b]))),
      IEND,
    );
    const img = decodeImage(bytes, FIELD);
    // index 1 is fully transparent blue: white; index 2 has no tRNS entry: opaque
    expect(Array.from(img.data)).toEqual([255, 0, 0, 255, 255, 255, 255, 0, 0, 10, 20, 30, 255, 255, 255, 255, 0, 0]);
  });

  it('JPEG: baseline 4:4:4, 4:2:2 and progressive 4:2:0 at sizes that are not whole blocks', () => {
    const data = new Uint8Array(33 * 17 * 4).fill(200);
    const img = decodeImage(jpeg.encode({ width: 33, height: 17, data }, 95).data, FIELD);
    expect(img).toMatchObject({ width: 33, height: 17 });
    expect(Math.abs(img.data[0]! - 200)).toBeLessThan(4);
    for (const bytes of [BASELINE_422_JPEG, PROGRESSIVE_420_JPEG]) {
      const g = decodeImage(bytes, FIELD);
      expect(g).toMatchObject({ width: 37, height: 23 });
      const px = (x: number, y: number) => Array.from(g.data.subarray((y * 37 + x) * 3, (y * 37 + x) * 3 + 3));
      // the gradient: red follows x, green follows y, blue stays 128 (JPEG is lossy)
      for (const [x, y] of [[0, 0], [36, 0], [0, 22], [36, 22], [18, 11]] as const) {
        const want = [(x * 255) / 36, (y * 255) / 22, 128];
        px(x, y).forEach((v, c) => expect(Math.abs(v - want[c]!), `(${x}, ${y})`).toBeLessThan(24));
      }
    }
  });

  it('the JPEG memory cap covers what jpeg-js accounts for those layouts, with little to spare', () => {
    for (const bytes of [BASELINE_422_JPEG, PROGRESSIVE_420_JPEG, jpeg.encode({ width: 33, height: 17, data: new Uint8Array(33 * 17 * 4) }, 80).data]) {
      const h = readImageHeader(bytes) as JpegHeader;
      const cap = jpegDecoderBytes(h, bytes.length);
      expect(() => jpeg.decode(bytes, { useTArray: true, maxMemoryUsageInMB: cap / 2 ** 20 })).not.toThrow();
      // without the allowance for tables, a cap this tight refuses: the estimate is not loose
      expect(() => jpeg.decode(bytes, { useTArray: true, maxMemoryUsageInMB: (cap - 4 * bytes.length) / 2 / 2 ** 20 })).toThrow(/maxMemoryUsageInMB/);
    }
  });
});

describe('hostile images are refused before they are inflated', () => {
  it('a PNG declaring 30000×30000 over 900 MB of deflated zeros: by its header, naming the field and the limits', () => {
    const err = refusal(pngBomb());
    expect(err.message).toBe(
      `${FIELD}: the image is 30000×30000 (900 MP, 900000000 bytes decoded); at most 16384 pixels wide or high, ` +
        '16777216 pixels in all and 67108864 bytes decoded (width × height × channels × bytes per sample) are allowed',
    );
  });

  it('a JPEG declaring 30000×30000, and one with a second frame', () => {
    expect(refusal(jpegDeclaring(30000, 30000)).message).toMatch(/the image is 30000×30000 \(900 MP/);
    const one = jpegDeclaring(16, 16);
    const big = jpegDeclaring(4096, 4096, { components: 4 });
    const frameAt = big.indexOf(0xc0, 4) - 1;
    const twoFrames = new Uint8Array([...one.subarray(0, one.length - 2), ...big.subarray(frameAt, frameAt + 8 + 3 * 4 + 2), 0xff, 0xd9]);
    expect(refusal(twoFrames).message).toMatch(/a second frame header at byte \d+; single-frame JPEGs only/);
  });

  it('a 64×64 header over image data that inflates to 1 GiB: cut off at the 4160 bytes the header declares', () => {
    expect(refusal(pngLyingData(64, 64, 2 ** 30)).message).toBe(
      `${FIELD}: the image could not be decoded: the image data inflates to more than the 4160 bytes a 64×64 image of this kind holds`,
    );
  });

  it('image data shorter than the header declares is refused rather than read past', () => {
    const rows = deflateSync(new Uint8Array(10 * (1 + 10) - 1));
    expect(refusal(png(ihdr(10, 10), pngChunk('IDAT', rows), IEND)).message).toMatch(/inflates to 109 bytes; a 10×10 image of this kind holds 110/);
  });

  it('a color profile (iCCP) that inflates to 1 GiB is dropped unread; the image decodes', () => {
    const img = decodeImage(pngProfileBomb(16, 16, 2 ** 30), FIELD);
    expect(img).toMatchObject({ width: 16, height: 16 });
    expect(img.data.every((v) => v === 0)).toBe(true);
  });

  it('chunk faults are named: a palette of 300 entries, a chunk past the end, a missing IEND, an unknown critical chunk', () => {
    const idat = pngChunk('IDAT', deflateSync(new Uint8Array(2 * 3)));
    expect(refusal(png(ihdr(2, 2, { colorType: 3 }), pngChunk('PLTE', new Uint8Array(900)), idat, IEND)).message).toMatch(/PLTE holds 900 bytes; it takes 1 to 256 entries/);
    const past = pngChunk('IDAT', new Uint8Array(10));
    new DataView(past.buffer).setUint32(0, 0x7fffffff);
    expect(refusal(png(ihdr(2, 2), past, IEND)).message).toMatch(/the IDAT chunk at byte 33 runs past the end of the file/);
    expect(refusal(png(ihdr(2, 2), idat)).message).toMatch(/ends before its IEND chunk/);
    expect(refusal(png(ihdr(2, 2), pngChunk('ZZZZ', new Uint8Array(1)), idat, IEND)).message).toMatch(/unknown critical chunk ZZZZ/);
  });
});

describe('PNGs of fewer than 8 bits per sample', () => {
  it('1-bit gray and 2-bit palette rows are unpacked, each row from its own byte', () => {
    const gray = png(ihdr(9, 2, { depth: 1, colorType: 0 }), pngChunk('IDAT', deflateSync(new Uint8Array([0, 0b10101010, 0b10000000, 0, 0b11110000, 0]))), IEND);
    const g = decodeImage(gray, FIELD);
    expect(Array.from(g.data.filter((_, i) => i % 3 === 0))).toEqual([255, 0, 255, 0, 255, 0, 255, 0, 255, 255, 255, 255, 255, 0, 0, 0, 0, 0]);
    const palette = new Uint8Array([255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 9, 9]);
    const indexed = png(ihdr(5, 1, { depth: 2, colorType: 3 }), pngChunk('PLTE', palette), pngChunk('IDAT', deflateSync(new Uint8Array([0, 0b00011011, 0b10000000]))), IEND);
    expect(Array.from(decodeImage(indexed, FIELD).data)).toEqual([255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 9, 9, 0, 0, 255]);
  });

  it('an interlaced one, which fast-png misreads, is refused by its header', () => {
    const header = ihdr(8, 8, { depth: 4, colorType: 0, interlace: 1 });
    const { dataBytes } = readImageHeader(png(header, IEND)) as PngHeader;
    const bytes = png(header, pngChunk('IDAT', deflateSync(new Uint8Array(dataBytes).fill(0x5a))), IEND);
    expect(refusal(bytes).message).toMatch(/interlaced with 4-bit samples; interlaced PNGs are supported at 8 or 16 bits/);
  });
});
