/**
 * The checks behind `amdm aws preflight`: what an AWS account and a stage need before the GPU
 * fleet can serve a job, each answered with the operator's credentials and read-only calls
 * (iam:GetRole, servicequotas:GetServiceQuota, lambda:GetAccountSettings, ecr:DescribeImages,
 * s3:GetObject / HeadObject), each printed as one line with what to do when it fails.
 *
 * The clients come from the caller (cli/commands/aws.ts builds them; tests mock them); this
 * module reads no environment.
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { DescribeImagesCommand, type ECRClient } from '@aws-sdk/client-ecr';
import { GetRoleCommand, type IAMClient } from '@aws-sdk/client-iam';
import { GetAccountSettingsCommand, type LambdaClient } from '@aws-sdk/client-lambda';
import { GetObjectCommand, HeadObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { GetAWSDefaultServiceQuotaCommand, GetServiceQuotaCommand, type ServiceQuotasClient } from '@aws-sdk/client-service-quotas';
import { MODELS_PREFIX, readManifest, s3ModelSource } from '../gpu-runner/aws/model-sync.ts';
import { SERVICE_LINKED_ROLES } from '../infra/service-roles.ts';
import { sha256Hex } from '../shared/model-catalog.ts';

export type CheckStatus = 'ok' | 'warn' | 'fail' | 'skip';

export interface Check {
  status: CheckStatus;
  /** what was checked, and what was found */
  line: string;
  /** what to do about it (warn, fail and skip) */
  fix?: string;
}

/** The stage, as `sst shell` links it (the RunnerFleet link of sst.config.ts) or flags give it. */
export interface StageFacts {
  region: string;
  /** the stage's bucket (Resource.Store.name); null: not deployed or not under `sst shell` */
  bucket: string | null;
  /** the runner image repository's name; null: unknown */
  repository: string | null;
  imageTag: string | null;
  instanceTypes: readonly string[];
  maxTasks: number;
  /** the SHA-256 of the checksums.json the edge's model catalog was built from (models/catalog.json); null: unknown */
  catalogChecksumsSha256: string | null;
}

export interface PreflightClients {
  iam: IAMClient;
  quotas: ServiceQuotasClient;
  lambda: LambdaClient;
  ecr: ECRClient;
  s3: S3Client;
}

export interface PreflightOptions {
  /** download every model file and hash it when S3 holds no full-object SHA-256 for it */
  hashModels?: boolean;
}

/** EC2's vCPU quotas by instance family (Service Quotas, service code ec2). */
export const GPU_QUOTAS = {
  G: { code: 'L-DB2E81BA', name: 'Running On-Demand G and VT instances' },
  P: { code: 'L-417A185B', name: 'Running On-Demand P instances' },
} as const;
/** Lambda's account concurrency (Service Quotas code, for the increase request). */
export const LAMBDA_CONCURRENCY_QUOTA = 'L-B99A9384';
/**
 * Below this many concurrent executions the API is at the mercy of a few clients: each open
 * event stream and each `Prefer: wait` request holds one execution for its whole length
 * (edge/lambda.ts), and new accounts start at 10 (Lambda quotas). The default is 1,000.
 */
export const LAMBDA_CONCURRENCY_MINIMUM = 100;
/** The placeholder tag of infra/params.ts: no image. */
const BOOTSTRAP_TAG = 'bootstrap';

const errorName = (err: unknown) => (err as { name?: string })?.name ?? '';
const denied = (err: unknown) => /AccessDenied|UnauthorizedOperation|NotAuthorized/.test(errorName(err)) || (err as { $metadata?: { httpStatusCode?: number } })?.$metadata?.httpStatusCode === 403;
const short = (err: unknown) => `${errorName(err) || 'Error'}: ${String((err as Error)?.message ?? err).split('\n')[0]}`;

/**
 * vCPUs of an x86_64 GPU instance type from its size, as EC2 sizes them (xlarge = 4 vCPUs,
 * Nxlarge = 4N); null for sizes that do not follow the rule (metal).
 */
export function vcpusOf(instanceType: string): number | null {
  const size = instanceType.split('.')[1] ?? '';
  if (size === 'large') return 2;
  if (size === 'xlarge') return 4;
  const m = /^(\d+)xlarge$/.exec(size);
  return m ? Number(m[1]) * 4 : null;
}

