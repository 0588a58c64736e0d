import { describe, expect, it } from 'vitest';
import { MemoryStore } from '../adapters/memory/memory-store.ts';
import { createApiKey, hashApiKey, keyRevision, listApiKeys, parseApiKey, revokeApiKey, timingSafeEqual, verifyApiKey } from './api-keys.ts';

const pepper = 'pepper-'.repeat(4);

describe('api keys', () => {
  it('create -> verify -> revoke', async () => {
    const store = new MemoryStore();
    const created = await createApiKey(store, { tenant: 'acme', pepper });
    expect(created.key).toMatch(/^amdm_[a-z0-9]{12}_[A-Za-z0-9]{40}$/);
    expect(await verifyApiKey(store, pepper, created.key)).toEqual({ tenant: 'acme', keyId: created.keyId });

    expect(await revokeApiKey(store, { keyIdOrKey: created.keyId, pepper })).toEqual({ keyId: created.keyId, tenant: 'acme', alreadyRevoked: false });
    expect(await verifyApiKey(store, pepper, created.key)).toBeNull();
    expect(await revokeApiKey(store, { keyIdOrKey: created.key, pepper })).toMatchObject({ alreadyRevoked: true });
    const list = await listApiKeys(store);
    expect(list).toHaveLength(1);
    expect(list[0]).toMatchObject({ keyId: created.keyId, tenant: 'acme' });
    expect(list[0]!.revoked_at).not.toBeNull();
  });

  it('stores only the peppered hash, never the key or its secret', async () => {
    const store = new MemoryStore();
    const { key, keyId } = await createApiKey(store, { tenant: 'acme', pepper });
    const secret = key.split('_')[2]!;
    const page = await store.list('');
    for (const k of page.keys) {
      const text = new TextDecoder().decode((await store.get(k))!.body);
      expect(k + text).not.toContain(secret);
    }
    expect(page.keys).toContain(`apikeys/${await hashApiKey(pepper, key)}.json`);
    expect(page.keys).toContain(`apikey-ids/${keyId}.json`);
  });

  it('a different pepper does not verify', async () => {
    const store = new MemoryStore();
    const { key } = await createApiKey(store, { tenant: 'acme', pepper });
    expect(await verifyApiKey(store, pepper + 'x', key)).toBeNull();
  });

  it('refuses malformed, tampered and unknown keys', async () => {
    const store = new MemoryStore();
    const { key } = await createApiKey(store, { tenant: 'acme', pepper });
    const flip = key.slice(0, -1) + (key.endsWith('A') ? 'B' : 'A');
    for (const bad of ['', 'amdm_', key + 'x', flip, key.replace('amdm_', 'AMDM_'), 'Bearer ' + key]) {
      expect(await verifyApiKey(store, pepper, bad)).toBeNull();
    }
    expect(parseApiKey('amdm_abc_def')).toBeNull();
  });

  it('validates tenant names and the pepper', async () => {
    const store = new MemoryStore();
    await expect(createApiKey(store, { tenant: 'Acme', pepper })).rejects.toThrow(/tenant must match/);
    await expect(createApiKey(store, { tenant: '../x', pepper })).rejects.toThrow(/tenant must match/);
    await expect(createApiKey(store, { tenant: 'acme', pepper: 'short' })).rejects.toThrow(/pepper must be/);
  });

  it('every revocation, a repeated one too, moves the key revision; creating a key does not', async () => {
    const store = new MemoryStore();
    const a = await createApiKey(store, { tenant: 'acme', pepper });
    expect(await keyRevision(store)).toBeNull();
    await createApiKey(store, { tenant: 'acme', pepper });
    expect(await keyRevision(store)).toBeNull();
    await revokeApiKey(store, { keyIdOrKey: a.keyId, pepper });
    const first = await keyRevision(store);
    expect(first).not.toBeNull();
    await revokeApiKey(store, { keyIdOrKey: a.keyId, pepper });
    expect(await keyRevision(store)).not.toBe(first);
  });

  it('revoke of an unknown id is null', async () => {
    expect(await revokeApiKey(new MemoryStore(), { keyIdOrKey: 'aaaaaaaaaaaa', pepper })).toBeNull();
    expect(await revokeApiKey(new MemoryStore(), { keyIdOrKey: 'not an id', pepper })).toBeNull();
  });

  it('timingSafeEqual compares whole strings', () => {
    expect(timingSafeEqual('abc', 'abc')).toBe(true);
    expect(timingSafeEqual('abc', 'abd')).toBe(false);
    expect(timingSafeEqual('abc', 'ab')).toBe(false);
    expect(timingSafeEqual('', '')).toBe(true);
  });
});
