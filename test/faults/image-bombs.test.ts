/**
 * Decompression bombs cost a bounded amount of memory, and give it back: in a process of
 * its own (image-bomb-process.ts), a PNG declaring 30000×30000 over 900 MB of deflated
 * zeros is refused five times inline and five times through a signed PUT (422 each), and
 * the engine's decoder refuses it, a small header over 1 GiB of image data, and decodes a
 * small image carrying a 1 GiB color profile, five times each. Before the header checks the
 * edge took the bomb (202/204) and the decoder inflated it whole: gigabytes of RSS.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const MiB = 1024 * 1024;

describe('image bombs in a process of their own', () => {
  it('are refused every time, with peak RSS bounded and RSS back near where it started', () => {
    const run = spawnSync(process.execPath, ['--expose-gc', '--import', 'tsx', 'test/faults/image-bomb-process.ts'], {
      cwd: ROOT,
      env: { ...process.env, ROUNDS: '5' },
      encoding: 'utf8',
      timeout: 300_000,
    });
    const line = run.stdout.trim().split('\n').at(-1) ?? '';
    expect(run.status, `${run.stdout}\n${run.stderr}`).toBe(0);
    const r = JSON.parse(line) as { warm: Record<string, unknown>; answers: Record<string, unknown[]>; bombBytes: number; startRss: number; peakRss: number; endRss: number };
    expect(r.warm).toEqual({ inline: 202, upload: 204, decode: 'decoded 48×32' });
    expect(r.bombBytes).toBeLessThan(MiB);
    expect(r.answers.inline).toEqual([422]);
    expect(r.answers.upload).toEqual([422]);
    expect(r.answers.decodeBomb).toEqual([expect.stringMatching(/^models\[1\]\.reference_image: the image is 30000×30000 \(900 MP/)]);
    expect(r.answers.decodeLying).toEqual([expect.stringMatching(/inflates to more than the 4160 bytes/)]);
    expect(r.answers.decodeProfile).toEqual(['decoded 16×16']);
    // the bomb inflates to 900 MB; a decoder that began on it would pass these bounds many times over
    const report = `start ${(r.startRss / MiB).toFixed(0)} MiB, peak ${(r.peakRss / MiB).toFixed(0)} MiB, end ${(r.endRss / MiB).toFixed(0)} MiB`;
    expect(r.peakRss - r.startRss, report).toBeLessThan(192 * MiB);
    expect(r.endRss - r.startRss, report).toBeLessThan(48 * MiB);
  }, 320_000);
});