const quotaFamily = (instanceType: string): keyof typeof GPU_QUOTAS => (instanceType.startsWith('p') ? 'P' : 'G');

export async function runPreflight(stage: StageFacts, clients: PreflightClients, opts: PreflightOptions = {}): Promise<Check[]> {
  const checks = await Promise.all([
    serviceLinkedRoles(clients.iam),
    gpuQuota(stage, clients.quotas),
    lambdaConcurrency(clients.lambda),
    runnerImage(stage, clients.ecr),
    models(stage, clients.s3, opts),
  ]);
  return checks.flat();
}

async function serviceLinkedRoles(iam: IAMClient): Promise<Check[]> {
  return Promise.all(
    Object.values(SERVICE_LINKED_ROLES).map(async (role): Promise<Check> => {
      const create = `\`npx sst deploy\` creates it (needs iam:CreateServiceLinkedRole), or: aws iam create-service-linked-role --aws-service-name ${role.service}`;
      try {
        await iam.send(new GetRoleCommand({ RoleName: role.name }));
        return { status: 'ok', line: `service-linked role ${role.name} exists` };
      } catch (err) {
        if (errorName(err) === 'NoSuchEntityException' || errorName(err) === 'NoSuchEntity') {
          return { status: 'fail', line: `service-linked role ${role.name} (${role.service}) does not exist`, fix: create };
        }
        return { status: 'warn', line: `service-linked role ${role.name}: cannot tell (${short(err)})`, fix: denied(err) ? 'allow iam:GetRole to your credentials, or check in the IAM console' : create };
      }
    }),
  );
}

async function gpuQuota(stage: StageFacts, quotas: ServiceQuotasClient): Promise<Check[]> {
  const byFamily = new Map<keyof typeof GPU_QUOTAS, string[]>();
  for (const type of stage.instanceTypes) byFamily.set(quotaFamily(type), [...(byFamily.get(quotaFamily(type)) ?? []), type]);
  return Promise.all(
    [...byFamily].map(async ([family, types]): Promise<Check> => {
      const quota = GPU_QUOTAS[family];
      const sizes = types.map((t) => [t, vcpusOf(t)] as const);
      const unknown = sizes.filter(([, v]) => v === null).map(([t]) => t);
      // the fleet may end up on its largest type; every task needs one instance of it
      const perTask = Math.max(0, ...sizes.map(([, v]) => v ?? 0));
      const needed = perTask * stage.maxTasks;
      const request = `aws service-quotas request-service-quota-increase --service-code ec2 --quota-code ${quota.code} --desired-value ${needed} --region ${stage.region}`;
      let value: number;
      try {
        value = await quotaValue(quotas, 'ec2', quota.code);
      } catch (err) {
        return { status: 'warn', line: `GPU quota "${quota.name}" in ${stage.region}: cannot read it (${short(err)})`, fix: `check it in the Service Quotas console (ec2, ${quota.code}); the fleet needs ${needed} vCPUs` };
      }
      const what = `GPU quota "${quota.name}" in ${stage.region} is ${value} vCPUs; ${stage.maxTasks} task(s) of ${types.join(', ')} need up to ${needed}`;
      const note = unknown.length ? ` (vCPUs of ${unknown.join(', ')} not known here: check those by hand)` : '';
      if (value < perTask) return { status: 'fail', line: `${what}: not even one instance can start${note}`, fix: request };
      if (value < needed) return { status: 'warn', line: `${what}: at most ${Math.floor(value / perTask)} task(s) can run${note}`, fix: request };
      return { status: unknown.length ? 'warn' : 'ok', line: `${what}${note}` };
    }),
  );
}

/** The applied value, or AWS's default when the account never changed it (GetServiceQuota has none then). */
async function quotaValue(quotas: ServiceQuotasClient, service: string, code: string): Promise<number> {
  try {
    const out = await quotas.send(new GetServiceQuotaCommand({ ServiceCode: service, QuotaCode: code }));
    if (out.Quota?.Value !== undefined) return out.Quota.Value;
  } catch (err) {
    if (errorName(err) !== 'NoSuchResourceException') throw err;
  }
  const def = await quotas.send(new GetAWSDefaultServiceQuotaCommand({ ServiceCode: service, QuotaCode: code }));
  if (def.Quota?.Value === undefined) throw new Error(`Service Quotas has no value for ${service}/${code}`);
  return def.Quota.Value;
}

