/**
 * The image header reader: right sizes for ordinary files, a typed error naming the fault
 * for everything else, and no allocation that follows what the bytes claim.
 */
import { encode as encodePng } from 'fast-png';
import fc from 'fast-check';
import jpeg from 'jpeg-js';
import { describe, expect, it } from 'vitest';
import { BASELINE_422_JPEG, PROGRESSIVE_420_JPEG, ihdr, jpegDeclaring, png, pngBomb, pngChunk } from '../test/fixtures/images.ts';
import { IMAGE_LIMITS, ImageHeaderError, checkImage, imageProblem, readImageHeader, type ImageHeader } from './image-header.ts';

const IEND = pngChunk('IEND', new Uint8Array(0));
const smallPng = (width: number, height: number, opts?: Parameters<typeof ihdr>[2]) => png(ihdr(width, height, opts), IEND);
const smallJpeg = (width: number, height: number) => jpeg.encode({ width, height, data: new Uint8Array(width * height * 4) }, 80).data as Uint8Array;

function headerError(bytes: Uint8Array): string {
  try {
    readImageHeader(bytes);
  } catch (err) {
    expect(err).toBeInstanceOf(ImageHeaderError);
    return (err as Error).message;
  }
  throw new Error('expected an ImageHeaderError');
}

/** Scanline bytes of an Adam7 image, counted pixel by pixel. */
function adam7Bytes(width: number, height: number, bitsPerPixel: number): number {
  const passes = [[0, 0, 8, 8], [4, 0, 8, 8], [0, 4, 4, 8], [2, 0, 4, 4], [0, 2, 2, 4], [1, 0, 2, 2], [0, 1, 1, 2]];
  let total = 0;
  for (const [x0, y0, dx, dy] of passes) {
    let w = 0;
    let h = 0;
    for (let x = x0!; x < width; x += dx!) w++;
    for (let y = y0!; y < height; y += dy!) h++;
    if (w > 0 && h > 0) total += h * (1 + Math.ceil((w * bitsPerPixel) / 8));
  }
  return total;
}

describe('PNG', () => {
  it('reads the size, channels and exact image data length of every color type and depth', () => {
    const combos: [number, number[], number][] = [
      [0, [1, 2, 4, 8, 16], 1],
      [2, [8, 16], 3],
      [3, [1, 2, 4, 8], 1],
      [4, [8, 16], 2],
      [6, [8, 16], 4],
    ];
    for (const [colorType, depths, channels] of combos) {
      for (const depth of depths) {
        for (const interlace of [0, 1]) {
          const h = readImageHeader(smallPng(13, 7, { depth, colorType, interlace }));
          expect(h).toMatchObject({ type: 'image/png', width: 13, height: 7, channels, bitDepth: depth, colorType, interlaced: interlace === 1 });
          const bits = channels * depth;
          expect(h.type === 'image/png' && h.dataBytes).toBe(interlace ? adam7Bytes(13, 7, bits) : 7 * (1 + Math.ceil((13 * bits) / 8)));
          expect(h.pixelBytes).toBe(13 * 7 * channels * (depth === 16 ? 2 : 1));
        }
      }
    }
  });

  it('Adam7 lengths match a pixel count for small and odd sizes, passes left empty included', () => {
    for (let w = 1; w <= 17; w++) {
      for (let h = 1; h <= 17; h++) {
        const header = readImageHeader(smallPng(w, h, { colorType: 2, interlace: 1 }));
        expect(header.type === 'image/png' && header.dataBytes, `${w}×${h}`).toBe(adam7Bytes(w, h, 24));
      }
    }
  });

  it('reads files fast-png writes', () => {
    const bytes = encodePng({ width: 5, height: 3, data: new Uint8Array(5 * 3 * 4), channels: 4, depth: 8 });
    expect(readImageHeader(bytes)).toMatchObject({ type: 'image/png', width: 5, height: 3, channels: 4 });
  });

  it('takes the largest dimensions the format allows and refuses one more', () => {
    expect(readImageHeader(smallPng(2 ** 31 - 1, 2 ** 31 - 1))).toMatchObject({ width: 2 ** 31 - 1, height: 2 ** 31 - 1 });
    expect(headerError(smallPng(2 ** 31, 1))).toMatch(/width and height must be 1 to 2147483647 \(the header says 2147483648×1\)/);
    expect(headerError(smallPng(0, 5))).toMatch(/must be 1 to/);
  });

  it('names what is wrong with a damaged header', () => {
    const good = smallPng(4, 4);
    const flipped = good.slice();
    flipped[17] = flipped[17]! ^ 1;
    expect(headerError(flipped)).toMatch(/IHDR\) checksum does not match/);
    expect(headerError(png(pngChunk('tEXt', new Uint8Array(13)), IEND))).toMatch(/first chunk must be IHDR, not tEXt/);
    expect(headerError(png(pngChunk('IHDR', new Uint8Array(14)), IEND))).toMatch(/must hold 13 bytes, not 14/);
    expect(headerError(smallPng(4, 4, { colorType: 2, depth: 4 }))).toMatch(/bit depth 4 is not allowed with color type 2 \(8, 16\)/);
    expect(headerError(smallPng(4, 4, { colorType: 5 }))).toMatch(/color type 5 does not exist/);
    expect(headerError(smallPng(4, 4, { interlace: 2 }))).toMatch(/interlace method 2 does not exist/);
    const binaryType = good.slice();
    binaryType.set([0, 1, 2, 3], 12);
    expect(headerError(binaryType)).toMatch(/first chunk must be IHDR, not 0x00010203/);
  });

  it('refuses every truncation of the header', () => {
    const good = smallPng(4, 4);
    for (let n = 0; n < 33; n++) {
      const cut = good.subarray(0, n);
      expect(headerError(cut)).toMatch(n < 8 ? /not a PNG or JPEG/ : /ends inside its header/);
    }
  });
});

