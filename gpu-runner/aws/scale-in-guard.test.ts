/**
 * ScaleInGuard over the memory queue with a recording stand-in for the agent: protection
 * follows the leases the worker loop holds, whichever way a lease ends.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryQueue } from '../../adapters/memory/memory-queue.ts';
import { LeaseLostError, type JobQueue } from '../../shared/ports/queue.ts';
import { ScaleInGuard, type Protection } from './scale-in-guard.ts';

class FakeAgent implements Protection {
  readonly enabled = true;
  calls: string[] = [];
  on = false;
  failNext = 0;
  async protect(minutes = 60) {
    this.calls.push(`protect ${minutes}`);
    if (this.failNext-- > 0) throw new Error('agent down');
    this.on = true;
    return { protectionEnabled: true, expirationDate: null, taskArn: null };
  }
  async clear() {
    this.calls.push('clear');
    if (this.failNext-- > 0) throw new Error('agent down');
    this.on = false;
    return { protectionEnabled: false, expirationDate: null, taskArn: null };
  }
}

const guards: ScaleInGuard[] = [];
afterEach(async () => {
  for (const g of guards.splice(0)) await g.close();
});

function setup(opts: Partial<ConstructorParameters<typeof ScaleInGuard>[0]> = {}) {
  const agent = new FakeAgent();
  const logs: string[] = [];
  const guard = new ScaleInGuard({ protection: agent, idleClearMs: 0, tickMs: 10, log: (_l, msg) => logs.push(msg), ...opts });
  guards.push(guard);
  const inner = new MemoryQueue();
  return { agent, logs, guard, inner, queue: guard.wrap(inner) };
}

async function until(cond: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('ScaleInGuard', () => {
  it('protects before the lease reaches the loop and clears once it is acked', async () => {
    const { agent, guard, inner, queue } = setup();
    await inner.send('job');
    const [lease] = await queue.receive({ visibilitySeconds: 30 });
    // already on when receive returns: the job is never held unprotected
    expect(agent.on).toBe(true);
    expect(agent.calls).toEqual(['protect 60']);
    expect(guard.holding).toBe(1);
    await queue.ack(lease!);
    await until(() => !agent.on, 'protection to clear');
    expect(agent.calls).toEqual(['protect 60', 'clear']);
  });

  it('counts a release and a lost lease as the end of a job too', async () => {
    const { agent, guard, inner, queue } = setup();
    await inner.send('a');
    await inner.send('b');
    const leases = await queue.receive({ visibilitySeconds: 30, max: 2 });
    expect(guard.holding).toBe(2);
    await queue.release(leases[0]!, 5);
    expect(guard.holding).toBe(1);
    // the second lease is acked behind our back (as if another runner had it): extend reports it lost
    await inner.ack(leases[1]!);
    await expect(queue.extend(leases[1]!, 30)).rejects.toBeInstanceOf(LeaseLostError);
    expect(guard.holding).toBe(0);
    await until(() => !agent.on, 'protection to clear');
    expect(agent.calls.filter((c) => c === 'clear')).toHaveLength(1);
  });

  it('forgets a lease whose visibility deadline passed without an extension', async () => {
    const { agent, guard, inner, queue } = setup();
    await inner.send('a');
    await queue.receive({ visibilitySeconds: 1 });
    expect(agent.on).toBe(true);
    await until(() => guard.holding === 0 && !agent.on, 'the expired lease to be dropped');
  });

  it('keeps protection through the idle grace, so back-to-back jobs do not flap it', async () => {
    const { agent, inner, queue } = setup({ idleClearMs: 60_000 });
    for (const body of ['a', 'b', 'c']) {
      await inner.send(body);
      const [lease] = await queue.receive({ visibilitySeconds: 30 });
      await queue.ack(lease!);
    }
    await new Promise((r) => setTimeout(r, 50));
    expect(agent.calls).toEqual(['protect 60']);
    expect(agent.on).toBe(true);
  });

  it('renews while a job is held, retries a failed call, and clears on close', async () => {
    let now = 1_000_000;
    const { agent, guard, inner, queue, logs } = setup({ renewEveryMs: 60_000, clock: () => now });
    agent.failNext = 1;
    await inner.send('a');
    await queue.receive({ visibilitySeconds: 3600 });
    expect(agent.on).toBe(false);
    expect(logs).toContain('task protection: protect failed; retrying');
    await until(() => agent.on, 'the retry');
    now += 61_000;
    await until(() => agent.calls.length === 3, 'the renewal');
    expect(agent.calls).toEqual(['protect 60', 'protect 60', 'protect 60']);
    await guard.close();
    expect(agent.calls.at(-1)).toBe('clear');
    expect(agent.on).toBe(false);
  });

  it('passes the queue through untouched where there is no ECS agent', () => {
    const inner: JobQueue = new MemoryQueue();
    const guard = new ScaleInGuard({ protection: { enabled: false, protect: async () => null, clear: async () => null }, log: () => {} });
    guards.push(guard);
    expect(guard.wrap(inner)).toBe(inner);
  });

  it('refuses settings ECS would refuse', () => {
    const protection = new FakeAgent();
    expect(() => new ScaleInGuard({ protection, expiresInMinutes: 3000, log: () => {} })).toThrow(/1\.\.2880/);
    expect(() => new ScaleInGuard({ protection, expiresInMinutes: 10, renewEveryMs: 600_000, log: () => {} })).toThrow(/shorter than/);
  });
});