async function lambdaConcurrency(lambda: LambdaClient): Promise<Check[]> {
  const fix = `request at least ${LAMBDA_CONCURRENCY_MINIMUM} (the default is 1,000): aws service-quotas request-service-quota-increase --service-code lambda --quota-code ${LAMBDA_CONCURRENCY_QUOTA} --desired-value 1000`;
  try {
    const out = await lambda.send(new GetAccountSettingsCommand({}));
    const limit = out.AccountLimit?.ConcurrentExecutions;
    const free = out.AccountLimit?.UnreservedConcurrentExecutions;
    if (limit === undefined) return [{ status: 'warn', line: 'Lambda concurrency: GetAccountSettings returned no limit', fix }];
    const line = `Lambda concurrency limit is ${limit} (${free ?? '?'} unreserved); each open event stream or Prefer: wait request holds one`;
    return [limit < LAMBDA_CONCURRENCY_MINIMUM ? { status: 'fail', line, fix } : { status: 'ok', line }];
  } catch (err) {
    return [{ status: 'warn', line: `Lambda concurrency: cannot read it (${short(err)})`, fix: 'allow lambda:GetAccountSettings, or check "Concurrent executions" in the Service Quotas console' }];
  }
}

async function runnerImage(stage: StageFacts, ecr: ECRClient): Promise<Check[]> {
  const push = 'build and push it, then deploy its tag (docs/deploy.md, "Runner image")';
  if (!stage.repository) return [{ status: 'skip', line: 'runner image: repository unknown', fix: 'run under `npx sst shell --stage STAGE` after a deploy, or give --repository NAME' }];
  if (!stage.imageTag || stage.imageTag === BOOTSTRAP_TAG) {
    return [{ status: 'fail', line: `runner image: the stage deploys no image yet (tag ${stage.imageTag ?? 'unknown'}); the fleet is held at zero`, fix: push }];
  }
  try {
    const out = await ecr.send(new DescribeImagesCommand({ repositoryName: stage.repository, imageIds: [{ imageTag: stage.imageTag }] }));
    const image = out.imageDetails?.[0];
    const size = image?.imageSizeInBytes ? `, ${(image.imageSizeInBytes / 1e9).toFixed(2)} GB compressed` : '';
    return [{ status: 'ok', line: `runner image ${stage.repository}:${stage.imageTag} exists${size}` }];
  } catch (err) {
    if (errorName(err) === 'ImageNotFoundException') return [{ status: 'fail', line: `runner image ${stage.repository}:${stage.imageTag} does not exist`, fix: push }];
    if (errorName(err) === 'RepositoryNotFoundException') return [{ status: 'fail', line: `runner image repository ${stage.repository} does not exist`, fix: 'deploy the stage first: npx sst deploy --stage STAGE' }];
    return [{ status: 'warn', line: `runner image ${stage.repository}:${stage.imageTag}: cannot tell (${short(err)})`, fix: 'allow ecr:DescribeImages, or check in the ECR console' }];
  }
}

