/**
 * CLIP's preprocessing against Pillow and numpy (test/fixtures/clip-preprocess, made by
 * tools/convert/make_clip_fixtures.py): the 8-bit resize and crop pixel for pixel, and the
 * normalized float32 input bit for bit, on upscales, downscales (antialiased), an image that
 * needs no resize, alpha (dropped) and gray.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { decode } from 'fast-png';
import { describe, expect, it } from 'vitest';
import { clipPreprocess, clipResizeCrop, resizeBicubicPil, shortestEdgeSize } from './clip-preprocess.ts';
import { decodeImage } from './image.ts';

const DIR = new URL('../../test/fixtures/clip-preprocess/', import.meta.url);
const index = JSON.parse(readFileSync(new URL('index.json', DIR), 'utf8')) as {
  size: number;
  mean: [number, number, number];
  std: [number, number, number];
  rescale: number;
  cases: { name: string; width: number; height: number; sha256: string; head: number[] }[];
};

describe('CLIP preprocessing, as CLIPImageProcessor with Pillow computes it', () => {
  it.each(index.cases.map((c) => [c.name, c] as const))('%s', (_, c) => {
    const img = decodeImage(readFileSync(new URL(`${c.name}.png`, DIR)), 'reference_image', { alpha: 'drop' });
    expect([img.width, img.height]).toEqual([c.width, c.height]);
    const want = decode(readFileSync(new URL(`${c.name}.crop.png`, DIR)));
    const crop = clipResizeCrop(img, { width: index.size, height: index.size });
    const diff = crop.data.findIndex((v, i) => v !== want.data[i]);
    expect(diff === -1 ? 'identical' : `first differs at ${diff}: ${crop.data[diff]} vs Pillow ${want.data[diff]}`).toBe('identical');

    const x = clipPreprocess(img, { width: index.size, height: index.size, rescale: index.rescale, mean: index.mean, std: index.std });
    expect(Array.from(new Uint32Array(x.buffer, 0, 16))).toEqual(c.head);
    expect(createHash('sha256').update(new Uint8Array(x.buffer)).digest('hex')).toBe(c.sha256);
  });

  it('sizes the shorter side as transformers does (int() of the float product)', () => {
    expect(shortestEdgeSize(300, 200, 224)).toEqual([336, 224]);
    expect(shortestEdgeSize(123, 517, 224)).toEqual([224, 941]);
    expect(shortestEdgeSize(224, 224, 224)).toEqual([224, 224]);
    expect(shortestEdgeSize(1, 3, 224)).toEqual([224, 672]);
  });

  it('a resize to the same size is a copy; bad sizes are refused', () => {
    const img = { width: 2, height: 1, data: new Uint8Array([1, 2, 3, 4, 5, 6]) };
    const same = resizeBicubicPil(img, 2, 1);
    expect(Array.from(same.data)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(same.data).not.toBe(img.data);
    expect(() => resizeBicubicPil(img, 0, 1)).toThrow(/positive integers/);
  });
});