describe('JPEG', () => {
  it('reads baseline, 4:2:2 and progressive 4:2:0 frames', () => {
    expect(readImageHeader(smallJpeg(33, 17))).toMatchObject({ type: 'image/jpeg', width: 33, height: 17, channels: 3, bitDepth: 8, sof: 0xc0 });
    expect(readImageHeader(BASELINE_422_JPEG)).toMatchObject({ width: 37, height: 23, sof: 0xc0, sampling: [{ h: 2, v: 1 }, { h: 1, v: 1 }, { h: 1, v: 1 }] });
    expect(readImageHeader(PROGRESSIVE_420_JPEG)).toMatchObject({ width: 37, height: 23, sof: 0xc2, sampling: [{ h: 2, v: 2 }, { h: 1, v: 1 }, { h: 1, v: 1 }] });
  });

  it('walks past scans, restart markers, stuffed bytes and fill bytes to find a second frame header', () => {
    const one = jpegDeclaring(64, 64);
    const withoutEoi = one.subarray(0, one.length - 2);
    // entropy data that looks like markers but is not: stuffed 0xff00, RST3, 0xff00 then c0
    const tricky = new Uint8Array([...withoutEoi, 0x12, 0xff, 0x00, 0xc0, 0xff, 0xd3, 0x34, 0xff, 0xff, 0xd9]);
    expect(readImageHeader(tricky)).toMatchObject({ width: 64, height: 64 });
    const second = jpegDeclaring(30000, 30000);
    const frameAt = second.indexOf(0xc0, 4) - 1;
    const twoFrames = new Uint8Array([...withoutEoi, ...second.subarray(frameAt, frameAt + 19), 0xff, 0xd9]);
    expect(headerError(twoFrames)).toMatch(/a second frame header at byte \d+; single-frame JPEGs only/);
  });

  it('names hostile segment lengths and truncations', () => {
    const good = jpegDeclaring(8, 8);
    const lengthAt = 4; // the first segment (DQT) after SOI and its marker
    const set = (len: number) => {
      const b = good.slice();
      b[lengthAt] = len >> 8;
      b[lengthAt + 1] = len & 0xff;
      return b;
    };
    expect(headerError(set(0))).toMatch(/declares length 0 \(at least 2\)/);
    expect(headerError(set(1))).toMatch(/declares length 1/);
    expect(headerError(set(0xffff))).toMatch(/declares 65535 bytes but the file ends after/);
    // a file cut before its frame header ends is refused; one cut later shows what it has, as decoders do
    const frameEnd = good.indexOf(0xc0, 4) - 1 + 19;
    for (let n = 3; n < frameEnd; n++) expect(() => readImageHeader(good.subarray(0, n)), `cut at ${n}`).toThrow(ImageHeaderError);
    expect(headerError(good.subarray(0, frameEnd + 3))).toMatch(/the file ends inside the segment/);
    expect(readImageHeader(good.subarray(0, good.length - 2))).toMatchObject({ width: 8, height: 8 });
    expect(headerError(new Uint8Array([0xff, 0xd8, 0xff, 0xd9]))).toMatch(/no frame header \(SOF\)/);
    expect(headerError(new Uint8Array([0xff, 0xd8, 0xff, 0x12, 0x34]))).toMatch(/expected a marker at byte 4, found 0x34|ends inside/);
  });

  it('refuses frames without a size, and a scan before the frame', () => {
    expect(headerError(jpegDeclaring(64, 0))).toMatch(/height 0 \(a height set later by a DNL marker is not supported\)/);
    expect(headerError(jpegDeclaring(0, 64))).toMatch(/width 0/);
    const good = jpegDeclaring(8, 8);
    const sos = good.indexOf(0xda, 4) - 1;
    const sof = good.indexOf(0xc0, 4) - 1;
    const scanFirst = new Uint8Array([0xff, 0xd8, ...good.subarray(sos, good.length - 2), ...good.subarray(sof, sof + 19), 0xff, 0xd9]);
    expect(headerError(scanFirst)).toMatch(/a scan at byte 2 comes before any frame header/);
  });

  it('reads coding processes the engine cannot decode, and says so', () => {
    const lossless = readImageHeader(jpegDeclaring(64, 64, { sof: 0xc3 }));
    expect(imageProblem(lossless)).toMatch(/the JPEG is lossless; baseline, extended and progressive Huffman-coded JPEGs are supported/);
    expect(imageProblem(readImageHeader(jpegDeclaring(64, 64, { sof: 0xc9 })))).toMatch(/arithmetic-coded sequential/);
    expect(imageProblem(readImageHeader(jpegDeclaring(64, 64, { components: 2 })))).toMatch(/2 color components; 1 \(gray\), 3 \(color\) or 4 \(CMYK\)/);
    expect(imageProblem(readImageHeader(jpegDeclaring(64, 64)))).toBeNull();
  });
});

