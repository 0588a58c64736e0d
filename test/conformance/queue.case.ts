/**
 * The JobQueue contract (shared/ports/queue.ts) as one suite that every adapter runs:
 * queue.test.ts calls it for the memory, SQLite and SQS (fauxqs) queues.
 *
 * Timing: leases of 1-2 s, waits polled by the queue itself (long polls with deadlines), never
 * a sleep that races the thing it checks. Margins are about a second each way, so a loaded CPU
 * does not flip a result. Tests run concurrently (each on its own fresh queue) because most of
 * their time is spent waiting for a lease to run out.
 */
import { describe, it, type TestContext } from 'vitest';
import { LeaseLostError, type JobQueue, type Lease } from '../../shared/ports/queue.ts';
import { StorageFullError } from '../../shared/ports/store.ts';
import { SMALL_FS, mountSmallFs } from './small-fs.ts';

export interface QueueCapabilities {
  /**
   * Whether `ack` with a lost lease throws LeaseLostError. SQS's DeleteMessage succeeds for a
   * stale receipt handle (deleting nothing once the message was received again), so the SQS
   * adapter cannot tell; for it the suite checks instead that such an ack leaves the message
   * with its current holder. `extend` and `release` detect lost leases on every backend.
   */
  detectsStaleAck: boolean;
  /**
   * Whether bodies may hold characters U+10000 and above. SQS accepts them; fauxqs 1.9 checks
   * bodies with a regular expression lacking the u flag and refuses every surrogate pair (so
   * every emoji) with InvalidMessageContents. Adapters must accept them (they are SQS's rule).
   */
  acceptsCharactersBeyondBmp: boolean;
}

export interface QueueFixture {
  queue: JobQueue;
  /** present when create() was asked for a dead-letter queue */
  deadLetterQueue?: JobQueue;
}

export interface QueueSuite {
  /**
   * A fresh, empty queue for one test. With `deadLetter`, the queue redrives to the returned
   * `deadLetterQueue` after `maxReceives` receives.
   */
  create(opts?: { deadLetter?: { maxReceives: number } }): Promise<QueueFixture>;
  capabilities: QueueCapabilities;
  /**
   * A fresh queue keeping everything under `dir`, a directory on a small filesystem that the
   * suite fills to the last byte. Absent for queues without a disk of their own (memory, SQS).
   */
  onSmallFs?(dir: string): Promise<JobQueue>;
}

