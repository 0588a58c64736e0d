/**
 * What only the filesystem store promises beyond the shared suite: atomic replacement, a
 * layout safe on case-insensitive filesystems, tolerance of crash leftovers, persistence.
 */
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FsStore, MAX_ESCAPED_SEGMENT_BYTES } from '../../adapters/embedded/fs-store.ts';

const signing = { secret: 'fs-store-test-secret-at-least-32-bytes', baseUrl: 'http://127.0.0.1:9/' };

let base: string;
let roots = 0;
beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), 'amdm-fs-store-'));
});
afterAll(async () => {
  await rm(base, { recursive: true, force: true });
});
const freshRoot = (): string => join(base, `root-${++roots}`);

async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries.map((e) => relative(dir, join(e.parentPath, e.name))).sort();
}

describe.concurrent('FsStore beyond the shared suite', () => {
  it('readers see the old or the new object while it is rewritten, never a mix', async () => {
    const store = new FsStore({ root: freshRoot(), signing });
    const a = new Uint8Array(512 * 1024).fill(0x61);
    const b = new Uint8Array(300 * 1024).fill(0x62);
    await store.put('big/object', a);
    let writing = true;
    const writer = (async () => {
      for (let i = 0; i < 20; i++) await store.put('big/object', i % 2 ? a : b);
      writing = false;
    })();
    let reads = 0;
    let torn = 0;
    // counted, not asserted in the loop, so a failure never leaves the writer running
    while (writing) {
      const body = (await store.get('big/object'))!.body;
      const whole =
        (body.length === a.length && body.every((x) => x === 0x61)) ||
        (body.length === b.length && body.every((x) => x === 0x62));
      if (!whole) torn++;
      reads++;
    }
    await writer;
    expect(reads).toBeGreaterThan(0);
    expect(torn).toBe(0);
  });

  it('lays keys out as escaped, case-safe names with content types beside the blobs', async () => {
    const root = freshRoot();
    const store = new FsStore({ root, signing });
    await store.put('c/Key', 'upper', 'text/plain');
    await store.put('c/key', 'lower');
    await store.put('c/key/below', 'nested');
    expect(await filesUnder(root)).toEqual(
      ['c@', 'c@/%4Bey', 'c@/%4Bey@type', 'c@/key', 'c@/key@type', 'c@/key@', 'c@/key@/below', 'c@/key@/below@type'].sort(),
    );
    // no two names differ only in case, so a case-insensitive filesystem holds the same layout
    const lower = (await filesUnder(root)).map((n) => n.toLowerCase());
    expect(new Set(lower).size).toBe(lower.length);
  });

  it('ignores temp files left by a crashed writer and files it did not write', async () => {
    const root = freshRoot();
    const store = new FsStore({ root, signing });
    await store.put('t/real', 'real');
    await writeFile(join(root, 't@', '@tmp-0123456789abcdef'), 'half written');
    await writeFile(join(root, 't@', 'ghost@type'), 'text/plain');
    await writeFile(join(root, 't@', '.DS_Store'), 'finder');
    await writeFile(join(root, 't@', 'not%zzescaped'), 'foreign');
    expect((await store.list('t/')).keys).toEqual(['t/real']);
    expect(await store.get('t/ghost')).toBeNull();
  });

  it('removes directories emptied by delete, up to the root', async () => {
    const root = freshRoot();
    const store = new FsStore({ root, signing });
    await store.put('a/b/c/d', 'deep', 'text/plain');
    await store.put('a/keep', 'kept');
    await store.delete('a/b/c/d');
    expect(await filesUnder(root)).toEqual(['a@', 'a@/keep', 'a@/keep@type']);
  });

  it('a new instance on the same root sees what an earlier one wrote', async () => {
    const root = freshRoot();
    await new FsStore({ root, signing }).put('p/persisted.json', '{"ok":true}', 'application/json');
    const reopened = new FsStore({ root, signing });
    expect(await reopened.get('p/persisted.json')).toEqual({
      body: new TextEncoder().encode('{"ok":true}'),
      contentType: 'application/json',
    });
  });

  it('refuses a segment too long for a file name, naming the key and the limit', async () => {
    const store = new FsStore({ root: freshRoot(), signing });
    const fits = 'a'.repeat(MAX_ESCAPED_SEGMENT_BYTES);
    await store.put(`ok/${fits}`, 'x');
    // capitals take three bytes each on disk
    const tooLong = 'A'.repeat(Math.ceil(MAX_ESCAPED_SEGMENT_BYTES / 3) + 1);
    await expect(store.put(`bad/${tooLong}`, 'x')).rejects.toThrow(
      new RegExp(`invalid object key "bad/A+.*allows ${MAX_ESCAPED_SEGMENT_BYTES}`),
    );
  });

  it('refuses weak secrets and bad base URLs at construction', () => {
    const root = freshRoot();
    expect(() => new FsStore({ root, signing: { secret: 'short', baseUrl: 'http://x' } })).toThrow(
      /signing.secret .*at least 32 bytes; got 5 bytes/,
    );
    expect(() => new FsStore({ root, signing: { secret: signing.secret, baseUrl: 'not a url' } })).toThrow(
      /signing.baseUrl .*"not a url"/,
    );
    expect(() => new FsStore({ root, signing: { secret: signing.secret, baseUrl: 'ftp://x' } })).toThrow(/http\(s\)/);
  });
});
