/**
 * The TypeScript scorer (tools/eval/score.ts, used by `npm run eval`) against the Python
 * scorer's verdicts on generated images (written by tools/shapes/table.py).
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { decode as decodePng } from 'fast-png';
import { describe, expect, it } from 'vitest';
import { planesFromRgb, score, type Scene } from '../tools/eval/score.ts';

const cases = JSON.parse(readFileSync(fileURLToPath(new URL('./fixtures/scorer/cases.json', import.meta.url)), 'utf8')) as {
  png: string;
  scene: Scene;
  score: Record<string, number | string>;
}[];

describe('the TypeScript scorer agrees with tools/shapes/world.py', () => {
  it(`on ${cases.length} generated images`, () => {
    expect(cases.length).toBeGreaterThanOrEqual(40);
    for (const [i, c] of cases.entries()) {
      const png = decodePng(Buffer.from(c.png, 'base64'));
      const s = score(planesFromRgb(png.data as Uint8Array, png.width, png.height), c.scene);
      for (const key of ['color', 'shape', 'color_in_box', 'style', 'count', 'all', 'detected', 'style_pred']) {
        expect(s[key as keyof typeof s], `case ${i} ${key}`).toEqual(c.score[key]);
      }
      expect(s.iou, `case ${i} iou`).toBeCloseTo(c.score.iou as number, 9);
    }
  });
});
