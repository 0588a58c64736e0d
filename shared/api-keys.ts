/**
 * API keys: `amdm_<keyId>_<secret>`. The key id is public (it names the key in logs and
 * in `amdm keys list/revoke`); the secret has ~238 bits of entropy, so a plain SHA-256
 * is enough: there is nothing to brute-force that a slow hash would protect. The pepper
 * (kept outside the store) means a leaked store alone cannot even confirm a guessed key.
 *
 * Store layout (docs/architecture.md):
 *   apikeys/{sha256(pepper || key)}.json  -> { tenant, keyId, created_at, hash }
 *   apikey-ids/{keyId}.json               -> { keyId, tenant, hash, created_at }
 *   apikeys-revoked/{keyId}.json          -> { keyId, revoked_at }
 *   apikeys-revision.json                 -> a new random value after every revocation
 * Only the admin CLI writes them. Web Crypto only: the edge imports this module.
 *
 * The revision lets an edge that caches verified keys drop its cache the moment a key is
 * revoked, from any process, at the price of one small read per request: the single node,
 * where that read is a SQLite row, does so (edge/local.ts); the AWS edge, where it would be
 * an S3 GET per request, trusts a verified key for `keyCacheSeconds` instead.
 */
import type { ObjectStore } from './ports/store.ts';
import { cryptoRandomBytes, randomAlnum, type RandomBytes } from './ids.ts';

export const TENANT_RE = /^[a-z0-9][a-z0-9_-]{0,62}$/;
export const KEY_ID_RE = /^[a-z0-9]{12}$/;
const KEY_RE = /^amdm_([a-z0-9]{12})_([A-Za-z0-9]{40})$/;
const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
export const MIN_PEPPER_CHARS = 16;

export interface ApiKeyRecord {
  tenant: string;
  keyId: string;
  created_at: string;
  hash: string;
}

export interface ApiKeyInfo {
  keyId: string;
  tenant: string;
  created_at: string;
  revoked_at: string | null;
}

export interface CreatedKey {
  key: string;
  keyId: string;
  tenant: string;
  created_at: string;
}

/** The key id of a well-formed key, or null. Cheap: lets auth refuse garbage without hashing. */
export function parseApiKey(key: string): { keyId: string } | null {
  const m = KEY_RE.exec(key);
  return m ? { keyId: m[1]! } : null;
}

export function checkPepper(pepper: string): void {
  if (typeof pepper !== 'string' || pepper.length < MIN_PEPPER_CHARS) {
    throw new Error(`pepper must be a string of at least ${MIN_PEPPER_CHARS} characters`);
  }
}

export async function hashApiKey(pepper: string, key: string): Promise<string> {
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(pepper + key));
  return toHex(new Uint8Array(digest));
}

export async function createApiKey(
  store: ObjectStore,
  opts: { tenant: string; pepper: string; now?: Date; random?: RandomBytes },
): Promise<CreatedKey> {
  checkPepper(opts.pepper);
  if (!TENANT_RE.test(opts.tenant)) {
    throw new Error(`tenant must match ${TENANT_RE} (lowercase letters, digits, '-' and '_', at most 63 characters); got "${opts.tenant}"`);
  }
  const random = opts.random ?? cryptoRandomBytes;
  const keyId = randomAlnum(12, random);
  const key = `amdm_${keyId}_${randomBase62(40, random)}`;
  const hash = await hashApiKey(opts.pepper, key);
  const created_at = (opts.now ?? new Date()).toISOString();
  const record: ApiKeyRecord = { tenant: opts.tenant, keyId, created_at, hash };
  // the id map first: a key that exists is always revocable by id
  await store.put(`apikey-ids/${keyId}.json`, JSON.stringify(record), 'application/json');
  await store.put(`apikeys/${hash}.json`, JSON.stringify(record), 'application/json');
  return { key, keyId, tenant: opts.tenant, created_at };
}

/** The tenant a key belongs to, or null for an unknown, malformed or revoked key. */
export async function verifyApiKey(store: ObjectStore, pepper: string, key: string): Promise<{ tenant: string; keyId: string } | null> {
  const parsed = parseApiKey(key);
  if (!parsed) return null;
  const hash = await hashApiKey(pepper, key);
  const obj = await store.get(`apikeys/${hash}.json`);
  if (!obj) return null;
  let rec: Partial<ApiKeyRecord>;
  try {
    rec = JSON.parse(new TextDecoder().decode(obj.body)) as Partial<ApiKeyRecord>;
  } catch {
    return null;
  }
  // The lookup found the object by name; comparing the stored hash as well, in constant
  // time, guards against a store that matches names loosely (case folding, normalization).
  if (typeof rec.hash !== 'string' || !timingSafeEqual(rec.hash, hash)) return null;
  if (rec.keyId !== parsed.keyId || typeof rec.tenant !== 'string' || !TENANT_RE.test(rec.tenant)) return null;
  return { tenant: rec.tenant, keyId: rec.keyId };
}

