/**
 * On the single node a key revoked with `amdm keys revoke` stops working at once, although
 * the edge caches verified keys and the CLI writes the store from another process. Over real
 * HTTP against the edge as `npm start` builds it, with the CLI run as `bin/amdm.js`.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CATALOG } from '../bench/job-bodies.ts';
import { startLocalEdge, type LocalEdge } from '../edge/local.ts';
import { createApiKey, parseApiKey } from '../shared/api-keys.ts';
import { dataLayout, loadSecrets, openEmbedded, type EmbeddedAdapters } from '../single-node/data-dir.ts';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
let dataDir: string;
let adapters: EmbeddedAdapters;
let edge: LocalEdge;
let pepper: string;

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'amdm-revoke-'));
  const env = { DATA_DIR: dataDir };
  const layout = dataLayout(dataDir);
  const secrets = loadSecrets(layout, env);
  pepper = secrets.pepper;
  adapters = openEmbedded(layout, { blobSecret: secrets.blobSecret, publicBaseUrl: 'http://127.0.0.1' });
  // the default key cache (10 s): the revocation must get past it
  edge = await startLocalEdge({ dataDir, port: 0, catalog: async () => CATALOG, adapters, env, logger: { error() {}, warn() {}, info() {} } });
});
afterAll(async () => {
  await edge?.close();
  await adapters?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

const models = (key: string) => fetch(`${edge.url}/v1/models`, { headers: { authorization: `Bearer ${key}` } });

/** `amdm keys ...` in its own process, against the server's DATA_DIR. */
function amdmKeys(...args: string[]) {
  const env: NodeJS.ProcessEnv = { ...process.env, DATA_DIR: dataDir };
  // the pepper comes from DATA_DIR, as the server's does
  delete env.AMDM_KEY_PEPPER;
  return spawnSync(process.execPath, ['bin/amdm.js', 'keys', ...args, '--data-dir', dataDir], { cwd: ROOT, encoding: 'utf8', env });
}

describe('revoking a key on the single node', () => {
  it('the next request with a key revoked by `amdm keys revoke` in another process is a 401; other keys keep working', async () => {
    const { key } = await createApiKey(adapters.store, { tenant: 'acme', pepper });
    const { key: other } = await createApiKey(adapters.store, { tenant: 'acme', pepper });
    // verified and now cached by the edge
    expect((await models(key)).status).toBe(200);
    expect((await models(key)).status).toBe(200);
    expect((await models(other)).status).toBe(200);

    const r = amdmKeys('revoke', parseApiKey(key)!.keyId);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/revoked key/);

    const res = await models(key);
    expect(res.status).toBe(401);
    expect((await res.json()).errors[0]).toMatchObject({ field: 'header Authorization' });
    expect((await models(other)).status).toBe(200);
  });

  it('a key created while the server runs works at once', async () => {
    const r = amdmKeys('create', '--tenant', 'late');
    expect(r.status, r.stderr).toBe(0);
    expect((await models(r.stdout.trim())).status).toBe(200);
  });
});
