import { describe, expect, it } from 'vitest';
import { StorageFullError } from './ports/store.ts';
import { StorageHealth } from './storage-health.ts';

function recorder() {
  const lines: { level: string; msg: string; fields?: Record<string, unknown> }[] = [];
  return {
    lines,
    logger: {
      error: (msg: string, fields?: Record<string, unknown>) => lines.push({ level: 'error', msg, ...(fields ? { fields } : {}) }),
      info: (msg: string, fields?: Record<string, unknown>) => lines.push({ level: 'info', msg, ...(fields ? { fields } : {}) }),
    },
  };
}

describe('StorageHealth', () => {
  it('logs a storage once when it fills and once when it has room again, however many writes fail between', () => {
    const { lines, logger } = recorder();
    let now = Date.parse('2025-03-01T10:00:00Z');
    const health = new StorageHealth({ logger, now: () => now });
    expect(health.report()).toEqual({ status: 'ok' });
    for (let i = 0; i < 50; i++) health.full(new StorageFullError('/data/store', 'ENOSPC'));
    expect(health.isFull).toBe(true);
    expect(health.report()).toEqual({ status: 'degraded', reason: 'store full: no space left on the device (ENOSPC)', since: '2025-03-01T10:00:00.000Z' });
    now += 90_000;
    health.room('/data/store');
    health.room('/data/store');
    expect(health.report()).toEqual({ status: 'ok' });
    expect(lines).toEqual([
      { level: 'error', msg: expect.stringMatching(/^storage full/), fields: { where: '/data/store', code: 'ENOSPC', reason: 'no space left on the device' } },
      { level: 'info', msg: expect.stringMatching(/room again/), fields: { where: '/data/store', code: 'ENOSPC', full_for_ms: 90_000 } },
    ]);
  });

  it('a write that succeeds elsewhere does not hide a storage that is still full', () => {
    const { lines, logger } = recorder();
    const health = new StorageHealth({ logger });
    health.full(new StorageFullError('/data/store', 'ENOSPC'));
    health.full(new StorageFullError('/data/queue/queues.sqlite', 'SQLITE_FULL'));
    // the database had room again (a checkpoint freed its log); the blob directory did not
    health.room('/data/queue/queues.sqlite');
    health.room('/elsewhere');
    expect(health.report()).toMatchObject({ status: 'degraded', reason: 'store full: no space left on the device (ENOSPC)' });
    health.full(new StorageFullError('/data/queue/queues.sqlite', 'SQLITE_FULL'));
    expect(health.report()).toMatchObject({ reason: 'store full: no space left on the device (ENOSPC); the database or its disk is full (SQLITE_FULL)' });
    expect(lines.map((l) => `${l.level} ${String(l.fields?.where)}`)).toEqual([
      'error /data/store',
      'error /data/queue/queues.sqlite',
      'info /data/queue/queues.sqlite',
      'error /data/queue/queues.sqlite',
    ]);
  });

  it('refuses a logger it cannot use', () => {
    expect(() => new StorageHealth({} as never)).toThrow(/option "logger"/);
  });
});
