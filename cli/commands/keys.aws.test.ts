/**
 * `amdm keys` against an AWS stage's bucket, on fauxqs: with `--store s3://...` and a pepper
 * from AMDM_KEY_PEPPER, and the way docs/deploy.md runs it, under `npx sst shell`, which puts
 * the stage's links (SST_RESOURCE_Store, SST_RESOURCE_KeyPepper) into the environment. The
 * S3 client is the command's own, configured from the environment like the AWS CLI.
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { S3Store } from '../../adapters/aws/s3-store.ts';
import { verifyApiKey } from '../../shared/api-keys.ts';
import { startFauxqs, type Fauxqs } from '../../test/conformance/fauxqs-server.ts';
import { UsageError, type CliCommand } from '../command.ts';
import { parseS3Url } from './keys.ts';

const PEPPER = 'the-stage-key-pepper-value';
const BIN = fileURLToPath(new URL('../../bin/amdm.js', import.meta.url));
let fauxqs: Fauxqs;
let stageBucket: string;
let command: CliCommand;
const saved = { ...process.env };

beforeAll(async () => {
  fauxqs = await startFauxqs();
  stageBucket = await fauxqs.createBucket();
  for (const k of Object.keys(process.env)) if (k.startsWith('SST_RESOURCE_') || k.startsWith('AWS_') || k === 'AMDM_KEY_PEPPER' || k === 'DATA_DIR') delete process.env[k];
  // what `npx sst shell --stage prod` puts into the environment, plus the operator's AWS config;
  // set before the command first reads the links (the sst SDK reads them once per process)
  Object.assign(process.env, {
    SST_RESOURCE_App: JSON.stringify({ name: 'amdm', stage: 'prod' }),
    SST_RESOURCE_Store: JSON.stringify({ name: stageBucket }),
    SST_RESOURCE_KeyPepper: JSON.stringify({ value: PEPPER }),
    AWS_ENDPOINT_URL: fauxqs.endpoint,
    AWS_ACCESS_KEY_ID: 'operator',
    AWS_SECRET_ACCESS_KEY: 'operator',
    AWS_REGION: 'us-east-1',
  });
  ({ command } = await import('./keys.ts'));
});
afterAll(async () => {
  process.env = saved;
  await fauxqs?.stop();
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

describe('amdm keys on S3', () => {
  it('under `sst shell`: create, list and revoke in the stage bucket with its KeyPepper secret, no flags', async () => {
    const created = await run(['create', '--tenant', 'globex']);
    expect(created.code, created.err).toBe(0);
    const key = created.out.trim();
    // the key alone on stdout, so `KEY=$(npx sst shell -- npx amdm keys create ...)` works
    expect(created.out).toMatch(/^amdm_[a-z0-9]{12}_[A-Za-z0-9]{40}\n$/);
    expect(created.err).toContain(`s3://${stageBucket}/`);
    // what the edge does with a request's key: the same function, the same pepper, the same bucket
    const store = new S3Store({ client: fauxqs.s3, bucket: stageBucket });
    expect(await verifyApiKey(store, PEPPER, key)).toMatchObject({ tenant: 'globex' });

    const keyId = key.split('_')[1]!;
    expect(JSON.parse((await run(['list', '--json'])).out)).toEqual([expect.objectContaining({ keyId, tenant: 'globex', revoked_at: null })]);
    expect((await run(['revoke', keyId])).code).toBe(0);
    expect(await verifyApiKey(store, PEPPER, key)).toBeNull();
    expect((await run(['list'])).out).toMatch(new RegExp(`${keyId}\\s+globex\\s+\\S+\\s+revoked `));
    expect((await run(['revoke', 'zzzzzzzzzzzz'])).code).toBe(1);
  });

  it('--store s3://BUCKET names another bucket; AMDM_KEY_PEPPER, when set, is the pepper', async () => {
    const other = await fauxqs.createBucket();
    process.env.AMDM_KEY_PEPPER = 'another-stage-pepper-value';
    try {
      const created = await run(['create', '--tenant', 'acme', '--store', `s3://${other}`, '--region', 'us-east-1']);
      expect(created.code, created.err).toBe(0);
      expect(await verifyApiKey(new S3Store({ client: fauxqs.s3, bucket: other }), 'another-stage-pepper-value', created.out.trim())).toMatchObject({ tenant: 'acme' });
      expect(await verifyApiKey(new S3Store({ client: fauxqs.s3, bucket: stageBucket }), PEPPER, created.out.trim())).toBeNull();
    } finally {
      delete process.env.AMDM_KEY_PEPPER;
    }
    await expect(command.run(['list', '--data-dir', '/tmp/x', '--store', `s3://${other}`])).rejects.toThrow(/--store or --data-dir, not both/);
  });

  it('outside `sst shell`, --store without AMDM_KEY_PEPPER is refused (exit 2), never given a new pepper', async () => {
    const bucket = await fauxqs.createBucket();
    const env: Record<string, string> = { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', AWS_ENDPOINT_URL: fauxqs.endpoint, AWS_ACCESS_KEY_ID: 'operator', AWS_SECRET_ACCESS_KEY: 'operator' };
    const result = await new Promise<{ code: number; stderr: string }>((resolve) =>
      execFile(process.execPath, [BIN, 'keys', 'create', '--tenant', 'acme', '--store', `s3://${bucket}`, '--region', 'us-east-1'], { env, timeout: 60_000 }, (err, _stdout, stderr) =>
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stderr }),
      ),
    );
    expect(result.stderr).toMatch(/no pepper for s3:\/\/.*npx sst shell --stage STAGE.*AMDM_KEY_PEPPER/);
    expect(result.code).toBe(2);
    expect((await new S3Store({ client: fauxqs.s3, bucket }).list('apikeys/')).keys).toEqual([]);
  });

  it('parses s3:// locations, with an optional prefix', () => {
    expect(parseS3Url('s3://amdm-prod-store')).toEqual({ bucket: 'amdm-prod-store', prefix: '' });
    expect(parseS3Url('s3://amdm-prod-store/')).toEqual({ bucket: 'amdm-prod-store', prefix: '' });
    expect(parseS3Url('s3://amdm-prod-store/stage-a/')).toEqual({ bucket: 'amdm-prod-store', prefix: 'stage-a/' });
    expect(() => parseS3Url('https://amdm-prod-store')).toThrow(UsageError);
    expect(() => parseS3Url('s3://Bad_Bucket')).toThrow(/--store must be s3:\/\/BUCKET/);
  });
});