describe('limits', () => {
  const png8 = (w: number, h: number, colorType = 0, depth = 8) => readImageHeader(smallPng(w, h, { colorType, depth }));

  it('allow exactly the documented sizes', () => {
    expect(IMAGE_LIMITS).toEqual({ maxSide: 16384, maxPixels: 4096 * 4096, maxPixelBytes: 64 * 1024 * 1024 });
    expect(imageProblem(png8(4096, 4096, 6))).toBeNull(); // 8-bit RGBA: 64 MiB exactly
    expect(imageProblem(png8(16384, 1024))).toBeNull();
    expect(imageProblem(png8(4096, 4097))).toMatch(/^the image is 4096×4097 \(16\.8 MP, 16781312 bytes decoded\); at most 16384 pixels wide or high, 16777216 pixels in all/);
    expect(imageProblem(png8(16385, 1))).toMatch(/at most 16384 pixels wide or high/);
    expect(imageProblem(png8(4096, 4096, 6, 16))).toMatch(/134217728 bytes decoded\); .* and 67108864 bytes decoded \(width × height × channels × bytes per sample\) are allowed$/);
    expect(imageProblem(png8(2896, 2896, 6, 16))).toBeNull(); // 16-bit RGBA stops near 8 MP
  });

  it('refuse the bomb by its header, naming its size and every limit', () => {
    const verdict = checkImage(pngBomb());
    expect(verdict).toEqual({
      ok: false,
      message:
        'the image is 30000×30000 (900 MP, 900000000 bytes decoded); at most 16384 pixels wide or high, 16777216 pixels in all ' +
        'and 67108864 bytes decoded (width × height × channels × bytes per sample) are allowed',
    });
    expect(checkImage(jpegDeclaring(30000, 30000))).toMatchObject({ ok: false, message: expect.stringMatching(/^the image is 30000×30000 \(900 MP, 2700000000 bytes/) });
  });
});

