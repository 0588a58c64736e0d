/**
 * The ObjectStore contract (shared/ports/store.ts) as one suite that every adapter runs:
 * store.test.ts calls it for the memory, filesystem and S3 (fauxqs) stores. Signed URLs are
 * fetched over real HTTP from whoever serves them (a blob route for the embedded stores, the
 * S3 endpoint for S3).
 */
import { describe, it, type TestContext } from 'vitest';
import { type ObjectStore, StorageFullError } from '../../shared/ports/store.ts';
import { SMALL_FS, mountSmallFs } from './small-fs.ts';

export interface StoreCapabilities {
  /**
   * Whether `list` orders keys by UTF-8 bytes. S3 and the embedded stores do; fauxqs 1.9 sorts
   * with String.prototype.localeCompare (so 'B' follows 'a', and punctuation is reordered).
   * When false, ordering is checked only on keys where every order agrees.
   */
  listsInByteOrder: boolean;
  /**
   * Whether tampered and expired signed URLs are refused with 403. S3 and the blob route do;
   * fauxqs 1.9 does not verify SigV4 signatures or expiry at all, so for it the suite checks
   * only that valid URLs work.
   */
  refusesBadSignedUrls: boolean;
}

export interface StoreSuite {
  /** a fresh, empty store for one test */
  create(): Promise<ObjectStore>;
  capabilities: StoreCapabilities;
  /**
   * A fresh store keeping everything under `dir`, a directory on a small filesystem that the
   * suite fills to the last byte. Absent for adapters without a disk of their own (memory,
   * S3), which are never full.
   */
  onSmallFs?(dir: string): Promise<ObjectStore>;
}

const decoder = new TextDecoder();
const ALL_BYTES = Uint8Array.from({ length: 256 }, (_, i) => i);
const encoder = new TextEncoder();

