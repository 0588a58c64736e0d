/**
 * What only the filesystem store promises beyond the shared suite: atomic replacement, a
 * layout safe on case-insensitive filesystems, tolerance of crash leftovers, persistence,
 * group commit, and acknowledged writes surviving kill -9. (Power loss cannot be staged in a
 * test; that half of the promise rests on the fdatasync/fsync order in fs-store.ts.)
 */
import { mkdir, mkdtemp, readdir, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FsStore, MAX_ESCAPED_SEGMENT_BYTES, STALE_TEMP_MS } from '../../adapters/embedded/fs-store.ts';
import { crashBody } from './fixtures/fs-store-child.ts';
import { runChild } from './run-child.ts';

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

const here = dirname(fileURLToPath(import.meta.url));
const CHILD = join(here, 'fixtures', 'fs-store-child.ts');

/**
 * Runs a child that puts objects 16 at a time and prints each index once its put resolved;
 * SIGKILLs it once `acks` were printed. Resolves with the acknowledged indexes.
 */
async function writeUntilKilled(root: string, acks: number): Promise<number[]> {
  const { lines, signal } = await runChild(CHILD, root, [], acks);
  if (signal !== 'SIGKILL') throw new Error('the child exited before it was killed');
  return lines.filter((l) => /^\d+$/.test(l)).map(Number);
}

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

  it('lays keys out as escaped, case-safe names, one file per object with its content type in a header', async () => {
    const root = freshRoot();
    const store = new FsStore({ root, signing });
    await store.put('c/Key', 'upper', 'text/plain');
    await store.put('c/key', 'lower');
    await store.put('c/key/below', 'nested');
    expect(await filesUnder(root)).toEqual(['c@', 'c@/%4Bey', 'c@/key', 'c@/key@', 'c@/key@/below'].sort());
    // no two names differ only in case, so a case-insensitive filesystem holds the same layout
    const lower = (await filesUnder(root)).map((n) => n.toLowerCase());
    expect(new Set(lower).size).toBe(lower.length);
    // the documented format (fs-store.ts): one header line, then the body as given
    expect(await readFile(join(root, 'c@', '%4Bey'), 'latin1')).toBe('#amdm-object v1 length=5 type=text/plain\nupper');
    expect(await readFile(join(root, 'c@', 'key'), 'latin1')).toBe('#amdm-object v1 length=5 type=application/octet-stream\nlower');
  });

  it('refuses, naming the file, an object file without the header (the unreleased sidecar layout) or cut short', async () => {
    const root = freshRoot();
    const store = new FsStore({ root, signing });
    await store.put('o/ok', 'fine');
    await writeFile(join(root, 'o@', 'legacy'), '{"old":true}');
    await writeFile(join(root, 'o@', 'legacy@type'), 'application/json');
    await writeFile(join(root, 'o@', 'short'), '#amdm-object v1 length=10 type=text/plain\nabc');
    await expect(store.get('o/legacy')).rejects.toThrow(/o@\/legacy is not an object file of this store/);
    await expect(store.get('o/short')).rejects.toThrow(/o@\/short is damaged: its header announces 10 body bytes but 3 follow/);
    expect((await store.get('o/ok'))?.contentType).toBe('application/octet-stream');
  });

  it('group commit: concurrent puts share commit rounds and directory syncs, and every one lands whole', async () => {
    const root = freshRoot();
    const store = new FsStore({ root, signing });
    const keys = Array.from({ length: 200 }, (_, i) => `g/d${i % 10}/k${i}`);
    const bodyOf = (i: number) => `${i}:`.padEnd(50 + ((i * 37) % 500), String.fromCharCode(97 + (i % 26)));
    await Promise.all(keys.map((key, i) => store.put(key, bodyOf(i), i % 2 ? 'application/json' : 'text/plain')));
    const stats = store.commitStats;
    expect(stats.files).toBe(200);
    // one round per put is what committing each write alone would take
    expect(stats.rounds).toBeLessThan(100);
    expect(stats.dirSyncs).toBeLessThan(stats.files);
    for (const [i, key] of keys.entries()) {
      const got = await store.get(key);
      expect(new TextDecoder().decode(got!.body)).toBe(bodyOf(i));
      expect(got!.contentType).toBe(i % 2 ? 'application/json' : 'text/plain');
    }
    expect((await store.list('g/')).keys).toHaveLength(200);
    // nothing but objects and directories is left behind
    expect((await filesUnder(root)).filter((n) => n.includes('@tmp-'))).toEqual([]);
  });

  it('after kill -9 mid-write, every acknowledged put reads back whole and nothing torn is visible', async () => {
    const root = freshRoot();
    const acked = await writeUntilKilled(root, 120);
    expect(acked.length).toBeGreaterThanOrEqual(120);
    const store = new FsStore({ root, signing });
    for (const i of acked) {
      const got = await store.get(`crash/k${i}`);
      expect(got, `acknowledged key crash/k${i}`).not.toBeNull();
      expect(new TextDecoder().decode(got!.body)).toBe(crashBody(i));
      expect(got!.contentType).toBe('application/json');
    }
    // keys written but not yet acknowledged may exist or not; if they exist, they are whole
    const listed = (await store.list('crash/')).keys;
    for (const key of listed) {
      const i = Number(key.slice('crash/k'.length));
      expect(new TextDecoder().decode((await store.get(key))!.body)).toBe(crashBody(i));
    }
    // the store still writes into a directory holding a dead writer's temp files
    await store.put('crash/after', 'x');
    expect(listed.length).toBeGreaterThanOrEqual(acked.length);
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

  it('sweepTempFiles removes temp files older than STALE_TEMP_MS anywhere under the root, and keeps fresh ones and objects', async () => {
    const root = freshRoot();
    const store = new FsStore({ root, signing });
    await store.put('t/real', 'real');
    await store.put('tenants/acme/jobs/j1/out/aggregated-0.png', 'png');
    const deep = join(root, 'tenants@', 'acme@', 'jobs@', 'j1@', 'out@');
    const stale = [join(root, 't@', '@tmp-1a2b-0123456789ab-0'), join(deep, '@tmp-1a2b-0123456789ab-1')];
    const fresh = join(deep, '@tmp-3c4d-ba9876543210-0');
    const oldObject = join(root, 't@', 'real');
    for (const p of [...stale, fresh]) await writeFile(p, 'half written');
    // a minute past the documented bound of 10 minutes: left by a write that died
    const past = new Date(Date.now() - 11 * 60_000);
    for (const p of [...stale, oldObject]) await utimes(p, past, past);

    expect(await store.sweepTempFiles()).toEqual({ removed: 2 });
    const left = await filesUnder(root);
    for (const p of stale) expect(left).not.toContain(relative(root, p));
    expect(left).toContain(relative(root, fresh));
    expect(new TextDecoder().decode((await store.get('t/real'))!.body)).toBe('real');
    expect(new TextDecoder().decode((await store.get('tenants/acme/jobs/j1/out/aggregated-0.png'))!.body)).toBe('png');
    // a root that does not exist yet has nothing to sweep
    expect(await new FsStore({ root: freshRoot(), signing }).sweepTempFiles()).toEqual({ removed: 0 });
    await mkdir(join(root, 'empty@'));
    expect(await store.sweepTempFiles({ olderThanMs: 0 })).toEqual({ removed: 1 });
    await expect(store.sweepTempFiles({ olderThanMs: -1 })).rejects.toThrow(/olderThanMs must be a number >= 0; got -1/);
    expect(STALE_TEMP_MS).toBe(10 * 60_000);
  });

  it('removes directories emptied by delete, up to the root', async () => {
    const root = freshRoot();
    const store = new FsStore({ root, signing });
    await store.put('a/b/c/d', 'deep', 'text/plain');
    await store.put('a/keep', 'kept');
    await store.delete('a/b/c/d');
    expect(await filesUnder(root)).toEqual(['a@', 'a@/keep']);
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