describe('fuzz: only ImageHeaderError, and no allocation that follows the claimed size', () => {
  const seeds = [smallPng(3, 2, { colorType: 6 }), smallPng(30000, 30000), smallJpeg(9, 7), BASELINE_422_JPEG, PROGRESSIVE_420_JPEG, jpegDeclaring(65535, 65535)];

  /** a seed with bytes overwritten, cut, or spliced in; lengths and sizes land on extremes often */
  const mutant = fc
    .record({
      seed: fc.constantFrom(...seeds),
      edits: fc.array(fc.record({ at: fc.nat(), value: fc.oneof(fc.constantFrom(0x00, 0xff, 0x7f, 0x80, 0xc0, 0xc2, 0xd8, 0xd9, 0xda), fc.integer({ min: 0, max: 255 })) }), { maxLength: 8 }),
      cut: fc.option(fc.nat(), { nil: undefined }),
      splice: fc.option(fc.record({ at: fc.nat(), bytes: fc.uint8Array({ maxLength: 40 }) }), { nil: undefined }),
    })
    .map(({ seed, edits, cut, splice }) => {
      let b = seed.slice();
      for (const e of edits) b[e.at % b.length] = e.value;
      if (splice) {
        const at = splice.at % (b.length + 1);
        b = new Uint8Array([...b.subarray(0, at), ...splice.bytes, ...b.subarray(at)]);
      }
      return cut === undefined ? b : b.subarray(0, cut % (b.length + 1));
    });
  const anyBytes = fc.oneof(
    mutant,
    fc.uint8Array({ maxLength: 200 }).map((rest) => new Uint8Array([0xff, 0xd8, 0xff, ...rest])),
    fc.uint8Array({ maxLength: 60 }).map((rest) => new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, ...rest])),
  );

  function consistent(h: ImageHeader): void {
    expect(Number.isInteger(h.width) && h.width >= 1).toBe(true);
    expect(Number.isInteger(h.height) && h.height >= 1).toBe(true);
    expect(h.channels).toBeGreaterThanOrEqual(1);
    expect(h.pixelBytes).toBeGreaterThanOrEqual(h.width * h.height);
  }

  it('returns a consistent header or throws ImageHeaderError, for any bytes', () => {
    fc.assert(
      fc.property(anyBytes, (b) => {
        try {
          consistent(readImageHeader(b));
        } catch (err) {
          if (!(err instanceof ImageHeaderError)) throw err;
        }
      }),
      { numRuns: 3000 },
    );
  });

  it('reads headers claiming up to 2^31-1 × 2^31-1 without allocating for them', () => {
    const claims = fc.sample(
      fc.record({ w: fc.integer({ min: 1, max: 2 ** 31 - 1 }), h: fc.integer({ min: 1, max: 2 ** 31 - 1 }), jw: fc.integer({ min: 1, max: 65535 }), jh: fc.integer({ min: 1, max: 65535 }) }),
      500,
    );
    const inputs = claims.flatMap(({ w, h, jw, jh }) => [smallPng(w, h, { colorType: 6, depth: 16, interlace: 1 }), jpegDeclaring(jw, jh, { components: 4 })]);
    readImageHeader(inputs[0]!); // the CRC table, once
    const before = process.memoryUsage();
    let claimed = 0;
    for (const b of inputs) claimed += readImageHeader(b).pixelBytes;
    const after = process.memoryUsage();
    expect(claimed).toBeGreaterThan(1e15);
    expect(after.arrayBuffers - before.arrayBuffers).toBeLessThan(1024 * 1024);
    expect(after.heapUsed - before.heapUsed).toBeLessThan(32 * 1024 * 1024);
  });
});
