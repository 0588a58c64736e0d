/**
 * What only the SQLite store promises beyond the shared suite: persistence, acknowledged puts
 * surviving kill -9, several processes on one file, group commit (with the queues when they
 * share the file), and a schema it does not know refused. (Power loss cannot be staged in a
 * test; that half rests on synchronous=FULL in sqlite-database.ts.)
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SQLITE_QUEUE_FILE, SqliteQueue } from '../../adapters/embedded/sqlite-queue.ts';
import { SQLITE_STORE_FILE, SqliteStore } from '../../adapters/embedded/sqlite-store.ts';
import { CHILD_SIGNING as signing, crashBody } from './fixtures/sqlite-store-child.ts';
import { runChild } from './run-child.ts';

const here = dirname(fileURLToPath(import.meta.url));
const CHILD = join(here, 'fixtures', 'sqlite-store-child.ts');
const decoder = new TextDecoder();

let base: string;
let dirs = 0;
beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), 'amdm-sqlite-store-'));
});
afterAll(async () => {
  await rm(base, { recursive: true, force: true });
});
const freshDir = (): string => join(base, `db-${++dirs}`);

/** Runs the store's child script (run-child.ts); with `killAfterLines`, SIGKILLs it after that many lines. */
const child = (dir: string, args: string[], killAfterLines?: number) => runChild(CHILD, dir, args, killAfterLines);