async function models(stage: StageFacts, s3: S3Client, opts: PreflightOptions): Promise<Check[]> {
  if (!stage.bucket) return [{ status: 'skip', line: 'models: bucket unknown', fix: 'run under `npx sst shell --stage STAGE` after a deploy, or give --bucket NAME' }];
  const upload = 'upload the packages, then checksums.json (docs/deploy.md, "Models")';
  const source = s3ModelSource(s3, stage.bucket, MODELS_PREFIX);
  let manifest: Record<string, string>;
  let manifestBytes: Uint8Array;
  try {
    const got = await s3.send(new GetObjectCommand({ Bucket: stage.bucket, Key: `${MODELS_PREFIX}checksums.json` }));
    manifestBytes = await got.Body!.transformToByteArray();
    // the runner's own manifest rules (hashes, paths inside the prefix)
    const bytes = manifestBytes;
    manifest = await readManifest({ describe: source.describe, open: async () => Readable.from([bytes]) });
  } catch (err) {
    if (errorName(err) === 'NoSuchKey') return [{ status: 'fail', line: `models: ${source.describe('checksums.json')} does not exist`, fix: upload }];
    return [{ status: 'fail', line: `models: ${short(err)}`, fix: upload }];
  }
  const checks: Check[] = [];
  if (stage.catalogChecksumsSha256 !== null) {
    const actual = sha256Hex(manifestBytes);
    checks.push(
      actual === stage.catalogChecksumsSha256
        ? { status: 'ok', line: 'models: the bucket\'s checksums.json is the one the edge\'s catalog was built from' }
        : {
            status: 'fail',
            line: `models: the bucket's checksums.json (sha256 ${actual.slice(0, 12)}…) is not the one the catalog was built from (${stage.catalogChecksumsSha256.slice(0, 12)}…): the edge would offer models the runners do not have, or refuse ones they do`,
            fix: 'upload the packages the catalog was generated from, or run `npm run models:catalog` on the uploaded ones and deploy',
          },
    );
  }
  const results = await mapLimit(Object.entries(manifest), 8, ([path, expected]) => modelFile(s3, stage.bucket!, path, expected, opts));
  const missing = results.filter((r) => r.state === 'missing').map((r) => r.path);
  const mismatched = results.filter((r) => r.state === 'mismatch');
  const unverified = results.filter((r) => r.state === 'unverified');
  const bytes = results.reduce((sum, r) => sum + r.bytes, 0);
  const n = results.length;
  if (missing.length) checks.push({ status: 'fail', line: `models: ${missing.length} of ${n} listed files are missing: ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ', …' : ''}`, fix: upload });
  for (const m of mismatched) checks.push({ status: 'fail', line: `models: ${m.path} has sha256 ${m.actual}, checksums.json lists ${m.expected}`, fix: upload });
  if (unverified.length) {
    checks.push({
      status: 'warn',
      line: `models: ${unverified.length} of ${n} files are present but their SHA-256 is not verified (S3 holds no full-object SHA-256 for them)`,
      fix: `run again with --hash-models (downloads ${(bytes / 1e9).toFixed(2)} GB), or upload them with \`aws s3 cp --checksum-algorithm SHA256\` in single parts`,
    });
  }
  if (!missing.length && !mismatched.length && !unverified.length) {
    checks.push({ status: 'ok', line: `models: all ${n} files of checksums.json are in s3://${stage.bucket}/${MODELS_PREFIX} with matching SHA-256 (${(bytes / 1e9).toFixed(2)} GB)` });
  }
  return checks;
}

interface FileResult {
  path: string;
  state: 'ok' | 'missing' | 'mismatch' | 'unverified';
  bytes: number;
  expected?: string;
  actual?: string;
}

/**
 * One model file: present, and its SHA-256 from what S3 stored at upload (a full-object
 * SHA-256, given when it was uploaded with one in a single part), or, with hashModels, from
 * its bytes.
 */
async function modelFile(s3: S3Client, bucket: string, path: string, expected: string, opts: PreflightOptions): Promise<FileResult> {
  const key = `${MODELS_PREFIX}${path}`;
  let head;
  try {
    head = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key, ChecksumMode: 'ENABLED' }));
  } catch (err) {
    if (errorName(err) === 'NotFound' || errorName(err) === 'NoSuchKey') return { path, state: 'missing', bytes: 0 };
    throw err;
  }
  const bytes = head.ContentLength ?? 0;
  const stored = head.ChecksumSHA256 && head.ChecksumType !== 'COMPOSITE' && !head.ChecksumSHA256.includes('-') ? Buffer.from(head.ChecksumSHA256, 'base64').toString('hex') : null;
  let actual = stored;
  if (actual === null && opts.hashModels) {
    const got = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    const hash = createHash('sha256');
    for await (const chunk of got.Body as AsyncIterable<Uint8Array>) hash.update(chunk);
    actual = hash.digest('hex');
  }
  if (actual === null) return { path, state: 'unverified', bytes };
  return actual === expected ? { path, state: 'ok', bytes } : { path, state: 'mismatch', bytes, expected, actual };
}

async function mapLimit<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/** The report as the command prints it: one line per check, the fix indented under it. */
export function formatChecks(checks: readonly Check[]): string {
  const label: Record<CheckStatus, string> = { ok: 'ok  ', warn: 'WARN', fail: 'FAIL', skip: 'skip' };
  return checks.map((c) => `${label[c.status]}  ${c.line}${c.fix && c.status !== 'ok' ? `\n      -> ${c.fix}` : ''}`).join('\n') + '\n';
}
