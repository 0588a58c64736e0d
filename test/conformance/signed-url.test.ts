/**
 * The blob URL signer and verifier (shared/signed-url.ts) that the embedded stores and the edge
 * share: verdicts and their reasons, what the MAC binds, path encoding, and the web-standard-only
 * rule the edge depends on.
 */
import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { blobPath, keyFromBlobPath, signBlob, signBlobUrl, verifyBlobSignature } from '../../shared/signed-url.ts';

const SECRET = 'signed-url-test-secret-of-32-bytes-or-more';
const NOW = 1_800_000_000;

describe('shared/signed-url', () => {
  it('accepts its own URL until the expiry second, then reports expired', async () => {
    const url = new URL(
      await signBlobUrl({ secret: SECRET, baseUrl: 'http://edge.test/', method: 'GET', key: 'a/b.png', expires: NOW + 60 }),
    );
    expect(url.origin + url.pathname).toBe('http://edge.test/v1/blobs/a/b.png');
    expect(url.searchParams.get('method')).toBe('GET');
    const key = keyFromBlobPath(url.pathname)!;
    const expires = url.searchParams.get('expires')!;
    const sig = url.searchParams.get('sig')!;
    expect(await verifyBlobSignature(SECRET, 'GET', key, expires, sig, NOW)).toEqual({ valid: true });
    expect(await verifyBlobSignature(SECRET, 'GET', key, expires, sig, NOW + 60)).toEqual({ valid: true });
    expect(await verifyBlobSignature(SECRET, 'GET', key, expires, sig, NOW + 61)).toEqual({ valid: false, reason: 'expired' });
  });

  it('binds the method, the key, the expiry and the secret', async () => {
    const sig = await signBlob(SECRET, 'PUT', 'tenants/t1/uploads/u1', NOW + 60);
    const bad = { valid: false, reason: 'bad-signature' };
    expect(await verifyBlobSignature(SECRET, 'PUT', 'tenants/t1/uploads/u1', NOW + 60, sig, NOW)).toEqual({ valid: true });
    expect(await verifyBlobSignature(SECRET, 'GET', 'tenants/t1/uploads/u1', NOW + 60, sig, NOW)).toEqual(bad);
    expect(await verifyBlobSignature(SECRET, 'PUT', 'tenants/t1/uploads/u2', NOW + 60, sig, NOW)).toEqual(bad);
    expect(await verifyBlobSignature(SECRET, 'PUT', 'tenants/t1/uploads/u1', NOW + 61, sig, NOW)).toEqual(bad);
    expect(await verifyBlobSignature(`${SECRET}x`, 'PUT', 'tenants/t1/uploads/u1', NOW + 60, sig, NOW)).toEqual(bad);
    // an expired URL with a wrong signature is a bad signature: 'expired' vouches for authenticity
    expect(await verifyBlobSignature(SECRET, 'GET', 'tenants/t1/uploads/u1', NOW + 60, sig, NOW + 999)).toEqual(bad);
  });

  it('reports malformed expiry and signature values, including non-canonical base64url', async () => {
    const sig = await signBlob(SECRET, 'GET', 'k', NOW + 60);
    const malformed = { valid: false, reason: 'malformed' };
    for (const expires of ['', '-1', '1e9', ' 1', '0x10', '1234567890123456']) {
      expect(await verifyBlobSignature(SECRET, 'GET', 'k', expires, sig, NOW)).toEqual(malformed);
    }
    for (const badSig of ['', sig.slice(1), `${sig}=`, `${sig.slice(0, -1)}+`, sig.replace(/.$/, '*')]) {
      expect(await verifyBlobSignature(SECRET, 'GET', 'k', NOW + 60, badSig, NOW)).toEqual(malformed);
    }
    // 43 characters carry two spare bits: flipping them must not yield a second valid spelling
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const last = alphabet.indexOf(sig.at(-1)!);
    for (let spare = 1; spare < 4; spare++) {
      const variant = sig.slice(0, -1) + alphabet[last ^ spare];
      expect((await verifyBlobSignature(SECRET, 'GET', 'k', NOW + 60, variant, NOW)).valid).toBe(false);
    }
  });

  it('encodes each key segment in the path and decodes it back', () => {
    const key = "odd/a b+c%d&e=f?g#h/ü😀!*'()";
    const path = blobPath(key);
    expect(path).toBe('/v1/blobs/odd/a%20b%2Bc%25d%26e%3Df%3Fg%23h/%C3%BC%F0%9F%98%80!*\'()');
    expect(keyFromBlobPath(path)).toBe(key);
    expect(keyFromBlobPath(new URL(`http://x${path}`).pathname)).toBe(key);
    expect(keyFromBlobPath('/v1/blobs/')).toBeNull();
    expect(keyFromBlobPath('/v1/other/a')).toBeNull();
    expect(keyFromBlobPath('/v1/blobs/%E0%A4%A')).toBeNull();
  });

  it('refuses a weak secret and methods other than GET and PUT when signing', async () => {
    await expect(signBlob('too short', 'GET', 'k', NOW)).rejects.toThrow(/9 bytes; at least 32/);
    await expect(signBlob(SECRET, 'DELETE' as 'GET', 'k', NOW)).rejects.toThrow(/"DELETE"/);
    await expect(signBlob(SECRET, 'GET', 'k', 1.5)).rejects.toThrow(/expires .*1\.5/);
  });

  it('uses web-standard APIs only, so the edge can run it anywhere', async () => {
    const source = await readFile(new URL('../../shared/signed-url.ts', import.meta.url), 'utf8');
    const code = source.replace(/\/\*[\s\S]*?\*\/|\/\/.*$/gm, '');
    expect(code).not.toMatch(/from ['"]node:|require\(|\bBuffer\b|\bprocess\./);
    expect(code.match(/^import .*$/gm) ?? []).toEqual([]);
  });
});