const ZERO = { visible: 0, inFlight: 0, delayed: 0 };
const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export function describeQueueConformance(name: string, suite: QueueSuite): void {
  const open = async (ctx: TestContext, opts?: { deadLetter?: { maxReceives: number } }): Promise<QueueFixture> => {
    const fixture = await suite.create(opts);
    ctx.onTestFinished(async () => {
      await fixture.queue.close();
      await fixture.deadLetterQueue?.close();
    });
    return fixture;
  };

  /** exactly one lease, waiting up to `waitSeconds` for it */
  const receiveOne = async (queue: JobQueue, visibilitySeconds: number, waitSeconds = 3): Promise<Lease> => {
    const leases = await queue.receive({ visibilitySeconds, waitSeconds });
    if (leases.length !== 1) throw new Error(`expected one lease within ${waitSeconds} s, got ${leases.length}`);
    return leases[0]!;
  };

  describe.concurrent(`JobQueue conformance: ${name}`, () => {
    it('delivers a sent message with its body and id, receiveCount 1 and a handle', async (ctx) => {
      const { queue } = await open(ctx);
      const body = JSON.stringify({ v: 1, job_id: 'j-1', note: 'héllo\t\r\n\u00A0\uD7FF\uE000\uFFFD' });
      const id = await queue.send(body);
      ctx.expect(typeof id === 'string' && id.length > 0).toBe(true);
      const lease = await receiveOne(queue, 30);
      ctx.expect(lease).toMatchObject({ messageId: id, body, receiveCount: 1 });
      ctx.expect(typeof lease.handle === 'string' && lease.handle.length > 0).toBe(true);
    });

    it.skipIf(!suite.capabilities.acceptsCharactersBeyondBmp)('round-trips characters beyond the BMP', async (ctx) => {
      const { queue } = await open(ctx);
      const body = 'emoji 😀, last code point \u{10FFFF}';
      await queue.send(body);
      ctx.expect((await receiveOne(queue, 30)).body).toBe(body);
    });

    it('hides a leased message, then redelivers it after the timeout with receiveCount 2', async (ctx) => {
      const { queue } = await open(ctx);
      await queue.send('job');
      const t0 = Date.now();
      const first = await receiveOne(queue, 2);
      ctx.expect(await queue.receive({ visibilitySeconds: 30 })).toEqual([]);
      ctx.expect(await queue.stats()).toEqual({ visible: 0, inFlight: 1, delayed: 0 });
      const again = await receiveOne(queue, 30, 6);
      ctx.expect(Date.now() - t0).toBeGreaterThanOrEqual(1900);
      ctx.expect(again).toMatchObject({ messageId: first.messageId, body: 'job', receiveCount: 2 });
      ctx.expect(again.handle).not.toBe(first.handle);
    });

    it('extend keeps a message invisible past its original timeout', async (ctx) => {
      const { queue } = await open(ctx);
      await queue.send('long job');
      const lease = await receiveOne(queue, 2);
      await queue.extend(lease, 6);
      const t = Date.now();
      // waits past the original 2 s lease, well inside the extended one
      ctx.expect(await queue.receive({ visibilitySeconds: 30, waitSeconds: 3 })).toEqual([]);
      ctx.expect(Date.now() - t).toBeGreaterThanOrEqual(2500);
      ctx.expect(await queue.stats()).toEqual({ visible: 0, inFlight: 1, delayed: 0 });
      await queue.ack(lease);
      ctx.expect(await queue.stats()).toEqual(ZERO);
    });

    it('release makes the message visible at once, and the released lease is spent', async (ctx) => {
      const { queue } = await open(ctx);
      await queue.send('retry me');
      const lease = await receiveOne(queue, 30);
      await queue.release(lease);
      await ctx.expect(queue.extend(lease, 30)).rejects.toBeInstanceOf(LeaseLostError);
      const again = await receiveOne(queue, 30);
      ctx.expect(again).toMatchObject({ messageId: lease.messageId, body: 'retry me', receiveCount: 2 });
    });

    it('release with a delay keeps the message away until the delay has passed', async (ctx) => {
      const { queue } = await open(ctx);
      await queue.send('back off');
      const lease = await receiveOne(queue, 30);
      const t = Date.now();
      await queue.release(lease, 2);
      ctx.expect(await queue.receive({ visibilitySeconds: 30 })).toEqual([]);
      ctx.expect((await queue.stats()).visible).toBe(0);
      const again = await receiveOne(queue, 30, 6);
      ctx.expect(Date.now() - t).toBeGreaterThanOrEqual(1900);
      ctx.expect(again).toMatchObject({ messageId: lease.messageId, receiveCount: 2 });
    });

    it('send with a delay holds the message back and counts it as delayed', async (ctx) => {
      const { queue } = await open(ctx);
      const t = Date.now();
      const id = await queue.send('later', { delaySeconds: 2 });
      ctx.expect(await queue.stats()).toEqual({ visible: 0, inFlight: 0, delayed: 1 });
      ctx.expect(await queue.receive({ visibilitySeconds: 30 })).toEqual([]);
      const lease = await receiveOne(queue, 30, 6);
      ctx.expect(Date.now() - t).toBeGreaterThanOrEqual(1900);
      ctx.expect(lease).toMatchObject({ messageId: id, body: 'later', receiveCount: 1 });
    });

    it('ack removes the message for good', async (ctx) => {
      const { queue } = await open(ctx);
      await queue.send('done');
      const lease = await receiveOne(queue, 1);
      await queue.ack(lease);
      ctx.expect(await queue.stats()).toEqual(ZERO);
      // longer than the 1 s lease: an acked message must not come back when it would have expired
      ctx.expect(await queue.receive({ visibilitySeconds: 30, waitSeconds: 2 })).toEqual([]);
    });

    it('a lease used after ack throws LeaseLostError', async (ctx) => {
      const { queue } = await open(ctx);
      await queue.send('once');
      const lease = await receiveOne(queue, 30);
      await queue.ack(lease);
      const lost = await queue.extend(lease, 30).catch((err: unknown) => err);
      ctx.expect(lost).toBeInstanceOf(LeaseLostError);
      ctx.expect((lost as Error).message).toContain(lease.messageId);
      await ctx.expect(queue.release(lease)).rejects.toBeInstanceOf(LeaseLostError);
      if (suite.capabilities.detectsStaleAck) {
        await ctx.expect(queue.ack(lease)).rejects.toBeInstanceOf(LeaseLostError);
      } else {
        await queue.ack(lease);
      }
    });

    it('a lease that expired and was re-leased by another receiver is lost; the new holder keeps the message', async (ctx) => {
      const { queue } = await open(ctx);
      await queue.send('contended');
      const stale = await receiveOne(queue, 1);
      const current = await receiveOne(queue, 30, 5);
      ctx.expect(current).toMatchObject({ messageId: stale.messageId, receiveCount: 2 });
      await ctx.expect(queue.extend(stale, 30)).rejects.toBeInstanceOf(LeaseLostError);
      await ctx.expect(queue.release(stale)).rejects.toBeInstanceOf(LeaseLostError);
      if (suite.capabilities.detectsStaleAck) {
        await ctx.expect(queue.ack(stale)).rejects.toBeInstanceOf(LeaseLostError);
      } else {
        await queue.ack(stale);
      }
      // whatever the stale calls did, the message is still held by its current receiver
      ctx.expect(await queue.stats()).toEqual({ visible: 0, inFlight: 1, delayed: 0 });
      await queue.extend(current, 30);
      await queue.ack(current);
      ctx.expect(await queue.stats()).toEqual(ZERO);
    });

    it('moves a message received maxReceives times to the dead-letter queue, with its body', async (ctx) => {
      const { queue, deadLetterQueue } = await open(ctx, { deadLetter: { maxReceives: 2 } });
      const id = await queue.send('poison');
      for (let n = 1; n <= 2; n++) {
        const lease = await receiveOne(queue, 30);
        ctx.expect(lease.receiveCount).toBe(n);
        await queue.release(lease);
      }
      ctx.expect(await queue.receive({ visibilitySeconds: 30, waitSeconds: 1 })).toEqual([]);
      const dead = await receiveOne(deadLetterQueue!, 30);
      ctx.expect(dead).toMatchObject({ messageId: id, body: 'poison' });
      ctx.expect(await queue.stats()).toEqual(ZERO);
    });

    it('redrives a message whose last lease ran out (not only released ones)', async (ctx) => {
      const { queue, deadLetterQueue } = await open(ctx, { deadLetter: { maxReceives: 1 } });
      const id = await queue.send('crashed worker');
      await receiveOne(queue, 1);
      // the move happens on a receive of the source queue, as on SQS: poll both at once
      const [source, dead] = await Promise.all([
        queue.receive({ visibilitySeconds: 30, waitSeconds: 3 }),
        deadLetterQueue!.receive({ visibilitySeconds: 30, waitSeconds: 5 }),
      ]);
      ctx.expect(source).toEqual([]);
      ctx.expect(dead).toHaveLength(1);
      ctx.expect(dead[0]).toMatchObject({ messageId: id, body: 'crashed worker' });
    });

    it('stats counts visible, in-flight and delayed messages', async (ctx) => {
      const { queue } = await open(ctx);
      ctx.expect(await queue.stats()).toEqual(ZERO);
      await queue.send('a');
      await queue.send('b');
      await queue.send('c', { delaySeconds: 60 });
      await receiveOne(queue, 30);
      ctx.expect(await queue.stats()).toEqual({ visible: 1, inFlight: 1, delayed: 1 });
    });

    it('receives several messages per call, up to max', async (ctx) => {
      const { queue } = await open(ctx);
      const sent = new Set([await queue.send('1'), await queue.send('2'), await queue.send('3')]);
      const firstBatch = await queue.receive({ visibilitySeconds: 30, waitSeconds: 2, max: 2 });
      ctx.expect(firstBatch.length).toBeGreaterThanOrEqual(1);
      ctx.expect(firstBatch.length).toBeLessThanOrEqual(2);
      // SQS may return fewer than available; keep asking until all three are leased
      const got = new Map(firstBatch.map((l) => [l.messageId, l]));
      const deadline = Date.now() + 5000;
      while (got.size < 3 && Date.now() < deadline) {
        for (const l of await queue.receive({ visibilitySeconds: 30, waitSeconds: 1, max: 10 })) got.set(l.messageId, l);
      }
      ctx.expect(new Set(got.keys())).toEqual(sent);
      ctx.expect([...got.values()].every((l) => l.receiveCount === 1)).toBe(true);
      ctx.expect(await queue.stats()).toEqual({ visible: 0, inFlight: 3, delayed: 0 });
    });

    it('a long poll returns as soon as a message is sent during the wait', async (ctx) => {
      const { queue } = await open(ctx);
      const t = Date.now();
      const pending = queue.receive({ visibilitySeconds: 30, waitSeconds: 10 });
      // lets the poll start waiting; the result holds whichever runs first
      await pause(300);
      const id = await queue.send('wake up');
      const leases = await pending;
      ctx.expect(leases.map((l) => l.messageId)).toEqual([id]);
      ctx.expect(Date.now() - t).toBeLessThan(3000);
    });

    it('a long poll on an empty queue returns nothing after waitSeconds', async (ctx) => {
      const { queue } = await open(ctx);
      const t = Date.now();
      ctx.expect(await queue.receive({ visibilitySeconds: 30, waitSeconds: 1 })).toEqual([]);
      const elapsed = Date.now() - t;
      ctx.expect(elapsed).toBeGreaterThanOrEqual(900);
      ctx.expect(elapsed).toBeLessThan(4000);
    });

    it('an AbortSignal ends a long poll with no leases', async (ctx) => {
      const { queue } = await open(ctx);
      const controller = new AbortController();
      const t = Date.now();
      const pending = queue.receive({ visibilitySeconds: 30, waitSeconds: 20, signal: controller.signal });
      setTimeout(() => controller.abort(), 200);
      ctx.expect(await pending).toEqual([]);
      ctx.expect(Date.now() - t).toBeLessThan(3000);
      ctx.expect(await queue.receive({ visibilitySeconds: 30, waitSeconds: 20, signal: AbortSignal.abort() })).toEqual([]);
      // the queue still works after an aborted poll
      await queue.send('after abort');
      ctx.expect((await receiveOne(queue, 30)).body).toBe('after abort');
    });

    it('close ends a pending long poll, is idempotent, and refuses later calls', async (ctx) => {
      const { queue } = await open(ctx);
      const t = Date.now();
      const pending = queue.receive({ visibilitySeconds: 30, waitSeconds: 20 });
      await pause(100);
      await queue.close();
      ctx.expect(await pending).toEqual([]);
      ctx.expect(Date.now() - t).toBeLessThan(3000);
      await queue.close();
      await ctx.expect(queue.send('late')).rejects.toThrow(/closed/);
    });

    it.skipIf(!suite.onSmallFs || !SMALL_FS.available)(
      `on a full disk the calls that write reject with StorageFullError and change nothing; all works once space is freed${suite.onSmallFs && !SMALL_FS.available ? ` (skipped: ${SMALL_FS.reason})` : ''}`,
      async (ctx) => {
        const fs = mountSmallFs();
        const queue = await suite.onSmallFs!(fs.dir);
        ctx.onTestFinished(async () => {
          await queue.close();
          fs.unmount();
        });
        const heldId = await queue.send('held');
        const held = await receiveOne(queue, 30);
        const waitingId = await queue.send('waiting');
        fs.fill();

        const refused = async (what: string, call: Promise<unknown>) => {
          const err = await call.then(() => null, (e: unknown) => e);
          ctx.expect(err, `${what} on a full disk`).toBeInstanceOf(StorageFullError);
          ctx.expect(['ENOSPC', 'EDQUOT', 'SQLITE_FULL']).toContain((err as StorageFullError).code);
        };
        await refused('send', queue.send('x'.repeat(200_000)));
        await refused('receive', queue.receive({ visibilitySeconds: 30, waitSeconds: 0 }));
        await refused('extend', queue.extend(held, 60));
        await refused('release', queue.release(held, 0));
        await refused('ack', queue.ack(held));
        ctx.expect(await queue.stats()).toEqual({ visible: 1, inFlight: 1, delayed: 0 });

        fs.free();
        await queue.extend(held, 60);
        await queue.ack(held);
        const sentId = await queue.send('sent after');
        const leases = await queue.receive({ visibilitySeconds: 30, waitSeconds: 1, max: 10 });
        ctx.expect(leases.map((l) => [l.messageId, l.body, l.receiveCount])).toEqual([
          [waitingId, 'waiting', 1],
          [sentId, 'sent after', 1],
        ]);
        ctx.expect(heldId).not.toBe(waitingId);
      },
    );

    it('refuses arguments outside the SQS limits, naming the value', async (ctx) => {
      const { queue } = await open(ctx);
      const bad: [Promise<unknown>, RegExp][] = [
        [queue.receive({ visibilitySeconds: 1.5 }), /visibilitySeconds.*1\.5/],
        [queue.receive({ visibilitySeconds: -1 }), /visibilitySeconds.*-1/],
        [queue.receive({ visibilitySeconds: 43_201 }), /visibilitySeconds.*43201/],
        [queue.receive({ visibilitySeconds: 30, max: 0 }), /max.*0/],
        [queue.receive({ visibilitySeconds: 30, max: 11 }), /max.*11/],
        [queue.receive({ visibilitySeconds: 30, waitSeconds: -1 }), /waitSeconds.*-1/],
        [queue.send(''), /empty/],
        [queue.send('x', { delaySeconds: 901 }), /delaySeconds.*901/],
        [queue.send('nul \u0000 byte'), /U\+0000/],
        [queue.send('\uD800 lone surrogate'), /U\+D800/],
        [queue.send('x'.repeat(262_145)), /262145 bytes/],
      ];
      for (const [call, message] of bad) await ctx.expect(call).rejects.toThrow(message);
      ctx.expect(await queue.stats()).toEqual(ZERO);
    });
  });
}