function byteOrder(keys: string[]): string[] {
  return [...keys].sort((a, b) => Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8')));
}

/** Every key under `prefix`, page by page. */
async function listAll(store: ObjectStore, prefix: string, limit: number): Promise<{ keys: string[]; pages: number }> {
  const keys: string[] = [];
  let cursor: string | null = null;
  let pages = 0;
  do {
    const page = await store.list(prefix, { cursor, limit });
    pages++;
    if (page.keys.length > limit) throw new Error(`page of ${page.keys.length} keys exceeds limit ${limit}`);
    keys.push(...page.keys);
    cursor = page.cursor;
    if (pages > 1000) throw new Error('list never ended');
  } while (cursor !== null);
  return { keys, pages };
}

export function describeStoreConformance(name: string, suite: StoreSuite): void {
  const open = async (ctx: TestContext): Promise<ObjectStore> => {
    const store = await suite.create();
    ctx.onTestFinished(() => store.close());
    return store;
  };

  describe.concurrent(`ObjectStore conformance: ${name}`, () => {
    it('round-trips a text body with its content type', async (ctx) => {
      const store = await open(ctx);
      const json = JSON.stringify({ status: 'queued', note: 'héllo 😀' });
      await store.put('tenants/t1/jobs/j1/request.json', json, 'application/json');
      const got = await store.get('tenants/t1/jobs/j1/request.json');
      ctx.expect(got?.body).toBeInstanceOf(Uint8Array);
      ctx.expect(decoder.decode(got!.body)).toBe(json);
      ctx.expect(got!.contentType).toBe('application/json');
    });

    it('round-trips all 256 byte values and an empty body, defaulting to application/octet-stream', async (ctx) => {
      const store = await open(ctx);
      await store.put('bin/all-bytes', ALL_BYTES);
      await store.put('bin/empty', new Uint8Array(0));
      const all = await store.get('bin/all-bytes');
      ctx.expect(Array.from(all!.body)).toEqual(Array.from(ALL_BYTES));
      ctx.expect(all!.contentType).toBe('application/octet-stream');
      const empty = await store.get('bin/empty');
      ctx.expect(empty!.body.byteLength).toBe(0);
    });

    it('put replaces the body and the content type', async (ctx) => {
      const store = await open(ctx);
      await store.put('r/status.json', 'first, and longer than the second', 'text/plain');
      await store.put('r/status.json', '{"v":2}', 'application/json');
      const got = await store.get('r/status.json');
      ctx.expect(decoder.decode(got!.body)).toBe('{"v":2}');
      ctx.expect(got!.contentType).toBe('application/json');
    });

    it('returns null for a missing key and for a key that is only a prefix of others', async (ctx) => {
      const store = await open(ctx);
      ctx.expect(await store.get('nothing/here')).toBeNull();
      await store.put('dir/child', 'x');
      ctx.expect(await store.get('dir')).toBeNull();
      ctx.expect(await store.get('di')).toBeNull();
    });

    it('delete removes a key, and deleting a missing key is fine', async (ctx) => {
      const store = await open(ctx);
      await store.put('d/a', 'a');
      await store.put('d/b', 'b');
      await store.delete('d/a');
      ctx.expect(await store.get('d/a')).toBeNull();
      ctx.expect((await store.list('d/')).keys).toEqual(['d/b']);
      await store.delete('d/a');
      await store.delete('never/existed');
      // the directory-like prefix can be written again after its last key went away
      await store.delete('d/b');
      ctx.expect((await store.list('d/')).keys).toEqual([]);
      await store.put('d/c', 'c');
      ctx.expect((await store.list('d/')).keys).toEqual(['d/c']);
    });

    it('keeps a key and keys below it apart, and keys differing only in case', async (ctx) => {
      const store = await open(ctx);
      await store.put('n/a', 'leaf');
      await store.put('n/a/b', 'below');
      await store.put('c/Key', 'upper');
      await store.put('c/key', 'lower');
      ctx.expect(decoder.decode((await store.get('n/a'))!.body)).toBe('leaf');
      ctx.expect(decoder.decode((await store.get('n/a/b'))!.body)).toBe('below');
      ctx.expect(decoder.decode((await store.get('c/Key'))!.body)).toBe('upper');
      ctx.expect(decoder.decode((await store.get('c/key'))!.body)).toBe('lower');
      ctx.expect((await store.list('n/')).keys).toEqual(['n/a', 'n/a/b']);
      ctx.expect(new Set((await store.list('c/')).keys)).toEqual(new Set(['c/Key', 'c/key']));
    });

    it('lists keys under a prefix in ascending order, including partial-segment prefixes', async (ctx) => {
      const store = await open(ctx);
      const keys = ['p/k05', 'p/k01/x', 'p/k10', 'p/k01', 'p/k02/y/z', 'p/j', 'q/k01', 'pk'];
      for (const key of keys) await store.put(key, key);
      ctx.expect((await store.list('p/')).keys).toEqual(['p/j', 'p/k01', 'p/k01/x', 'p/k02/y/z', 'p/k05', 'p/k10']);
      ctx.expect((await store.list('p/k0')).keys).toEqual(['p/k01', 'p/k01/x', 'p/k02/y/z', 'p/k05']);
      ctx.expect((await store.list('p/k01/')).keys).toEqual(['p/k01/x']);
      ctx.expect((await store.list('p')).keys).toEqual(['p/j', 'p/k01', 'p/k01/x', 'p/k02/y/z', 'p/k05', 'p/k10', 'pk']);
      ctx.expect((await store.list('')).keys).toHaveLength(keys.length);
      ctx.expect(await store.list('zzz/')).toEqual({ keys: [], cursor: null });
    });

    it('pages with limit and cursor, with a null cursor only at the end', async (ctx) => {
      const store = await open(ctx);
      const keys = Array.from({ length: 7 }, (_, i) => `page/item-${String(i).padStart(2, '0')}`);
      for (const key of [...keys].reverse()) await store.put(key, 'x');
      const first = await store.list('page/', { limit: 3 });
      ctx.expect(first).toEqual({ keys: keys.slice(0, 3), cursor: keys[2] });
      const second = await store.list('page/', { limit: 3, cursor: first.cursor });
      ctx.expect(second).toEqual({ keys: keys.slice(3, 6), cursor: keys[5] });
      const third = await store.list('page/', { limit: 3, cursor: second.cursor });
      ctx.expect(third).toEqual({ keys: keys.slice(6), cursor: null });
      // a page that ends exactly at the last key has no next page
      ctx.expect(await store.list('page/', { limit: 7 })).toEqual({ keys, cursor: null });
      ctx.expect((await listAll(store, 'page/', 1)).keys).toEqual(keys);
      // a cursor need not be a stored key: listing continues after it in key order
      ctx.expect((await store.list('page/', { cursor: 'page/item-03x' })).keys).toEqual(keys.slice(4));
    });

    it.skipIf(!suite.capabilities.listsInByteOrder)(
      'orders keys by UTF-8 bytes: capitals first, "-" < "/" < "0", BMP private use before emoji',
      async (ctx) => {
        const store = await open(ctx);
        const keys = ['o/a', 'o/B', 'o/a-b', 'o/a/b', 'o/a0', 'o/_', 'o/~', 'o/ä', 'o/\uFF01', 'o/😀', 'o/Z/z'];
        for (const key of keys) await store.put(key, key);
        const expected = byteOrder(keys);
        // JavaScript's default sort (UTF-16 code units) puts the emoji before U+FF01; S3 does not
        ctx.expect(expected.indexOf('o/\uFF01')).toBeLessThan(expected.indexOf('o/😀'));
        ctx.expect((await store.list('o/')).keys).toEqual(expected);
        ctx.expect((await listAll(store, 'o/', 2)).keys).toEqual(expected);
      },
    );

    it('round-trips keys with spaces, reserved URL characters and non-ASCII', async (ctx) => {
      const store = await open(ctx);
      const key = "odd/a b+c%d&e=f?g#h~ü!*'()[]@$,;:/😀.bin";
      await store.put(key, ALL_BYTES, 'image/png');
      const got = await store.get(key);
      ctx.expect(Array.from(got!.body)).toEqual(Array.from(ALL_BYTES));
      ctx.expect((await store.list('odd/')).keys).toEqual([key]);
      const response = await fetch(await store.signedGetUrl(key, 60));
      ctx.expect(response.status).toBe(200);
      ctx.expect(Array.from(new Uint8Array(await response.arrayBuffer()))).toEqual(Array.from(ALL_BYTES));
    });

    it('refuses invalid keys, naming the key and the rule', async (ctx) => {
      const store = await open(ctx);
      const cases: [string, RegExp][] = [
        ['', /empty/],
        ['/leading', /start with '\/'/],
        ['a//b', /empty segments/],
        ['trailing/', /empty segments/],
        ['a/../b', /'\.\.' segments/],
        ['..', /'\.\.' segments/],
        ['a/./b', /'\.' segments/],
        ['back\\slash', /backslash/],
        ['nul\0byte', /NUL/],
        ['line\nbreak', /control characters/],
        ['lone\uD800surrogate', /surrogate/],
        ['x'.repeat(1025), /at most 1024 bytes/],
        ['é'.repeat(513), /at most 1024 bytes/],
      ];
      for (const [key, rule] of cases) {
        for (const call of [
          () => store.put(key, 'x'),
          () => store.get(key),
          () => store.delete(key),
          () => store.signedGetUrl(key, 60),
          () => store.signedPutUrl(key, 60, 'image/png'),
        ]) {
          const err = await call().then(
            () => null,
            (e: unknown) => e as Error,
          );
          ctx.expect(err, `key ${JSON.stringify(key)}`).toBeInstanceOf(Error);
          ctx.expect(err!.message).toMatch(rule);
          ctx.expect(err!.message).toContain(JSON.stringify(key.length > 120 ? key.slice(0, 120) : key).slice(0, -1));
        }
      }
      ctx.expect((await store.list('')).keys).toEqual([]);
    });

    it('accepts a key of exactly 1024 bytes', async (ctx) => {
      const store = await open(ctx);
      const segment = 'a'.repeat(100);
      let key = Array.from({ length: 10 }, () => segment).join('/');
      key += '/' + 'b'.repeat(1024 - encoder.encode(key).byteLength - 1);
      ctx.expect(encoder.encode(key).byteLength).toBe(1024);
      await store.put(key, 'long');
      ctx.expect(decoder.decode((await store.get(key))!.body)).toBe('long');
      ctx.expect((await store.list('aaa')).keys).toEqual([key]);
    });

    it('refuses bad content types, list options and URL lifetimes, naming the value', async (ctx) => {
      const store = await open(ctx);
      const bad: [() => Promise<unknown>, RegExp][] = [
        [() => store.put('k', 'x', 'text/plain\r\nx-evil: 1'), /content type "text\/plain\\r\\nx-evil: 1"/],
        [() => store.put('k', 'x', ''), /content type ""/],
        [() => store.signedPutUrl('k', 60, 'image/png\n'), /content type/],
        [() => store.list('', { limit: 0 }), /limit.*0/],
        [() => store.list('', { limit: 1001 }), /limit.*1001/],
        [() => store.list('', { limit: 1.5 }), /limit.*1\.5/],
        [() => store.signedGetUrl('k', 0), /ttlSeconds.*0/],
        [() => store.signedGetUrl('k', 1.5), /ttlSeconds.*1\.5/],
        [() => store.signedPutUrl('k', 604_801, 'image/png'), /ttlSeconds.*604801/],
      ];
      for (const [call, message] of bad) await ctx.expect(call()).rejects.toThrow(message);
    });

    it('a signed GET URL serves the object over HTTP', async (ctx) => {
      const store = await open(ctx);
      await store.put('tenants/t1/jobs/j1/out/aggregated-0.png', ALL_BYTES, 'image/png');
      const response = await fetch(await store.signedGetUrl('tenants/t1/jobs/j1/out/aggregated-0.png', 60));
      ctx.expect(response.status).toBe(200);
      ctx.expect(response.headers.get('content-type')).toBe('image/png');
      ctx.expect(Array.from(new Uint8Array(await response.arrayBuffer()))).toEqual(Array.from(ALL_BYTES));
    });

    it('a signed PUT URL stores the uploaded body with its content type', async (ctx) => {
      const store = await open(ctx);
      const url = await store.signedPutUrl('tenants/t1/uploads/u1', 60, 'image/png');
      // what the upload ticket tells a client to send
      const headers = { ...store.signedPutHeaders?.('tenants/t1/uploads/u1'), 'content-type': 'image/png' };
      const response = await fetch(url, { method: 'PUT', body: ALL_BYTES, headers });
      ctx.expect(response.status).toBe(200);
      const got = await store.get('tenants/t1/uploads/u1');
      ctx.expect(Array.from(got!.body)).toEqual(Array.from(ALL_BYTES));
      ctx.expect(got!.contentType).toBe('image/png');
    });

    it.skipIf(!suite.capabilities.refusesBadSignedUrls)(
      'refuses tampered signed URLs and the wrong method with 403',
      async (ctx) => {
        const store = await open(ctx);
        await store.put('s/secret.png', 'secret', 'image/png');
        await store.put('s/other.png', 'other', 'image/png');
        const getUrl = new URL(await store.signedGetUrl('s/secret.png', 60));
        const putUrl = new URL(await store.signedPutUrl('s/secret.png', 60, 'image/png'));
        ctx.expect((await fetch(getUrl)).status).toBe(200);

        const variants: [string, URL, RequestInit?][] = [];
        const otherKey = new URL(getUrl);
        otherKey.pathname = otherKey.pathname.replace('secret.png', 'other.png');
        variants.push(['another key', otherKey]);
        for (const param of ['sig', 'signature', 'X-Amz-Signature', 'expires', 'X-Amz-Expires', 'X-Amz-Date']) {
          const value = getUrl.searchParams.get(param);
          if (value === null) continue;
          const tampered = new URL(getUrl);
          // change one character in the middle, away from base64's padding bits
          const i = Math.floor(value.length / 2);
          tampered.searchParams.set(param, value.slice(0, i) + (value[i] === '1' ? '2' : '1') + value.slice(i + 1));
          variants.push([`tampered ${param}`, tampered]);
        }
        variants.push(['GET URL used to PUT', getUrl, { method: 'PUT', body: 'overwrite', headers: { 'content-type': 'image/png' } }]);
        variants.push(['PUT URL used to GET', putUrl]);
        ctx.expect(variants.length).toBeGreaterThanOrEqual(5);
        for (const [what, url, init] of variants) {
          const response = await fetch(url, init);
          ctx.expect(response.status, what).toBe(403);
        }
        ctx.expect(decoder.decode((await store.get('s/secret.png'))!.body)).toBe('secret');
      },
    );

    it.skipIf(!suite.capabilities.refusesBadSignedUrls)('refuses an expired signed URL with 403', async (ctx) => {
      const store = await open(ctx);
      await store.put('e/short-lived.png', 'x', 'image/png');
      const url = await store.signedGetUrl('e/short-lived.png', 1);
      ctx.expect((await fetch(url)).status).toBe(200);
      // expiry has one-second resolution: poll until refused, with a deadline
      const deadline = Date.now() + 5000;
      let status = 200;
      while (status === 200 && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 200));
        status = (await fetch(url)).status;
      }
      ctx.expect(status).toBe(403);
    });

    // keys of both kinds the single node's split store routes (a record, an image), so each of
    // its stores fills up; to the other adapters they are just two keys
    it.skipIf(!suite.onSmallFs || !SMALL_FS.available)(
      `on a full disk a write rejects with StorageFullError and changes nothing; reads go on; the write succeeds once space is freed${suite.onSmallFs && !SMALL_FS.available ? ` (skipped: ${SMALL_FS.reason})` : ''}`,
      async (ctx) => {
        const fs = mountSmallFs();
        const store = await suite.onSmallFs!(fs.dir);
        ctx.onTestFinished(async () => {
          await store.close();
          fs.unmount();
        });
        const keys = ['tenants/t1/jobs/j1/status.json', 'tenants/t1/uploads/upl_full0disk0test'];
        for (const key of keys) await store.put(key, `old ${key}`, 'text/plain');
        const big = new Uint8Array(256 * 1024).fill(0x5a);
        fs.fill();

        for (const key of keys) {
          for (const [target, body] of [[key, big], [`${key}.new`, 'small']] as const) {
            const err = await store.put(target, body, 'text/plain').then(() => null, (e: unknown) => e);
            ctx.expect(err, `put ${target} on a full disk`).toBeInstanceOf(StorageFullError);
            const full = err as StorageFullError;
            ctx.expect(['ENOSPC', 'EDQUOT', 'SQLITE_FULL']).toContain(full.code);
            ctx.expect(full.reason).toMatch(/no space|full|quota/);
            ctx.expect(full.where.startsWith(fs.dir), full.where).toBe(true);
          }
          // nothing changed, and reads work
          const old = await store.get(key);
          ctx.expect(decoder.decode(old!.body)).toBe(`old ${key}`);
          ctx.expect(old!.contentType).toBe('text/plain');
          ctx.expect(await store.get(`${key}.new`)).toBeNull();
        }
        ctx.expect((await store.list('tenants/t1/')).keys).toEqual(byteOrder(keys));
        // a delete may need room too (a database logs it); if refused, it too changes nothing
        const deleted = await store.delete(keys[0]!).then(() => null, (e: unknown) => e);
        if (deleted === null) ctx.expect(await store.get(keys[0]!)).toBeNull();
        else {
          ctx.expect(deleted).toBeInstanceOf(StorageFullError);
          ctx.expect(await store.get(keys[0]!)).not.toBeNull();
        }

        fs.free();
        for (const key of keys) {
          await store.put(key, big, 'application/octet-stream');
          await store.put(`${key}.new`, 'small', 'text/plain');
          // compared as one Buffer: an element-wise toEqual of 256 KiB takes seconds
          ctx.expect(Buffer.from((await store.get(key))!.body).equals(big)).toBe(true);
          ctx.expect(decoder.decode((await store.get(`${key}.new`))!.body)).toBe('small');
        }
      },
    );

    it('close is idempotent and later calls are refused', async (ctx) => {
      const store = await open(ctx);
      await store.close();
      await store.close();
      await ctx.expect(store.get('k')).rejects.toThrow(/closed/);
    });
  });
}
