/**
 * The `amdm aws preflight` command as the CLI runs it: its own clients (mocked at the class, so
 * no call leaves the process), its exit code and its output.
 */
import { ECRClient } from '@aws-sdk/client-ecr';
import { GetRoleCommand, IAMClient } from '@aws-sdk/client-iam';
import { GetAccountSettingsCommand, LambdaClient } from '@aws-sdk/client-lambda';
import { S3Client } from '@aws-sdk/client-s3';
import { GetServiceQuotaCommand, ServiceQuotasClient } from '@aws-sdk/client-service-quotas';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { main } from '../main.ts';

const iam = mockClient(IAMClient);
const quotas = mockClient(ServiceQuotasClient);
const lambda = mockClient(LambdaClient);
const others = [mockClient(ECRClient), mockClient(S3Client)];
afterEach(() => {
  for (const m of [iam, quotas, lambda, ...others]) m.reset();
  vi.restoreAllMocks();
});

async function run(...argv: string[]) {
  let out = '';
  let err = '';
  vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => ((out += String(chunk)), true));
  vi.spyOn(process.stderr, 'write').mockImplementation((chunk) => ((err += String(chunk)), true));
  const code = await main(argv);
  vi.restoreAllMocks();
  return { code, out, err };
}

describe('amdm aws preflight', () => {
  it('exits 1 when a check fails, listing every check with what to do', async () => {
    iam.on(GetRoleCommand).resolves({ Role: { RoleName: 'r', Path: '/', Arn: 'a', RoleId: 'i', CreateDate: new Date() } });
    quotas.on(GetServiceQuotaCommand).resolves({ Quota: { Value: 0 } });
    lambda.on(GetAccountSettingsCommand).resolves({ AccountLimit: { ConcurrentExecutions: 1000 } });
    const { code, out } = await run('aws', 'preflight', '--region', 'us-east-1');
    expect(code).toBe(1);
    expect(out).toMatch(/^ok {4}service-linked role AWSServiceRoleForECS exists$/m);
    expect(out).toMatch(/^FAIL {2}GPU quota "Running On-Demand G and VT instances" in us-east-1 is 0 vCPUs/m);
    expect(out).toMatch(/^ {6}-> aws service-quotas request-service-quota-increase --service-code ec2 --quota-code L-DB2E81BA --desired-value 8 --region us-east-1$/m);
    expect(out).toMatch(/^skip {2}models: bucket unknown$/m);
  });

  it('exits 0 when nothing fails, and answers JSON on request', async () => {
    iam.on(GetRoleCommand).resolves({ Role: { RoleName: 'r', Path: '/', Arn: 'a', RoleId: 'i', CreateDate: new Date() } });
    quotas.on(GetServiceQuotaCommand).resolves({ Quota: { Value: 64 } });
    lambda.on(GetAccountSettingsCommand).resolves({ AccountLimit: { ConcurrentExecutions: 1000 } });
    const { code, out } = await run('aws', 'preflight', '--region', 'us-east-1', '--json');
    expect(code).toBe(0);
    const report = JSON.parse(out);
    expect(report.region).toBe('us-east-1');
    expect(report.checks.map((c: { status: string }) => c.status).filter((s: string) => s === 'fail')).toEqual([]);
  });

  it('refuses an unknown subcommand with exit 2', async () => {
    const { code, err } = await run('aws', 'deploy');
    expect(code).toBe(2);
    expect(err).toMatch(/give a subcommand: preflight/);
  });
});
