import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { ClipTokenizer } from './tokenizer.ts';

const CLIP_DIR = fileURLToPath(new URL('../../../shared/clip-vit-large-patch14-tokenizer/', import.meta.url));
const haveClip = existsSync(`${CLIP_DIR}/vocab.json`);
if (!haveClip) console.warn(`SKIPPED: real CLIP tokenizer tests: ${CLIP_DIR} is absent (CI has it beside the repo)`);

describe.skipIf(!haveClip)('CLIP tokenizer on the real clip-vit-large-patch14 vocabulary', () => {
  let tokenizer: ClipTokenizer;
  beforeAll(async () => {
    tokenizer = await ClipTokenizer.fromDir(CLIP_DIR);
  });
  const load = async () => tokenizer;

  it('"a photo of a cat" -> 49406 320 1125 539 320 2368 49407, padded with EOS to 77', async () => {
    const t = await load();
    const { ids, truncated } = t.encode('a photo of a cat');
    expect(ids.slice(0, 7)).toEqual([49406, 320, 1125, 539, 320, 2368, 49407]);
    expect(ids).toHaveLength(77);
    expect(new Set(ids.slice(7))).toEqual(new Set([49407]));
    expect(truncated).toBe(false);
  });

  it('lower-cases, cleans whitespace and splits punctuation as CLIP does', async () => {
    const t = await load();
    expect(t.encode('A  Photo\tof\n a CAT').ids.slice(0, 7)).toEqual([49406, 320, 1125, 539, 320, 2368, 49407]);
    expect(t.encode('hello,world').ids.slice(0, 5)).toEqual([49406, 3306, 267, 1002, 49407]);
  });

  it('uses byte-level BPE with </w> for unknown and non-ASCII words', async () => {
    const t = await load();
    const ids = t.encode('naïve 🐱').ids;
    expect(ids[0]).toBe(49406);
    const eos = ids.indexOf(49407);
    expect(eos).toBeGreaterThan(2); // split into several byte-level pieces, none unknown
    expect(ids.slice(1, eos).every((i) => i >= 0 && i < 49406)).toBe(true);
  });

  it('truncates to 75 tokens between BOS and EOS and reports it', async () => {
    const t = await load();
    const long = Array.from({ length: 100 }, () => 'cat').join(' ');
    const e = t.encode(long);
    expect(e.ids).toHaveLength(77);
    expect(e.ids[76]).toBe(49407);
    expect(e.ids.slice(1, 76).every((i) => i === 2368)).toBe(true);
    expect(e.truncated).toBe(true);
    expect(e.tokenCount).toBe(100);
  });

  it('an empty prompt is BOS then EOS padding (the unconditional prompt)', async () => {
    const t = await load();
    const ids = t.encode('').ids;
    expect(ids[0]).toBe(49406);
    expect(ids.slice(1).every((i) => i === 49407)).toBe(true);
  });
});
