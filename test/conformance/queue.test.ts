/**
 * The JobQueue conformance suite against every adapter: memory, SQLite, and SQS on fauxqs.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { SqsQueue } from '../../adapters/aws/sqs-queue.ts';
import { SqliteQueue } from '../../adapters/embedded/sqlite-queue.ts';
import { MemoryQueue } from '../../adapters/memory/memory-queue.ts';
import { startFauxqs, type Fauxqs } from './fauxqs-server.ts';
import { describeQueueConformance } from './queue.case.ts';

describeQueueConformance('memory', {
  capabilities: { detectsStaleAck: true, acceptsCharactersBeyondBmp: true },
  async create(opts) {
    if (!opts?.deadLetter) return { queue: new MemoryQueue() };
    const deadLetterQueue = new MemoryQueue();
    const queue = new MemoryQueue({ deadLetter: { queue: deadLetterQueue, maxReceives: opts.deadLetter.maxReceives } });
    return { queue, deadLetterQueue };
  },
});

let dataRoot: string;
let sqliteDirs = 0;
beforeAll(async () => {
  dataRoot = await mkdtemp(join(tmpdir(), 'amdm-queue-conformance-'));
});
afterAll(async () => {
  await rm(dataRoot, { recursive: true, force: true });
});

describeQueueConformance('sqlite (writer inline)', {
  capabilities: { detectsStaleAck: true, acceptsCharactersBeyondBmp: true },
  async create(opts) {
    // a fresh file per test; within it the named queues share one database, as in production
    const dir = join(dataRoot, `db-${++sqliteDirs}`);
    if (!opts?.deadLetter) return { queue: new SqliteQueue({ dir, queue: 'jobs', writer: 'inline' }) };
    return {
      queue: new SqliteQueue({ dir, queue: 'jobs', deadLetter: { queue: 'jobs-dlq', maxReceives: opts.deadLetter.maxReceives }, writer: 'inline' }),
      deadLetterQueue: new SqliteQueue({ dir, queue: 'jobs-dlq', writer: 'inline' }),
    };
  },
  async onSmallFs(dir) {
    return new SqliteQueue({ dir, queue: 'jobs', writer: 'inline' });
  },
});

describeQueueConformance('sqlite (writer thread)', {
  capabilities: { detectsStaleAck: true, acceptsCharactersBeyondBmp: true },
  async create(opts) {
    const dir = join(dataRoot, `db-${++sqliteDirs}`);
    if (!opts?.deadLetter) return { queue: new SqliteQueue({ dir, queue: 'jobs', writer: 'thread' }) };
    return {
      queue: new SqliteQueue({ dir, queue: 'jobs', deadLetter: { queue: 'jobs-dlq', maxReceives: opts.deadLetter.maxReceives }, writer: 'thread' }),
      deadLetterQueue: new SqliteQueue({ dir, queue: 'jobs-dlq', writer: 'thread' }),
    };
  },
  async onSmallFs(dir) {
    return new SqliteQueue({ dir, queue: 'jobs', writer: 'thread' });
  },
});

let fauxqs: Fauxqs;
beforeAll(async () => {
  fauxqs = await startFauxqs();
});
afterAll(async () => {
  await fauxqs?.stop();
});

describeQueueConformance('sqs (fauxqs)', {
  // DeleteMessage ignores stale receipt handles on SQS and on fauxqs alike; fauxqs alone
  // refuses characters beyond the BMP (see the flags in queue.case.ts)
  capabilities: { detectsStaleAck: false, acceptsCharactersBeyondBmp: false },
  async create(opts) {
    if (!opts?.deadLetter) {
      return { queue: new SqsQueue({ client: fauxqs.sqs, queueUrl: await fauxqs.createQueue() }) };
    }
    const deadLetterUrl = await fauxqs.createQueue();
    const queueUrl = await fauxqs.createQueue({ deadLetterUrl, maxReceives: opts.deadLetter.maxReceives });
    return {
      queue: new SqsQueue({ client: fauxqs.sqs, queueUrl }),
      deadLetterQueue: new SqsQueue({ client: fauxqs.sqs, queueUrl: deadLetterUrl }),
    };
  },
});