/** Changes on every revocation; see keyRevision. */
export const KEY_REVISION_KEY = 'apikeys-revision.json';

/**
 * The current key revision: any change means some key was revoked since it was last read
 * (the value carries no meaning beyond that). Null before the first revocation.
 */
export async function keyRevision(store: ObjectStore): Promise<string | null> {
  const obj = await store.get(KEY_REVISION_KEY);
  return obj ? new TextDecoder().decode(obj.body) : null;
}

/**
 * Revoke by key id or by the full key. Deleting apikeys/{hash}.json is what stops the key
 * working; the tombstone keeps `keys list` truthful; the new key revision, written last,
 * tells caching edges to look again. Returns null for an unknown key id.
 */
export async function revokeApiKey(
  store: ObjectStore,
  opts: { keyIdOrKey: string; pepper: string; now?: Date; random?: RandomBytes },
): Promise<{ keyId: string; tenant: string; alreadyRevoked: boolean } | null> {
  const keyId = parseApiKey(opts.keyIdOrKey)?.keyId ?? (KEY_ID_RE.test(opts.keyIdOrKey) ? opts.keyIdOrKey : null);
  if (!keyId) return null;
  const obj = await store.get(`apikey-ids/${keyId}.json`);
  if (!obj) return null;
  const rec = JSON.parse(new TextDecoder().decode(obj.body)) as ApiKeyRecord;
  const alreadyRevoked = (await store.get(`apikeys-revoked/${keyId}.json`)) !== null;
  const revokedAt = (opts.now ?? new Date()).toISOString();
  await store.delete(`apikeys/${rec.hash}.json`);
  if (!alreadyRevoked) {
    await store.put(`apikeys-revoked/${keyId}.json`, JSON.stringify({ keyId, revoked_at: revokedAt }), 'application/json');
  }
  // after the delete: an edge that sees the new revision and looks the key up finds it gone.
  // Random, so two admins revoking at once each leave a value no edge has seen.
  const revision = randomAlnum(16, opts.random ?? cryptoRandomBytes);
  await store.put(KEY_REVISION_KEY, JSON.stringify({ revision, keyId, revoked_at: revokedAt }), 'application/json');
  return { keyId, tenant: rec.tenant, alreadyRevoked };
}

export async function listApiKeys(store: ObjectStore): Promise<ApiKeyInfo[]> {
  const revoked = new Map<string, string>();
  for (const key of await listAll(store, 'apikeys-revoked/')) {
    const obj = await store.get(key);
    if (!obj) continue;
    const r = JSON.parse(new TextDecoder().decode(obj.body)) as { keyId: string; revoked_at: string };
    revoked.set(r.keyId, r.revoked_at);
  }
  const out: ApiKeyInfo[] = [];
  for (const key of await listAll(store, 'apikey-ids/')) {
    const obj = await store.get(key);
    if (!obj) continue;
    const r = JSON.parse(new TextDecoder().decode(obj.body)) as ApiKeyRecord;
    out.push({ keyId: r.keyId, tenant: r.tenant, created_at: r.created_at, revoked_at: revoked.get(r.keyId) ?? null });
  }
  return out.sort((a, b) => a.created_at.localeCompare(b.created_at) || a.keyId.localeCompare(b.keyId));
}

async function listAll(store: ObjectStore, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  let cursor: string | null = null;
  do {
    const page = await store.list(prefix, { cursor, limit: 1000 });
    keys.push(...page.keys);
    cursor = page.cursor;
  } while (cursor !== null);
  return keys;
}

/** Compares every character whatever the first difference, so timing leaks nothing. */
export function timingSafeEqual(a: string, b: string): boolean {
  let diff = a.length ^ b.length;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i % Math.max(b.length, 1));
  return diff === 0;
}

function randomBase62(length: number, random: RandomBytes): string {
  let out = '';
  while (out.length < length) {
    for (const b of random(length - out.length + 8)) {
      if (b < 248 && out.length < length) out += BASE62[b % 62];
    }
  }
  return out;
}

function toHex(bytes: Uint8Array): string {
  let s = '';
  for (const b of bytes) s += b.toString(16).padStart(2, '0');
  return s;
}
