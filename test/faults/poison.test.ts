/**
 * Poison: messages that can never be processed end in the dead-letter queue, and a job
 * whose every attempt takes its runner down ends failed with the reason, instead of
 * cycling forever.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../shared/logger.ts';
import { SamplerPool } from '../../gpu-runner/sampler-thread.ts';
import { WorkerLoop } from '../../gpu-runner/worker-loop.ts';
import { newJobId } from '../../shared/ids.ts';
import { JobRepository, type StoredRequest } from '../../shared/job-repository.ts';
import { dataLayout, loadSecrets, openEmbedded, type EmbeddedAdapters } from '../../single-node/data-dir.ts';
import { freePort, until } from '../e2e/harness.ts';
import { CRASHING_ENGINE, SLOW_ENGINE, startRunnerProcess } from './runner-process.ts';
import { oneModelSpec } from '../fixtures/job-spec.ts';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
});

async function embedded(maxReceives: number) {
  const dataDir = mkdtempSync(join(tmpdir(), 'amdm-poison-'));
  const port = await freePort();
  const env = { DATA_DIR: dataDir, PORT: String(port) };
  const layout = dataLayout(dataDir);
  const secrets = loadSecrets(layout, env);
  const adapters: EmbeddedAdapters = openEmbedded(layout, { blobSecret: secrets.blobSecret, publicBaseUrl: `http://127.0.0.1:${port}`, maxReceives });
  cleanups.push(async () => {
    await adapters.close();
    rmSync(dataDir, { recursive: true, force: true });
  });
  const repo = new JobRepository(adapters.store);
  const submit = async (webhook: string | null = null) => {
    const now = Date.now();
    const req: StoredRequest = {
      v: 1,
      id: newJobId(now),
      tenant: 'acme',
      created_at: new Date(now).toISOString(),
      spec: oneModelSpec({ prompt: 'p', size: 32 }),
      webhook: webhook ? { url: webhook } : null,
    };
    await repo.putRequest(req);
    await adapters.jobs.send(JSON.stringify({ v: 1, job_id: req.id, tenant: 'acme', enqueued_at: req.created_at }));
    return req.id;
  };
  return { env, adapters, repo, submit };
}

describe('poison', () => {
  it('an unparseable message is dead-lettered and parked; jobs behind it still run', async () => {
    const w = await embedded(2);
    await w.adapters.jobs.send('{"v":1,"job_id":"this is not a job id"');
    const good = await w.submit();
    const engine = new SamplerPool({ threads: 1, engine: { module: SLOW_ENGINE, options: { stepMs: 5 } } });
    const loop = new WorkerLoop({
      queue: w.adapters.jobs,
      deadLetterQueue: w.adapters.jobsDeadLetter,
      webhookQueue: w.adapters.webhooks,
      store: w.adapters.store,
      engine,
      maxReceives: 2,
      poisonDelaySeconds: 0,
      receiveWaitSeconds: 1,
      logger: silentLogger,
    });
    cleanups.push(async () => {
      await loop.close();
      await engine.dispose();
    });
    loop.start();
    await until(async () => (await w.repo.getStatus('acme', good))?.status === 'succeeded', 'the good job', 30_000);
    await until(async () => (await w.adapters.jobsDeadLetter.stats()).delayed === 1, 'the poison message parked in the DLQ', 30_000);
    const jobs = await w.adapters.jobs.stats();
    expect(jobs.visible + jobs.inFlight + jobs.delayed).toBe(0);
  });

  it('a job that kills its runner on every attempt is dead-lettered and failed with the reason', async () => {
    const w = await embedded(2);
    const id = await w.submit('http://127.0.0.1:9/hook');
    const env = { ...w.env, AMDM_ENGINE_MODULE: CRASHING_ENGINE, AMDM_MAX_RECEIVES: '2', RUNNER_VISIBILITY_SECONDS: '2' };
    const deaths: string[] = [];
    // one watcher for the whole test: a per-runner one would outlive its race and fail later
    const failed = until(async () => (await w.repo.getStatus('acme', id))?.status === 'failed', 'the job to fail', 120_000).then(() => 'failed');
    failed.catch(() => {});
    for (let i = 0; i < 5; i++) {
      const runner = startRunnerProcess(env);
      cleanups.push(() => runner.kill());
      const outcome = await Promise.race([runner.exited.then((e) => `died ${e.signal ?? e.code}`), failed]);
      if (outcome === 'failed') break;
      deaths.push(outcome);
    }
    await failed;
    expect(deaths).toEqual(['died SIGKILL', 'died SIGKILL']);
    const status = await w.repo.getStatus('acme', id);
    expect(status).toMatchObject({ status: 'failed', outputs: [], usage: null });
    expect(status!.error).toMatchObject({ type: 'urn:amdm:problem:dead-lettered', detail: expect.stringMatching(/dead-lettered after 2 deliveries/) });
    // the failure is announced like any other terminal state
    await until(async () => (await w.repo.getStatus('acme', id))?.webhook_enqueued, 'the failure webhook in the outbox', 10_000);
    // the dead letter is acked after the outbox write, so the queue empties a moment later
    await until(async () => {
      const dlq = await w.adapters.jobsDeadLetter.stats();
      return dlq.visible + dlq.inFlight === 0;
    }, 'the dead letter acked', 10_000);
  });
});