describe.concurrent('SqliteStore beyond the shared suite', () => {
  it('a new instance on the same file sees what an earlier one wrote', async () => {
    const dir = freshDir();
    const first = new SqliteStore({ dir, signing });
    await first.put('p/persisted.json', '{"ok":true}', 'application/json');
    await first.close();
    const reopened = new SqliteStore({ dir, signing });
    try {
      const got = await reopened.get('p/persisted.json');
      expect(got).toEqual({ body: new TextEncoder().encode('{"ok":true}'), contentType: 'application/json' });
      expect(Object.getPrototypeOf(got!.body)).toBe(Uint8Array.prototype);
    } finally {
      await reopened.close();
    }
  });

  it('puts pending when the store closes are committed, not dropped', async () => {
    const dir = freshDir();
    const store = new SqliteStore({ dir, signing });
    const pending = store.put('late/put', 'just in time');
    await store.close();
    await pending;
    const reopened = new SqliteStore({ dir, signing });
    try {
      expect(decoder.decode((await reopened.get('late/put'))!.body)).toBe('just in time');
    } finally {
      await reopened.close();
    }
  });

  it('a body buffer reused by the caller after put does not change the stored object', async () => {
    const dir = freshDir();
    const store = new SqliteStore({ dir, signing });
    try {
      const buffer = new TextEncoder().encode('original');
      const put = store.put('copy/me', buffer);
      buffer.fill(0x78);
      await put;
      expect(decoder.decode((await store.get('copy/me'))!.body)).toBe('original');
    } finally {
      await store.close();
    }
  });

  it.each(['inline', 'thread'] as const)('group commit (%s writer): puts made together share one transaction, and the queue sends of that turn join it', async (writer) => {
    const dir = freshDir();
    const store = new SqliteStore({ dir, file: SQLITE_QUEUE_FILE, signing, writer });
    const queue = new SqliteQueue({ dir, queue: 'jobs' });
    try {
      const before = store.commitStats;
      await Promise.all([
        ...Array.from({ length: 40 }, (_, i) => store.put(`g/k${i}`, `body ${i}`, 'text/plain')),
        ...Array.from({ length: 10 }, (_, i) => queue.send(`message ${i}`)),
      ]);
      // one turn of the event loop: one transaction for 50 statements
      expect(store.commitStats).toEqual({ commits: before.commits + 1, ops: before.ops + 50 });
      expect(queue.sendStats).toEqual({ commits: 1, messages: 10 });
      expect((await store.list('g/')).keys).toHaveLength(40);
      expect((await queue.stats()).visible).toBe(10);
    } finally {
      await Promise.all([store.close(), queue.close()]);
    }
  });

  it('after kill -9 mid-write, every acknowledged put reads back whole', async () => {
    const dir = freshDir();
    // creates the file first, so the child never races the schema migration
    await new SqliteStore({ dir, signing }).close();
    const { lines, signal } = await child(dir, ['put-until-killed'], 150);
    expect(signal).toBe('SIGKILL');
    const acked = lines.map(Number);
    expect(acked.length).toBeGreaterThanOrEqual(150);
    const store = new SqliteStore({ dir, signing });
    try {
      for (const i of acked) {
        const got = await store.get(`crash/k${i}`);
        expect(got, `acknowledged key crash/k${i}`).not.toBeNull();
        expect(decoder.decode(got!.body)).toBe(crashBody(i));
      }
      // puts not yet acknowledged may exist or not; if they exist, they are whole
      const listed = (await store.list('crash/')).keys;
      expect(listed.length).toBeGreaterThanOrEqual(acked.length);
      for (const key of listed) expect(decoder.decode((await store.get(key))!.body)).toBe(crashBody(Number(key.slice('crash/k'.length))));
      await store.put('crash/after', 'x');
    } finally {
      await store.close();
    }
  });

  it('another process writing to the file is seen at once, and this one keeps writing meanwhile', async () => {
    const dir = freshDir();
    const store = new SqliteStore({ dir, signing });
    try {
      let mine = 0;
      let running = true;
      const writer = (async () => {
        while (running) await store.put(`mine/k${mine++}`, 'x');
      })();
      const { lines } = await child(dir, ['put-some', '200']);
      running = false;
      await writer;
      expect(lines).toEqual(['done']);
      expect((await store.list('other/')).keys).toHaveLength(200);
      expect(decoder.decode((await store.get('other/k7'))!.body)).toBe('from another process 7');
      let listed = 0;
      for (let cursor: string | null = null, first = true; first || cursor !== null; first = false) {
        const page: { keys: string[]; cursor: string | null } = await store.list('mine/', { cursor });
        listed += page.keys.length;
        cursor = page.cursor;
      }
      expect(listed).toBe(mine);
    } finally {
      await store.close();
    }
  });

  it('shares a file with the queues without touching their schema version, and refuses a store schema it does not know', async () => {
    const dir = freshDir();
    await new SqliteQueue({ dir, queue: 'jobs' }).close();
    await new SqliteStore({ dir, file: SQLITE_QUEUE_FILE, signing }).close();
    // the queues, opened again, still find their own version
    await new SqliteQueue({ dir, queue: 'jobs' }).close();
    const raw = new Database(join(dir, SQLITE_QUEUE_FILE));
    try {
      expect(raw.pragma('journal_mode', { simple: true })).toBe('wal');
      expect(raw.pragma('user_version', { simple: true })).toBe(1);
      raw.prepare("UPDATE store_meta SET value = 7 WHERE name = 'schema'").run();
    } finally {
      raw.close();
    }
    expect(() => new SqliteStore({ dir, file: SQLITE_QUEUE_FILE, signing })).toThrow(/store schema version 7; this build reads version 1/);
    // the failed open let go of the file: the queues still open it
    await new SqliteQueue({ dir, queue: 'jobs' }).close();
  });

  it('refuses bad options, naming them', () => {
    const dir = freshDir();
    expect(() => new SqliteStore({ dir: '', signing })).toThrow(/dir must be a directory path; got ""/);
    expect(() => new SqliteStore({ dir, file: '../escape.sqlite', signing })).toThrow(/file must be a plain file name.*"\.\.\/escape\.sqlite"/);
    expect(() => new SqliteStore({ dir, signing: { secret: 'short', baseUrl: 'http://x' } })).toThrow(/signing.secret .*at least 32 bytes; got 5 bytes/);
    expect(() => new SqliteStore({ dir, signing, busyTimeoutMs: -1 })).toThrow(/busyTimeoutMs.*got -1/);
    expect(SQLITE_STORE_FILE).toBe('store.sqlite');
  });
});
