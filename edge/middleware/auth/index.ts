/**
 * Bearer API key -> tenant. A missing or bad key is a 401 problem with a WWW-Authenticate
 * challenge (RFC 6750). Verified keys are cached briefly so the hot path does not read
 * the store on every request; that bounds how long a revoked key keeps working. Where a
 * cheap read tells when keys were revoked (`revision`), a change empties the cache at once.
 */
import type { MiddlewareHandler } from 'hono';
import { ProblemError } from '../problem/index.ts';

export interface AuthVariables {
  tenant: string;
  keyId: string;
}

export interface AuthOptions {
  /** the tenant for a key, or null when the key is unknown or revoked */
  verify: (key: string) => Promise<{ tenant: string; keyId: string } | null>;
  realm?: string;
  /** how long a verified key is trusted without asking `verify` again (0 disables the cache) */
  cacheSeconds?: number;
  maxCacheEntries?: number;
  now?: () => number;
  /**
   * Read on every request: a value that changes whenever a key is revoked (shared/api-keys.ts
   * keyRevision). A cached key is used only under the revision it was verified under.
   */
  revision?: () => Promise<string | null>;
}

const BEARER_RE = /^Bearer[ ]+([!-~]+)[ ]*$/i;

export function auth(options: AuthOptions): MiddlewareHandler<{ Variables: AuthVariables }> {
  if (!options || typeof options.verify !== 'function') throw new TypeError('auth: option "verify" must be a function (key) => Promise<{tenant, keyId} | null>');
  const realm = options.realm ?? 'amdm';
  if (!/^[\w .-]+$/.test(realm)) throw new TypeError(`auth: option "realm" must be letters, digits, space, '.', '-' or '_' (got ${JSON.stringify(realm)})`);
  const cacheMs = (options.cacheSeconds ?? 10) * 1000;
  if (!Number.isFinite(cacheMs) || cacheMs < 0) throw new TypeError(`auth: option "cacheSeconds" must be a number >= 0 (got ${options.cacheSeconds})`);
  const maxEntries = options.maxCacheEntries ?? 10_000;
  if (!Number.isInteger(maxEntries) || maxEntries < 1) throw new TypeError(`auth: option "maxCacheEntries" must be an integer >= 1 (got ${options.maxCacheEntries})`);
  const now = options.now ?? Date.now;
  if (options.revision !== undefined && typeof options.revision !== 'function') throw new TypeError('auth: option "revision" must be a function () => Promise<string | null>');
  const revisionOf = options.revision ?? null;
  const cache = new Map<string, { tenant: string; keyId: string; until: number; revision: string | null }>();
  let seenRevision: string | null = null;

  const challenge = (error?: 'invalid_token' | 'invalid_request') =>
    error ? `Bearer realm="${realm}", error="${error}"` : `Bearer realm="${realm}"`;
  const unauthorized = (detail: string, message: string, error?: 'invalid_token' | 'invalid_request') =>
    new ProblemError(401, {
      type: 'unauthorized',
      title: 'Unauthorized',
      detail,
      errors: [{ field: 'header Authorization', message }],
      headers: { 'www-authenticate': challenge(error) },
    });

  return async function auth(c, next) {
    const header = c.req.header('authorization');
    if (header === undefined || header.trim() === '') {
      throw unauthorized('this endpoint needs an API key', 'missing; send "Authorization: Bearer <API key>"');
    }
    const m = BEARER_RE.exec(header);
    if (!m) throw unauthorized('the Authorization header is not a Bearer token', 'must be "Bearer <API key>"', 'invalid_request');
    const key = m[1]!;
    const t = now();
    // read before the lookup: a key verified after this read sees every revocation before it
    const revision = revisionOf ? await revisionOf() : null;
    if (revision !== seenRevision) {
      cache.clear();
      seenRevision = revision;
    }
    let hit = cache.get(key);
    // an entry verified under an older revision, by a request that overlapped the change
    if (hit && (hit.until <= t || hit.revision !== revision)) {
      cache.delete(key);
      hit = undefined;
    }
    if (!hit) {
      const found = await options.verify(key);
      if (!found) throw unauthorized('the API key is unknown or revoked', 'not a valid API key', 'invalid_token');
      hit = { ...found, until: t + cacheMs, revision };
      if (cacheMs > 0) {
        // Map keeps insertion order: dropping the first entry drops the oldest
        if (cache.size >= maxEntries) cache.delete(cache.keys().next().value!);
        cache.set(key, hit);
      }
    }
    c.set('tenant', hit.tenant);
    c.set('keyId', hit.keyId);
    await next();
  };
}
