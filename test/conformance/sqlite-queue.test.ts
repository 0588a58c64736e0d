/**
 * What only the SQLite queue promises beyond the shared suite: durability across restarts and
 * crashes, several processes on one file, several named queues in one file.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SharedDatabase } from '../../adapters/embedded/sqlite-database.ts';
import { SQLITE_QUEUE_FILE, SqliteQueue } from '../../adapters/embedded/sqlite-queue.ts';
import type { Lease } from '../../shared/ports/queue.ts';
import { runChild } from './run-child.ts';

const here = dirname(fileURLToPath(import.meta.url));
const CHILD = join(here, 'fixtures', 'sqlite-queue-child.ts');

let root: string;
let dirs = 0;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'amdm-sqlite-queue-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});
const freshDir = (): string => join(root, `db-${++dirs}`);

/** Runs the queue's child script; resolves with its stdout lines and the time it exited. */
const child = (dir: string, ...args: string[]) => runChild(CHILD, dir, args);

describe.concurrent('SqliteQueue beyond the shared suite', () => {
  it('keeps messages across close and reopen', async () => {
    const dir = freshDir();
    const before = new SqliteQueue({ dir, queue: 'jobs' });
    const id = await before.send('survives a restart', { delaySeconds: 0 });
    await before.close();
    const after = new SqliteQueue({ dir, queue: 'jobs' });
    try {
      const [lease] = await after.receive({ visibilitySeconds: 30, waitSeconds: 2 });
      expect(lease).toMatchObject({ messageId: id, body: 'survives a restart', receiveCount: 1 });
    } finally {
      await after.close();
    }
  });

  it('redelivers, with receiveCount 2, a message whose holder closed without acking', async () => {
    const dir = freshDir();
    const worker = new SqliteQueue({ dir, queue: 'jobs' });
    const id = await worker.send('job');
    const [lease] = await worker.receive({ visibilitySeconds: 1, waitSeconds: 2 });
    expect(lease?.messageId).toBe(id);
    await worker.close();
    const successor = new SqliteQueue({ dir, queue: 'jobs' });
    try {
      const [again] = await successor.receive({ visibilitySeconds: 30, waitSeconds: 5 });
      expect(again).toMatchObject({ messageId: id, receiveCount: 2 });
    } finally {
      await successor.close();
    }
  });

  it('redelivers a message leased by a process that was killed', async () => {
    const dir = freshDir();
    const queue = new SqliteQueue({ dir, queue: 'jobs' });
    try {
      const id = await queue.send('held by a doomed worker');
      const { lines, signal } = await child(dir, 'lease-and-die', '1');
      expect(signal).toBe('SIGKILL');
      const leased = JSON.parse(lines[0]!) as Lease[];
      expect(leased.map((l) => l.messageId)).toEqual([id]);
      const [again] = await queue.receive({ visibilitySeconds: 30, waitSeconds: 5 });
      expect(again).toMatchObject({ messageId: id, body: 'held by a doomed worker', receiveCount: 2 });
    } finally {
      await queue.close();
    }
  });

  it('a long poll sees a send by another process within the poll interval', async () => {
    const dir = freshDir();
    const queue = new SqliteQueue({ dir, queue: 'jobs' });
    try {
      const pending = queue.receive({ visibilitySeconds: 30, waitSeconds: 20 }).then((leases) => ({
        leases,
        at: Date.now(),
      }));
      const sent = await child(dir, 'send', 'from the CLI');
      const { leases, at } = await pending;
      expect(leases.map((l) => l.messageId)).toEqual(sent.lines);
      // the child committed before it exited; 100 ms polling plus scheduling slack
      expect(at - sent.exitedAt).toBeLessThan(1500);
    } finally {
      await queue.close();
    }
  });

  it('two processes draining one queue never lease the same message', async () => {
    const dir = freshDir();
    const queue = new SqliteQueue({ dir, queue: 'jobs' });
    const sent = new Set<string>();
    for (let i = 0; i < 30; i++) sent.add(await queue.send(`job ${i}`));
    await queue.close();
    const [a, b] = await Promise.all([child(dir, 'drain'), child(dir, 'drain')]);
    const leased = [...a.lines, ...b.lines];
    expect(leased).toHaveLength(30);
    expect(new Set(leased)).toEqual(sent);
  });

  it('keeps named queues in one file apart, each with its own dead-letter queue', async () => {
    const dir = freshDir();
    const jobs = new SqliteQueue({ dir, queue: 'jobs', deadLetter: { queue: 'jobs-dlq', maxReceives: 1 } });
    const webhooks = new SqliteQueue({ dir, queue: 'webhooks' });
    const jobsDlq = new SqliteQueue({ dir, queue: 'jobs-dlq' });
    try {
      await jobs.send('a job');
      expect(await webhooks.receive({ visibilitySeconds: 30 })).toEqual([]);
      expect(await webhooks.stats()).toEqual({ visible: 0, inFlight: 0, delayed: 0 });
      const [lease] = await jobs.receive({ visibilitySeconds: 30 });
      await jobs.release(lease!);
      // the second receive redrives instead of delivering, and wakes the DLQ's pollers at once
      const t = Date.now();
      const dead = jobsDlq.receive({ visibilitySeconds: 30, waitSeconds: 10 });
      expect(await jobs.receive({ visibilitySeconds: 30 })).toEqual([]);
      expect((await dead).map((l) => l.body)).toEqual(['a job']);
      expect(Date.now() - t).toBeLessThan(1000);
      expect(await webhooks.stats()).toEqual({ visible: 0, inFlight: 0, delayed: 0 });
    } finally {
      await Promise.all([jobs.close(), webhooks.close(), jobsDlq.close()]);
    }
  });

  it('group commit: sends made together share one transaction, and each resolves with its own id', async () => {
    const dir = freshDir();
    const queue = new SqliteQueue({ dir, queue: 'jobs' });
    try {
      const ids = await Promise.all(Array.from({ length: 50 }, (_, i) => queue.send(`burst ${i}`)));
      expect(new Set(ids).size).toBe(50);
      // all 50 were sent in one turn of the event loop
      expect(queue.sendStats).toEqual({ commits: 1, messages: 50 });
      await queue.send('alone');
      expect(queue.sendStats).toEqual({ commits: 2, messages: 51 });
      const bodies = new Map<string, string>();
      while (bodies.size < 51) {
        for (const l of await queue.receive({ visibilitySeconds: 60, max: 10 })) bodies.set(l.messageId, l.body);
      }
      expect(ids.map((id) => bodies.get(id))).toEqual(Array.from({ length: 50 }, (_, i) => `burst ${i}`));
      await queue.close();
      await expect(queue.send('late')).rejects.toThrow(/closed/);
    } finally {
      await queue.close();
    }
  });

  it('sends pending when the queue closes are committed, not dropped', async () => {
    const dir = freshDir();
    const queue = new SqliteQueue({ dir, queue: 'jobs' });
    const pending = queue.send('just in time');
    await queue.close();
    const id = await pending;
    const reopened = new SqliteQueue({ dir, queue: 'jobs' });
    try {
      const [lease] = await reopened.receive({ visibilitySeconds: 30 });
      expect(lease).toMatchObject({ messageId: id, body: 'just in time' });
    } finally {
      await reopened.close();
    }
  });

  it('after kill -9 mid-burst, every acknowledged send is in the queue', async () => {
    const dir = freshDir();
    // creates the file first, so the child never races the schema migration
    await new SqliteQueue({ dir, queue: 'jobs' }).close();
    const { lines, signal } = await runChild(CHILD, dir, ['send-until-killed'], 200);
    expect(signal).toBe('SIGKILL');
    expect(lines.length).toBeGreaterThanOrEqual(200);
    const queue = new SqliteQueue({ dir, queue: 'jobs' });
    try {
      const found = new Set<string>();
      for (;;) {
        const leases = await queue.receive({ visibilitySeconds: 60, max: 10 });
        if (leases.length === 0) break;
        for (const l of leases) found.add(l.messageId);
      }
      expect(lines.filter((id) => !found.has(id))).toEqual([]);
    } finally {
      await queue.close();
    }
  });

  it('opens the file in WAL mode and refuses a schema it does not know', async () => {
    const dir = freshDir();
    await new SqliteQueue({ dir, queue: 'jobs' }).close();
    const raw = new Database(join(dir, SQLITE_QUEUE_FILE));
    try {
      expect(raw.pragma('journal_mode', { simple: true })).toBe('wal');
      raw.pragma('user_version = 99');
    } finally {
      raw.close();
    }
    expect(() => new SqliteQueue({ dir, queue: 'jobs' })).toThrow(/schema version 99; this build reads version 1/);
  });

  it('says where a message stands: ahead of it in delivery order and leased, by id or by what its body contains, capped', async () => {
    const dir = freshDir();
    const jobs = new SqliteQueue({ dir, queue: 'jobs' });
    const other = new SqliteQueue({ dir, queue: 'other' });
    try {
      const ids: string[] = [];
      for (const body of ['{"job":"a%b"}', '{"job":"a_b"}', '{"job":"axb"}', '{"job":"last"}']) ids.push(await jobs.send(body));
      await other.send('{"job":"last"}');
      expect(jobs.position({ id: ids[0]! }, 10)).toEqual({ ahead: 0, inFlight: 0 });
      expect(jobs.position({ id: ids[3]! }, 10)).toEqual({ ahead: 3, inFlight: 0 });
      expect(jobs.position({ id: ids[3]! }, 2)).toEqual({ ahead: 2, inFlight: 0 });
      // LIKE's wildcards in the strings are literal characters
      expect(jobs.position({ bodyContains: ['"a_b"'] }, 10)).toEqual({ ahead: 1, inFlight: 0 });
      expect(jobs.position({ bodyContains: ['"axb"', '{"job"'] }, 10)).toEqual({ ahead: 2, inFlight: 0 });
      const [lease] = await jobs.receive({ max: 1, visibilitySeconds: 60 });
      expect(lease!.messageId).toBe(ids[0]);
      expect(jobs.position({ id: ids[1]! }, 10)).toEqual({ ahead: 0, inFlight: 1 });
      await jobs.ack(lease!);
      expect(jobs.position({ id: ids[0]! }, 10)).toEqual({ ahead: null, inFlight: 0 });
      expect(jobs.position({ bodyContains: ['nowhere'] }, 10)).toEqual({ ahead: null, inFlight: 0 });
      // another queue's messages are not counted
      expect(other.position({ bodyContains: ['"last"'] }, 10)).toEqual({ ahead: 0, inFlight: 0 });
      expect(() => jobs.position({ id: ids[1]! }, 0)).toThrow(/max must be a positive integer; got 0/);
    } finally {
      await Promise.all([jobs.close(), other.close()]);
    }
  });

  it('one writer per file in a process: the first opener decides (the writer thread by default), another that names a different one is refused', async () => {
    const dir = freshDir();
    const writerOf = (q: SqliteQueue) => (q.commitLog() as SharedDatabase).writer;
    const first = new SqliteQueue({ dir, queue: 'jobs' });
    try {
      expect(writerOf(first)).toBe('thread');
      expect(() => new SqliteQueue({ dir, queue: 'other', writer: 'inline' })).toThrow(/already open in this process with the "thread" writer; this opener asked for "inline"/);
      for (const writer of ['thread', undefined] as const) {
        const joined = new SqliteQueue({ dir, queue: 'other', ...(writer ? { writer } : {}) });
        expect(joined.commitLog()).toBe(first.commitLog());
        await joined.close();
      }
    } finally {
      await first.close();
    }
    // closed everywhere in this process: the next opener decides again
    const inline = new SqliteQueue({ dir, queue: 'jobs', writer: 'inline' });
    expect(writerOf(inline)).toBe('inline');
    await inline.close();
  });

  it('refuses bad options, naming them', () => {
    const dir = freshDir();
    expect(() => new SqliteQueue({ dir, queue: 'jobs/../x' })).toThrow(/queue name "jobs\/..\/x"/);
    expect(() => new SqliteQueue({ dir, queue: '' })).toThrow(/queue name ""/);
    expect(() => new SqliteQueue({ dir, queue: 'jobs', deadLetter: { queue: 'jobs', maxReceives: 3 } })).toThrow(
      /deadLetter.queue must differ/,
    );
    expect(() => new SqliteQueue({ dir, queue: 'jobs', deadLetter: { queue: 'dlq', maxReceives: 0 } })).toThrow(
      /maxReceives.*got 0/,
    );
    expect(() => new SqliteQueue({ dir, queue: 'jobs', pollIntervalMs: 1 })).toThrow(/pollIntervalMs.*got 1/);
    expect(() => new SqliteQueue({ dir: '', queue: 'jobs' })).toThrow(/dir must be a directory path/);
  });
});
