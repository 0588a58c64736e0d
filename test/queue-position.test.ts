/**
 * Where a queued job stands on the single node (the job record's `queue`): messages ahead of
 * it in delivery order and the jobs running, read from the SQLite jobs queue, both for jobs
 * this edge queued (found by message id) and for jobs another process queued (found by the
 * job named in the message body). Over real HTTP against the edge as `npm start` builds it,
 * with no runner: the test leases and acks messages itself.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CATALOG } from '../bench/job-bodies.ts';
import { startLocalEdge, type LocalEdge } from '../edge/local.ts';
import { createApiKey } from '../shared/api-keys.ts';
import { dataLayout, loadSecrets, openEmbedded } from '../single-node/data-dir.ts';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const quiet = { error() {}, warn() {}, info() {} };

describe('the queue position of a job on the single node', () => {
  it('counts the messages ahead and the leased ones, by message id and, for another edge, by the job in the body', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'amdm-position-'));
    cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
    const env = { DATA_DIR: dataDir };
    const layout = dataLayout(dataDir);
    const secrets = loadSecrets(layout, env);
    const adapters = openEmbedded(layout, { blobSecret: secrets.blobSecret, publicBaseUrl: 'http://127.0.0.1' });
    cleanups.push(() => adapters.close());
    const edge = async (): Promise<LocalEdge> => {
      const e = await startLocalEdge({ dataDir, port: 0, catalog: async () => CATALOG, adapters, env, logger: quiet });
      cleanups.push(() => e.close());
      return e;
    };
    const first = await edge();
    const { key } = await createApiKey(adapters.store, { tenant: 'acme', pepper: secrets.pepper });
    const auth = { authorization: `Bearer ${key}` };
    const ids: string[] = [];
    for (let n = 0; n < 3; n++) {
      const res = await fetch(`${first.url}/v1/jobs`, {
        method: 'POST',
        headers: { ...auth, 'content-type': 'application/json' },
        body: JSON.stringify({ models: [{ id: 'shapes-base', role: 'base', prompt: `job ${n}` }], sampler: { steps: 4, seed: n } }),
      });
      expect(res.status).toBe(202);
      ids.push(((await res.json()) as { id: string }).id);
    }
    const queueOf = async (e: LocalEdge, id: string) => {
      const res = await fetch(`${e.url}/v1/jobs/${id}`, { headers: auth });
      expect(res.status).toBe(200);
      return ((await res.json()) as { queue: unknown }).queue;
    };

    expect(await queueOf(first, ids[0]!)).toEqual({ position: 0, reason: 'next in line' });
    expect(await queueOf(first, ids[2]!)).toEqual({ position: 2, reason: '2 job(s) ahead; 0 running' });

    // a runner takes the first job: the second is next, waiting for a free runner
    const [lease] = await adapters.jobs.receive({ max: 1, visibilitySeconds: 600 });
    expect(JSON.parse(lease!.body)).toMatchObject({ job_id: ids[0] });
    expect(await queueOf(first, ids[1]!)).toEqual({ position: 0, reason: 'next in line; waiting for a free runner (1 running)' });
    expect(await queueOf(first, ids[2]!)).toEqual({ position: 1, reason: '1 job(s) ahead; 1 running' });

    // an edge that did not queue the job finds its message by the job named in the body
    const second = await edge();
    expect(await queueOf(second, ids[2]!)).toEqual({ position: 1, reason: '1 job(s) ahead; 1 running' });

    // a job whose message is gone while its status is not written yet is being handed over
    await adapters.jobs.ack(lease!);
    expect(await queueOf(first, ids[0]!)).toEqual({ position: null, reason: 'being handed to a runner (0 running)' });
    expect(await queueOf(second, ids[0]!)).toEqual({ position: null, reason: 'being handed to a runner (0 running)' });
  });
});
