/**
 * On the single node, a create's three writes (request, queue message, index entry) share
 * the SQLite file's log, so they commit in one transaction: one fsync per create, and
 * all of them or none. Over real HTTP against the edge as `npm start` builds it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { CATALOG } from '../bench/job-bodies.ts';
import { startLocalEdge } from '../edge/local.ts';
import { createApiKey } from '../shared/api-keys.ts';
import { SQLITE_QUEUE_FILE } from '../adapters/embedded/sqlite-queue.ts';
import { dataLayout, loadSecrets, openEmbedded } from '../single-node/data-dir.ts';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
});

async function singleNode() {
  const dataDir = mkdtempSync(join(tmpdir(), 'amdm-create-tx-'));
  const env = { DATA_DIR: dataDir };
  const layout = dataLayout(dataDir);
  const secrets = loadSecrets(layout, env);
  const adapters = openEmbedded(layout, { blobSecret: secrets.blobSecret, publicBaseUrl: 'http://127.0.0.1' });
  const edge = await startLocalEdge({ dataDir, port: 0, catalog: async () => CATALOG, adapters, env, logger: { error() {}, warn() {}, info() {} } });
  cleanups.push(async () => {
    await edge.close();
    await adapters.close();
    rmSync(dataDir, { recursive: true, force: true });
  });
  const { key } = await createApiKey(adapters.store, { tenant: 'acme', pepper: secrets.pepper });
  // a second connection, as another process would open the file
  const peek = new Database(join(layout.queueDir, SQLITE_QUEUE_FILE));
  cleanups.push(async () => void peek.close());
  const rows = () => ({
    requests: (peek.prepare("SELECT count(*) AS n FROM objects WHERE key LIKE 'tenants/acme/jobs/%/request.json'").get() as { n: number }).n,
    index: (peek.prepare("SELECT count(*) AS n FROM objects WHERE key LIKE 'tenants/acme/index/%'").get() as { n: number }).n,
    messages: (peek.prepare('SELECT count(*) AS n FROM messages').get() as { n: number }).n,
  });
  const create = (n: number) =>
    fetch(`${edge.url}/v1/jobs`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      // no inline image: an upload is a file, written before the transaction
      body: JSON.stringify({ models: [{ id: 'shapes-base', role: 'base', prompt: `job ${n}` }], sampler: { steps: 4, seed: n } }),
    });
  return { adapters, peek, rows, create };
}

describe('create on the single node', () => {
  it('commits the request, the queue message and the index entry in one transaction', async () => {
    const { adapters, rows, create } = await singleNode();
    const before = adapters.store.commitLog?.('tenants/acme/index/x');
    expect(before).toBeDefined();
    expect(adapters.jobs.commitLog?.()).toBe(before);
    const commits = () => (before as unknown as { stats: { commits: number } }).stats.commits;
    const c0 = commits();
    const res = await create(1);
    expect(res.status).toBe(202);
    expect(commits() - c0).toBe(1);
    expect(rows()).toEqual({ requests: 1, index: 1, messages: 1 });
  });

  it('writes none of the three when the transaction fails, and answers 5xx problem+json', async () => {
    const { peek, rows, create } = await singleNode();
    expect((await create(1)).status).toBe(202);
    // the index entry is the last of the three writes: fail it, as a full disk would
    peek.exec(`CREATE TRIGGER no_index BEFORE INSERT ON objects WHEN NEW.key LIKE 'tenants/%/index/%'
               BEGIN SELECT RAISE(ABORT, 'simulated write failure'); END`);
    const res = await create(2);
    expect(res.status).toBeGreaterThanOrEqual(500);
    expect(res.headers.get('content-type')).toMatch(/application\/problem\+json/);
    expect(await res.text()).not.toMatch(/simulated write failure|at .*\.ts:\d+/);
    // sequential writes would have left the request and a queue message behind
    expect(rows()).toEqual({ requests: 1, index: 1, messages: 1 });
    peek.exec('DROP TRIGGER no_index');
    expect((await create(3)).status).toBe(202);
    expect(rows()).toEqual({ requests: 2, index: 2, messages: 2 });
  });
});
