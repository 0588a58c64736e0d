/**
 * Requests without a valid API key and requests to signed URLs are limited per client
 * address on the single node: a flood from one address gets 429s after its burst, other
 * addresses are unaffected, and X-Forwarded-For counts only when the direct peer is a
 * configured trusted proxy. Over real HTTP from distinct loopback addresses (127.0.0.0/8 all
 * reach the server on Linux).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CATALOG } from '../bench/job-bodies.ts';
import { localEdgeSettings, startLocalEdge, type LocalEdge } from '../edge/local.ts';
import { TokenBucketLimiter } from '../edge/middleware/rate-limit/index.ts';
import { createApiKey } from '../shared/api-keys.ts';
import { dataLayout, loadSecrets, openEmbedded, type EmbeddedAdapters } from '../single-node/data-dir.ts';

const BURST = 100;
let dataDir: string;
let adapters: EmbeddedAdapters;
let edge: LocalEdge;
let key: string;
const agents: Agent[] = [];

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'amdm-floods-'));
  const env = { DATA_DIR: dataDir };
  const layout = dataLayout(dataDir);
  const secrets = loadSecrets(layout, env);
  adapters = openEmbedded(layout, { blobSecret: secrets.blobSecret, publicBaseUrl: 'http://127.0.0.1' });
  edge = await startLocalEdge({
    dataDir,
    port: 0,
    catalog: async () => CATALOG,
    adapters,
    env,
    trustedProxies: ['127.0.0.3', '10.0.0.0/8'],
    // the real limiter on a clock that stands still: no token comes back during the burst
    addressLimiter: new TokenBucketLimiter({ ratePerSecond: 20, burst: BURST, now: () => 0 }),
    logger: { error() {}, warn() {}, info() {} },
  });
  key = (await createApiKey(adapters.store, { tenant: 'acme', pepper: secrets.pepper })).key;
});
afterAll(async () => {
  for (const a of agents) a.destroy();
  await edge?.close();
  await adapters?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

/** A client on its own loopback address, with a pool of kept-alive connections. */
function client(localAddress: string) {
  const agent = new Agent({ keepAlive: true, maxSockets: 32 });
  agents.push(agent);
  const { port } = new URL(edge.url);
  return (path: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: Record<string, unknown>; body: string }> =>
    new Promise((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, path, localAddress, agent, headers }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (body += chunk));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
      });
      req.on('error', reject);
      req.end();
    });
}

async function burst(n: number, send: () => Promise<{ status: number }>): Promise<Record<number, number>> {
  const out: Record<number, number> = {};
  const statuses = await Promise.all(Array.from({ length: n }, send));
  for (const { status } of statuses) out[status] = (out[status] ?? 0) + 1;
  return out;
}

const BAD_KEY = { authorization: 'Bearer amdm_aaaaaaaaaaaa_0000000000000000000000000000000000000000' };

describe('per-address limits on the single node', () => {
  it('2000 requests with an unknown key from one address: 401 until its burst is spent, then 429; other addresses unaffected', async () => {
    const flooder = client('127.0.0.1');
    expect(await burst(2000, () => flooder('/v1/models', BAD_KEY))).toEqual({ 401: BURST, 429: 2000 - BURST });
    const res = await flooder('/v1/jobs', BAD_KEY);
    expect(res.status).toBe(429);
    expect(res.headers['content-type']).toBe('application/problem+json');
    expect(res.headers['retry-after']).toMatch(/^\d+$/);
    expect(JSON.parse(res.body)).toMatchObject({ type: 'urn:amdm:problem:rate-limited', status: 429 });
    // a missing key counts the same as a wrong one
    expect((await flooder('/v1/models')).status).toBe(429);
    // a valid key from the same address still works: only failures spend the address's tokens
    expect((await flooder('/v1/models', { authorization: `Bearer ${key}` })).status).toBe(200);
    // another address has its own bucket
    expect((await client('127.0.0.2')('/v1/models', BAD_KEY)).status).toBe(401);
    // X-Forwarded-For from a peer that is not a trusted proxy is ignored: still the flooder's bucket
    expect((await flooder('/v1/models', { ...BAD_KEY, 'x-forwarded-for': '203.0.113.9' })).status).toBe(429);
  });

  it('behind a trusted proxy, the rightmost address it did not add counts', async () => {
    const proxy = client('127.0.0.3');
    const via = (xff: string) => () => proxy('/v1/models', { ...BAD_KEY, 'x-forwarded-for': xff });
    expect(await burst(BURST + 20, via('198.51.100.7'))).toEqual({ 401: BURST, 429: 20 });
    // the client put its own X-Forwarded-For in front: the proxy's entry still counts
    expect((await via('1.1.1.1, 198.51.100.7')()).status).toBe(429);
    // a chain of trusted proxies (10/8) is walked back to the client
    expect((await via('198.51.100.7, 10.1.2.3, 10.9.8.7')()).status).toBe(429);
    // another client behind the same proxy is unaffected, and so is the proxy's own address
    expect((await via('198.51.100.8')()).status).toBe(401);
    expect((await proxy('/v1/models', BAD_KEY)).status).toBe(401);
  });

  it('1000 signed-URL requests from one address: 403 until its burst is spent, then 429', async () => {
    const signed = new URL(await adapters.store.signedGetUrl('tenants/acme/uploads/upl_0123456789abcdef', 600));
    const forged = `${signed.pathname}?${signed.searchParams.toString().replace(/sig=[^&]+/, 'sig=AAAA')}`;
    const flooder = client('127.0.0.4');
    expect(await burst(1000, () => flooder(forged))).toEqual({ 403: BURST, 429: 1000 - BURST });
    // a well-signed URL from this address is refused too while the bucket is empty
    expect((await flooder(`${signed.pathname}${signed.search}`)).status).toBe(429);
    // and served (404: no such upload yet) from another address
    expect((await client('127.0.0.5')(`${signed.pathname}${signed.search}`)).status).toBe(404);
  });
});

describe('the single node reads its settings from the environment', () => {
  it('AMDM_TRUSTED_PROXY and AMDM_MAX_ACTIVE_JOBS, refusing bad values by name', () => {
    expect(localEdgeSettings({})).toEqual({});
    expect(localEdgeSettings({ AMDM_TRUSTED_PROXY: ' 127.0.0.1, 10.0.0.0/8 ,fd00::/8', AMDM_MAX_ACTIVE_JOBS: '50' })).toEqual({
      trustedProxies: ['127.0.0.1', '10.0.0.0/8', 'fd00::/8'],
      limits: { maxActiveJobs: 50 },
    });
    expect(() => localEdgeSettings({ AMDM_TRUSTED_PROXY: '10.0.0.0/33' })).toThrow(/AMDM_TRUSTED_PROXY: "10.0.0.0\/33" is not an IP address or a CIDR block/);
    expect(() => localEdgeSettings({ AMDM_TRUSTED_PROXY: 'proxy.example.test' })).toThrow(/AMDM_TRUSTED_PROXY: "proxy.example.test"/);
    expect(() => localEdgeSettings({ AMDM_MAX_ACTIVE_JOBS: '0' })).toThrow(/AMDM_MAX_ACTIVE_JOBS must be a positive integer/);
  });
});
