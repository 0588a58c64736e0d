import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { verifyApiKey } from '../../shared/api-keys.ts';
import { announceServer, dataLayout, loadSecrets, openEmbeddedStore, type RunningServer } from '../../single-node/data-dir.ts';
import { UsageError } from '../command.ts';
import { command, singleNodeDir } from './keys.ts';

const dirs: string[] = [];
afterEach(() => {
  vi.restoreAllMocks();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

async function run(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  vi.spyOn(process.stdout, 'write').mockImplementation((s) => ((out += String(s)), true));
  vi.spyOn(process.stderr, 'write').mockImplementation((s) => ((err += String(s)), true));
  try {
    return { code: await command.run(args), out, err };
  } finally {
    vi.restoreAllMocks();
  }
}

describe('amdm keys', () => {
  it('create prints the key alone on stdout; the key verifies; revoke stops it; list shows both states', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'amdm-keys-'));
    dirs.push(dir);
    const created = await run(['create', '--tenant', 'acme', '--data-dir', dir]);
    expect(created.code).toBe(0);
    const key = created.out.trim();
    expect(key).toMatch(/^amdm_[a-z0-9]{12}_[A-Za-z0-9]{40}$/);
    expect(created.out).toBe(`${key}\n`);
    expect(statSync(join(dir, 'secrets', 'pepper')).mode & 0o777).toBe(0o600);

    const layout = dataLayout(dir);
    const secrets = loadSecrets(layout, {});
    const store = openEmbeddedStore(layout, { blobSecret: secrets.blobSecret, publicBaseUrl: 'http://127.0.0.1:1' });
    expect(await verifyApiKey(store, secrets.pepper, key)).toMatchObject({ tenant: 'acme' });

    const keyId = key.split('_')[1]!;
    expect((await run(['revoke', keyId, '--data-dir', dir])).code).toBe(0);
    expect(await verifyApiKey(store, secrets.pepper, key)).toBeNull();
    const list = await run(['list', '--json', '--data-dir', dir]);
    expect(JSON.parse(list.out)).toEqual([expect.objectContaining({ keyId, tenant: 'acme', revoked_at: expect.any(String) })]);
    expect((await run(['revoke', 'zzzzzzzzzzzz', '--data-dir', dir])).code).toBe(1);
    await store.close();
  });

  it('without --data-dir, a key goes to the running server\'s data folder, whatever the current folder', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'amdm-keys-data-'));
    const runtime = mkdtempSync(join(tmpdir(), 'amdm-keys-run-'));
    dirs.push(dataDir, runtime);
    const secrets = loadSecrets(dataLayout(dataDir), {}); // the server started there
    const withdraw = announceServer(runtime, { url: 'http://127.0.0.1:18795', data_dir: dataDir });
    const saved = { DATA_DIR: process.env.DATA_DIR, AMDM_RUNTIME_DIR: process.env.AMDM_RUNTIME_DIR };
    delete process.env.DATA_DIR;
    process.env.AMDM_RUNTIME_DIR = runtime;
    try {
      const created = await run(['create', '--tenant', 'bob']);
      expect(created.code).toBe(0);
      expect(created.err).toContain(`using the data folder of the server running at http://127.0.0.1:18795: ${dataDir}`);
      const store = openEmbeddedStore(dataLayout(dataDir), { blobSecret: secrets.blobSecret, publicBaseUrl: 'http://127.0.0.1:1' });
      expect(await verifyApiKey(store, secrets.pepper, created.out.trim())).toMatchObject({ tenant: 'bob' });
      await store.close();

      // a folder no running server reads: made, but not silently
      const other = mkdtempSync(join(tmpdir(), 'amdm-keys-other-'));
      dirs.push(other);
      const elsewhere = await run(['create', '--tenant', 'bob', '--data-dir', other]);
      expect(elsewhere.code).toBe(0);
      expect(elsewhere.err).toContain(`note: no running server uses ${other}`);
      expect(elsewhere.err).toContain(`started with DATA_DIR=${other}`);
    } finally {
      withdraw();
      for (const [k, v] of Object.entries(saved)) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
  });

  it('never guesses: several running servers, or none and no ./data, is a usage error naming --data-dir', () => {
    const server = (pid: number, dir: string): RunningServer => ({ pid, url: `http://127.0.0.1:${pid}`, data_dir: dir, started_at: '2025-01-01T00:00:00Z' });
    expect(() => singleNodeDir(undefined, [server(1, '/a'), server(2, '/b')])).toThrow(/several servers are running: .*--data-dir/);
    const empty = mkdtempSync(join(tmpdir(), 'amdm-keys-empty-'));
    dirs.push(empty);
    expect(() => singleNodeDir(undefined, [], join(empty, 'data'))).toThrow(/no server is running and .* holds no single node's data; start the server first/);
    // a ./data a server once used is fine
    loadSecrets(dataLayout(join(empty, 'data')), {});
    expect(singleNodeDir(undefined, [], join(empty, 'data')).layout.dataDir).toBe(join(empty, 'data'));
    expect(singleNodeDir('/x', [server(1, '/x')]).note).toBeNull();
  });

  it('refuses bad usage with UsageError (exit code 2)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'amdm-keys-'));
    dirs.push(dir);
    await expect(command.run(['--data-dir', dir])).rejects.toBeInstanceOf(UsageError);
    await expect(command.run(['create', '--data-dir', dir])).rejects.toThrow(/--tenant/);
    await expect(command.run(['create', '--tenant', 'Not Valid', '--data-dir', dir])).rejects.toBeInstanceOf(UsageError);
  });
});
