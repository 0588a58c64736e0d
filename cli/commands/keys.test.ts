import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { verifyApiKey } from '../../shared/api-keys.ts';
import { dataLayout, loadSecrets, openEmbeddedStore } from '../../single-node/data-dir.ts';
import { UsageError } from '../command.ts';
import { command } from './keys.ts';

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

  it('refuses bad usage with UsageError (exit code 2)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'amdm-keys-'));
    dirs.push(dir);
    await expect(command.run(['--data-dir', dir])).rejects.toBeInstanceOf(UsageError);
    await expect(command.run(['create', '--data-dir', dir])).rejects.toThrow(/--tenant/);
    await expect(command.run(['create', '--tenant', 'Not Valid', '--data-dir', dir])).rejects.toBeInstanceOf(UsageError);
  });
});
