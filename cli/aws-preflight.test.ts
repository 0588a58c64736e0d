/**
 * `amdm aws preflight`, never against a live account: IAM, Service Quotas, Lambda and ECR
 * answer through the SDK's client mocks (aws-sdk-client-mock: the commands the SDK would
 * send, answered with what AWS documents), S3 through fauxqs (the real wire protocol). fauxqs
 * keeps no checksums, so the one case that reads a full-object SHA-256 from HeadObject uses a
 * mocked S3 client.
 */
import { createHash } from 'node:crypto';
import { DescribeImagesCommand, ECRClient, ImageNotFoundException, RepositoryNotFoundException } from '@aws-sdk/client-ecr';
import { GetRoleCommand, IAMClient, NoSuchEntityException } from '@aws-sdk/client-iam';
import { GetAccountSettingsCommand, LambdaClient } from '@aws-sdk/client-lambda';
import { GetObjectCommand, HeadObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { GetAWSDefaultServiceQuotaCommand, GetServiceQuotaCommand, NoSuchResourceException, ServiceQuotasClient } from '@aws-sdk/client-service-quotas';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFauxqs, type Fauxqs } from '../test/conformance/fauxqs-server.ts';
import { formatChecks, runPreflight, vcpusOf, type Check, type PreflightClients, type StageFacts } from './aws-preflight.ts';
import { stageFacts } from './commands/aws.ts';

let fauxqs: Fauxqs;
beforeAll(async () => {
  fauxqs = await startFauxqs();
});
afterAll(async () => {
  await fauxqs?.stop();
});

const sha256 = (b: string | Uint8Array) => createHash('sha256').update(b).digest('hex');
const files = { 'sd15/unet/model.onnx': 'unet bytes', 'sd15/amdm.json': '{"components":{}}' };
const manifest = JSON.stringify(Object.fromEntries(Object.entries(files).map(([p, b]) => [p, sha256(b)])));

async function bucketWith(objects: Record<string, string>): Promise<string> {
  const bucket = await fauxqs.createBucket();
  for (const [key, body] of Object.entries(objects)) await fauxqs.s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
  return bucket;
}
const uploaded = (extra: Record<string, string> = {}) =>
  bucketWith({ ...Object.fromEntries(Object.entries(files).map(([p, b]) => [`models/${p}`, b])), 'models/checksums.json': manifest, ...extra });

/** Per-instance mocks of the account-level clients, configured by the test. */
function account(setup: {
  roles: 'present' | 'absent';
  gpuQuota: number | 'default-only';
  pQuota?: number;
  lambdaLimit: number;
  image: 'present' | 'absent' | 'no-repository';
}): PreflightClients {
  const iam = new IAMClient({ region: 'us-east-1' });
  const quotas = new ServiceQuotasClient({ region: 'us-east-1' });
  const lambda = new LambdaClient({ region: 'us-east-1' });
  const ecr = new ECRClient({ region: 'us-east-1' });
  const iamMock = mockClient(iam);
  if (setup.roles === 'present') iamMock.on(GetRoleCommand).callsFake((input) => ({ Role: { RoleName: input.RoleName, Path: '/aws-service-role/', Arn: 'arn', RoleId: 'id', CreateDate: new Date() } }));
  else iamMock.on(GetRoleCommand).rejects(new NoSuchEntityException({ message: 'The role with name X cannot be found.', $metadata: {} }));
  const q = mockClient(quotas);
  if (setup.gpuQuota === 'default-only') {
    // an account that never changed the quota: GetServiceQuota knows no applied value
    q.on(GetServiceQuotaCommand).rejects(new NoSuchResourceException({ message: 'no applied quota', $metadata: {} }));
    q.on(GetAWSDefaultServiceQuotaCommand).resolves({ Quota: { QuotaCode: 'L-DB2E81BA', Value: 0 } });
  } else {
    q.on(GetServiceQuotaCommand, { ServiceCode: 'ec2', QuotaCode: 'L-DB2E81BA' }).resolves({ Quota: { QuotaCode: 'L-DB2E81BA', Value: setup.gpuQuota } });
    q.on(GetServiceQuotaCommand, { ServiceCode: 'ec2', QuotaCode: 'L-417A185B' }).resolves({ Quota: { QuotaCode: 'L-417A185B', Value: setup.pQuota ?? 0 } });
  }
  mockClient(lambda).on(GetAccountSettingsCommand).resolves({ AccountLimit: { ConcurrentExecutions: setup.lambdaLimit, UnreservedConcurrentExecutions: setup.lambdaLimit } });
  const e = mockClient(ecr).on(DescribeImagesCommand);
  if (setup.image === 'present') e.resolves({ imageDetails: [{ imageTags: ['abc1234'], imageSizeInBytes: 4_200_000_000 }] });
  else if (setup.image === 'absent') e.rejects(new ImageNotFoundException({ message: "The image with imageId {imageTag:'abc1234'} does not exist", $metadata: {} }));
  else e.rejects(new RepositoryNotFoundException({ message: 'no repository', $metadata: {} }));
  return { iam, quotas, lambda, ecr, s3: fauxqs.s3 };
}

