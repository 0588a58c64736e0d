/**
 * Faults of the runner process itself: SIGKILL in the middle of a job, and the two-signal
 * shutdown. The runner runs in a child process (gpu-runner/main.ts, the real root) with a
 * slow test-double engine; the edge runs here, over the same DATA_DIR.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decode } from 'fast-png';
import { afterEach, describe, expect, it } from 'vitest';
import { startLocalEdge, type LocalEdge } from '../../edge/local.ts';
import { silentLogger } from '../../shared/logger.ts';
import { createApiKey } from '../../shared/api-keys.ts';
import type { JobRecord } from '../../shared/contract/index.ts';
import { dataLayout, loadSecrets, openEmbedded, type EmbeddedAdapters } from '../../single-node/data-dir.ts';
import { freePort, until } from '../e2e/harness.ts';
import { createEngine as slowEngine } from './slow-engine.ts';
import { SLOW_ENGINE, startRunnerProcess, type RunnerProcess } from './runner-process.ts';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
});

async function world(runnerEnv: Record<string, string>) {
  const dataDir = mkdtempSync(join(tmpdir(), 'amdm-fault-'));
  const port = await freePort();
  const env = { DATA_DIR: dataDir, PORT: String(port) };
  const layout = dataLayout(dataDir);
  const secrets = loadSecrets(layout, env);
  const adapters: EmbeddedAdapters = openEmbedded(layout, { blobSecret: secrets.blobSecret, publicBaseUrl: `http://127.0.0.1:${port}` });
  const catalogEngine = slowEngine();
  const edge: LocalEdge = await startLocalEdge({ dataDir, port, catalog: () => catalogEngine.catalog(), adapters, env, logger: silentLogger });
  cleanups.push(async () => {
    await edge.close();
    await adapters.close();
    rmSync(dataDir, { recursive: true, force: true });
  });
  const key = (await createApiKey(adapters.store, { tenant: 'acme', pepper: secrets.pepper })).key;
  const api = async (path: string, body?: unknown) =>
    fetch(`${edge.url}${path}`, {
      method: body === undefined ? 'GET' : 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
  const get = async (id: string) => (await (await api(`/v1/jobs/${id}`)).json()) as JobRecord;
  const runner = (extra: Record<string, string> = {}): RunnerProcess => {
    const p = startRunnerProcess({ ...env, AMDM_ENGINE_MODULE: SLOW_ENGINE, ...runnerEnv, ...extra });
    cleanups.push(() => p.kill());
    return p;
  };
  const usageRecords = async () => (await adapters.store.list('tenants/acme/usage/')).keys;
  const queueEmpty = async () => {
    const s = await adapters.jobs.stats();
    return s.visible + s.inFlight + s.delayed === 0;
  };
  return { edge, adapters, api, get, runner, usageRecords, queueEmpty };
}

describe('runner faults (child process)', () => {
  it('a runner SIGKILLed mid-job: after a restart the job completes exactly once, with one usage record', async () => {
    const w = await world({ AMDM_ENGINE_OPTIONS: JSON.stringify({ stepMs: 40 }), RUNNER_VISIBILITY_SECONDS: '2' });
    const submitted = (await (await w.api('/v1/jobs', { models: [{ id: 'shapes-base', role: 'base', prompt: 'crash test' }], sampler: { steps: 60, seed: 9, width: 48, height: 32 } })).json()) as JobRecord;
    const first = w.runner();
    await until(async () => ((await w.get(submitted.id)).progress?.step ?? 0) >= 5, 'the first runner to be mid-job', 60_000);
    await first.kill('SIGKILL');
    const orphan = await w.get(submitted.id);
    expect(orphan.status).toBe('running');
    expect(await w.usageRecords()).toEqual([]);

    const second = w.runner();
    const done = await until(async () => {
      const r = await w.get(submitted.id);
      return ['succeeded', 'failed', 'canceled'].includes(r.status) ? r : null;
    }, 'the job to complete after the restart', 60_000);
    expect(done.status, second.output()).toBe('succeeded');
    expect(done.usage).toMatchObject({ images: 1, unet_evals: 60 });
    expect(await w.usageRecords()).toHaveLength(1);
    const status = await w.adapters.store.get(`tenants/acme/jobs/${submitted.id}/status.json`);
    expect(JSON.parse(new TextDecoder().decode(status!.body)).attempt).toBe(2);
    const png = decode(new Uint8Array(await (await fetch(done.outputs[0]!.url)).arrayBuffer()));
    expect([png.width, png.height]).toEqual([48, 32]);
    await until(w.queueEmpty, 'the message to be acked');

    // the first SIGTERM drains: with nothing running the runner exits cleanly
    second.child.kill('SIGTERM');
    expect(await second.exited).toEqual({ code: 0, signal: null });
    expect(await w.usageRecords()).toHaveLength(1);
  });

  it('first SIGTERM drains, a second one exits at once and gives the job back without waiting for its lease', async () => {
    // a 60 s lease: if the job came back by expiry the test would time out
    const w = await world({ AMDM_ENGINE_OPTIONS: JSON.stringify({ stepMs: 40 }), RUNNER_VISIBILITY_SECONDS: '60', RUNNER_GRACE_SECONDS: '60' });
    const submitted = (await (await w.api('/v1/jobs', { models: [{ id: 'shapes-base', role: 'base', prompt: 'drain' }], sampler: { steps: 100, seed: 1 } })).json()) as JobRecord;
    const first = w.runner();
    await until(async () => ((await w.get(submitted.id)).progress?.step ?? 0) >= 3, 'the job to run', 60_000);
    first.child.kill('SIGTERM');
    const firstAt = Date.now();
    // draining: the job keeps running
    const before = (await w.get(submitted.id)).progress!.step;
    await until(async () => ((await w.get(submitted.id)).progress?.step ?? 0) > before, 'progress while draining', 20_000);
    expect(first.child.exitCode).toBeNull();
    // a signal within 300 ms of the last counts as the same one (one Ctrl-C arrives several
    // times: gpu-runner/main.ts, installSignalHandlers); a second request comes later
    await new Promise((r) => setTimeout(r, Math.max(0, 400 - (Date.now() - firstAt))));
    first.child.kill('SIGTERM');
    expect((await first.exited).code).toBe(1);
    await until(async () => (await w.adapters.jobs.stats()).visible === 1, 'the job back in the queue', 10_000);

    w.runner();
    const done = await until(async () => {
      const r = await w.get(submitted.id);
      return r.status === 'succeeded' ? r : null;
    }, 'another runner to finish it', 60_000);
    expect(done.usage!.unet_evals).toBe(100);
    expect(await w.usageRecords()).toHaveLength(1);
  });
});