const stage = (over: Partial<StageFacts> = {}): StageFacts => ({
  region: 'us-east-1',
  bucket: null,
  repository: 'amdm-prod-runnerimages',
  imageTag: 'abc1234',
  instanceTypes: ['g5.xlarge', 'g6.xlarge'],
  maxTasks: 2,
  catalogChecksumsSha256: null,
  ...over,
});

const find = (checks: Check[], re: RegExp) => {
  const found = checks.filter((c) => re.test(c.line));
  expect(found, `no check matching ${re}:\n${formatChecks(checks)}`).not.toEqual([]);
  return found;
};

describe('runPreflight', () => {
  it('in a fresh account, fails every check and says what to do for each', async () => {
    const bucket = await bucketWith({});
    const checks = await runPreflight(stage({ bucket }), account({ roles: 'absent', gpuQuota: 'default-only', lambdaLimit: 10, image: 'absent' }));
    const roles = find(checks, /service-linked role/);
    expect(roles.map((c) => c.status)).toEqual(['fail', 'fail', 'fail']);
    expect(roles.map((c) => c.fix)).toContainEqual(expect.stringContaining('aws iam create-service-linked-role --aws-service-name ecs.amazonaws.com'));
    expect(find(checks, /GPU quota/)[0]).toMatchObject({
      status: 'fail',
      line: expect.stringContaining('is 0 vCPUs; 2 task(s) of g5.xlarge, g6.xlarge need up to 8: not even one instance can start'),
      fix: 'aws service-quotas request-service-quota-increase --service-code ec2 --quota-code L-DB2E81BA --desired-value 8 --region us-east-1',
    });
    expect(find(checks, /Lambda concurrency/)[0]).toMatchObject({ status: 'fail', fix: expect.stringContaining('--quota-code L-B99A9384') });
    expect(find(checks, /runner image/)[0]).toMatchObject({ status: 'fail', line: 'runner image amdm-prod-runnerimages:abc1234 does not exist', fix: expect.stringContaining('Runner image') });
    expect(find(checks, /models/)[0]).toMatchObject({ status: 'fail', line: `models: s3://${bucket}/models/checksums.json does not exist` });
    // every line that is not ok says what to do
    for (const c of checks.filter((c) => c.status !== 'ok')) expect(c.fix, c.line).toBeTruthy();
  });

  it('in a ready account and stage, passes, hashing the models when S3 holds no SHA-256 for them', async () => {
    const bucket = await uploaded();
    const checks = await runPreflight(
      stage({ bucket, catalogChecksumsSha256: sha256(manifest) }),
      account({ roles: 'present', gpuQuota: 8, lambdaLimit: 1000, image: 'present' }),
      { hashModels: true },
    );
    expect(checks.filter((c) => c.status !== 'ok'), formatChecks(checks)).toEqual([]);
    expect(find(checks, /runner image/)[0]!.line).toBe('runner image amdm-prod-runnerimages:abc1234 exists, 4.20 GB compressed');
    find(checks, /all 2 files of checksums.json are in s3:\/\/.*\/models\/ with matching SHA-256/);
    find(checks, /the one the edge's catalog was built from/);
  });

  it('warns when the quota fits fewer tasks than the stage allows, and reads P types against the P quota', async () => {
    const checks = await runPreflight(stage({ instanceTypes: ['g5.2xlarge', 'p3.2xlarge'], maxTasks: 3 }), account({ roles: 'present', gpuQuota: 16, pQuota: 96, lambdaLimit: 1000, image: 'present' }));
    expect(find(checks, /Running On-Demand G and VT/)[0]).toMatchObject({ status: 'warn', line: expect.stringContaining('is 16 vCPUs; 3 task(s) of g5.2xlarge need up to 24: at most 2 task(s) can run') });
    expect(find(checks, /Running On-Demand P instances/)[0]).toMatchObject({ status: 'ok' });
  });

  it('finds a model file that is missing or whose bytes do not match, and leaves unhashed ones as a warning with the download size', async () => {
    const missing = await bucketWith({ 'models/checksums.json': manifest, 'models/sd15/amdm.json': files['sd15/amdm.json'] });
    let checks = await runPreflight(stage({ bucket: missing }), account({ roles: 'present', gpuQuota: 8, lambdaLimit: 1000, image: 'present' }));
    expect(find(checks, /missing/)[0]).toMatchObject({ status: 'fail', line: 'models: 1 of 2 listed files are missing: sd15/unet/model.onnx' });

    const swapped = await uploaded({ 'models/sd15/unet/model.onnx': 'other bytes' });
    checks = await runPreflight(stage({ bucket: swapped }), account({ roles: 'present', gpuQuota: 8, lambdaLimit: 1000, image: 'present' }));
    expect(find(checks, /not verified/)[0]).toMatchObject({ status: 'warn', fix: expect.stringMatching(/--hash-models \(downloads 0\.00 GB\)/) });
    checks = await runPreflight(stage({ bucket: swapped }), account({ roles: 'present', gpuQuota: 8, lambdaLimit: 1000, image: 'present' }), { hashModels: true });
    expect(find(checks, /sd15\/unet\/model\.onnx has sha256/)[0]).toMatchObject({ status: 'fail', line: `models: sd15/unet/model.onnx has sha256 ${sha256('other bytes')}, checksums.json lists ${sha256('unet bytes')}` });
  });

  it('fails when the bucket\'s checksums.json is not the one the deployed catalog was built from', async () => {
    const bucket = await uploaded();
    const checks = await runPreflight(stage({ bucket, catalogChecksumsSha256: sha256('an older checksums.json') }), account({ roles: 'present', gpuQuota: 8, lambdaLimit: 1000, image: 'present' }), { hashModels: true });
    expect(find(checks, /catalog was built from/)[0]).toMatchObject({ status: 'fail', fix: expect.stringContaining('npm run models:catalog') });
  });

  it('verifies a file against the full-object SHA-256 S3 stored at upload, without downloading it', async () => {
    const s3 = new S3Client({ region: 'us-east-1' });
    const m = mockClient(s3);
    // the one method of the SDK's body stream that the preflight uses on the manifest
    m.on(GetObjectCommand, { Key: 'models/checksums.json' }).callsFake(() => ({ Body: { transformToByteArray: async () => new TextEncoder().encode(manifest) } as never }));
    const b64 = (s: string) => createHash('sha256').update(s).digest('base64');
    m.on(HeadObjectCommand, { Key: 'models/sd15/unet/model.onnx' }).resolves({ ContentLength: 10, ChecksumSHA256: b64('unet bytes'), ChecksumType: 'FULL_OBJECT' });
    // a composite checksum (multipart upload) says nothing about the whole file's SHA-256
    m.on(HeadObjectCommand, { Key: 'models/sd15/amdm.json' }).resolves({ ContentLength: 17, ChecksumSHA256: `${b64('part')}-2`, ChecksumType: 'COMPOSITE' });
    const clients = { ...account({ roles: 'present', gpuQuota: 8, lambdaLimit: 1000, image: 'present' }), s3 };
    const checks = await runPreflight(stage({ bucket: 'amdm-prod-store' }), clients);
    expect(find(checks, /not verified/)[0]!.line).toBe('models: 1 of 2 files are present but their SHA-256 is not verified (S3 holds no full-object SHA-256 for them)');
    expect(m.commandCalls(GetObjectCommand).map((c) => c.args[0].input.Key)).toEqual(['models/checksums.json']);
  });

  it('skips the stage checks it cannot place, saying how to run them', async () => {
    const checks = await runPreflight(stage({ repository: null, bucket: null }), account({ roles: 'present', gpuQuota: 8, lambdaLimit: 1000, image: 'present' }));
    for (const c of find(checks, /unknown/)) expect(c).toMatchObject({ status: 'skip', fix: expect.stringContaining('npx sst shell --stage STAGE') });
  });

  it('says no image is deployed while the stage has the bootstrap tag', async () => {
    const checks = await runPreflight(stage({ imageTag: 'bootstrap' }), account({ roles: 'present', gpuQuota: 8, lambdaLimit: 1000, image: 'present' }));
    expect(find(checks, /runner image/)[0]).toMatchObject({ status: 'fail', line: expect.stringContaining('held at zero') });
  });
});

describe('stage facts', () => {
  const links = {
    App: { name: 'amdm', stage: 'prod' },
    Store: { name: 'amdm-prod-store' },
    RunnerFleet: { region: 'eu-west-1', repository: 'amdm-prod-runnerimages', imageTag: 'abc1234', instanceTypes: 'g6.xlarge', maxTasks: 3, catalogChecksumsSha256: 'ab'.repeat(32) },
  };

  it('come from the links of `sst shell`, flags first', () => {
    expect(stageFacts({}, {}, links)).toEqual({
      region: 'eu-west-1',
      bucket: 'amdm-prod-store',
      repository: 'amdm-prod-runnerimages',
      imageTag: 'abc1234',
      instanceTypes: ['g6.xlarge'],
      maxTasks: 3,
      catalogChecksumsSha256: 'ab'.repeat(32),
    });
    expect(stageFacts({ 'image-tag': 'next', region: 'us-east-1' }, {}, links)).toMatchObject({ imageTag: 'next', region: 'us-east-1' });
  });

  it('without `sst shell`, take the stage parameters of the environment for the account checks', () => {
    expect(stageFacts({}, { AWS_REGION: 'us-west-2', AMDM_MAX_TASKS: '4', AMDM_GPU_INSTANCE_TYPES: 'g5.xlarge' }, {})).toEqual({
      region: 'us-west-2',
      bucket: null,
      repository: null,
      imageTag: 'bootstrap',
      instanceTypes: ['g5.xlarge'],
      maxTasks: 4,
      catalogChecksumsSha256: null,
    });
  });

  it('refuse a --stage that is not the stage `sst shell` links, and a run with no region', () => {
    expect(() => stageFacts({ stage: 'dev' }, {}, links)).toThrow(/--stage dev but `sst shell` links stage prod/);
    expect(() => stageFacts({}, {}, {})).toThrow(/no region/);
  });
});

describe('vcpusOf', () => {
  it('reads EC2\'s sizes', () => {
    expect(['g4dn.xlarge', 'g5.2xlarge', 'g6e.12xlarge', 'p4d.24xlarge', 'p5.48xlarge', 'g5.metal'].map(vcpusOf)).toEqual([4, 8, 48, 96, 192, null]);
  });
});
