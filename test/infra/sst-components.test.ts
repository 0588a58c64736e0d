/**
 * What SST makes of our arguments: the real SST Bucket, Queue, Dynamo, Router, Secret and
 * Linkable from the generated platform (.sst/platform, made by `npm run infra:install`), built
 * with the argument builders from infra/ under Pulumi mocks.
 *
 * stack.test.ts checks the arguments we pass; this file checks the SST semantics those
 * assertions lean on: that a Bucket without `access` blocks all public access, that
 * `dlq.retry` becomes the redrive policy's maxReceiveCount, that the counters table is
 * on-demand with the adapters' key and TTL, that the Router's WAF blocks a client address
 * past our rate with a 429 in front of the distribution, that infra/links.ts really removes
 * the sqs, s3 and dynamodb wildcard grants a link carries, and that `sst.Linkable.env`
 * produces variables that the `Resource` object of the sst SDK (what the runner imports)
 * reads back.
 *
 * The components run in a child process bundled like a deploy (see sst-platform-probe.ts).
 * The platform is generated, not committed: without it this file is skipped with a notice;
 * `npm run test:infra` installs it and sets AMDM_REQUIRE_SST_PLATFORM=1, which turns the skip
 * into a failure. (Function is not here: it needs the SST CLI's build server.)
 */
import { execFile } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { build } from 'esbuild';
import { beforeAll, describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../../', import.meta.url));
const platform = `${root}.sst/platform/`;
const available = existsSync(`${platform}src/components/aws/bucket.ts`) && existsSync(`${platform}node_modules/@pulumi/aws`);
const required = process.env.AMDM_REQUIRE_SST_PLATFORM === '1';

if (!available && required) {
  throw new Error(`SST platform missing at ${platform}; run \`npm run infra:install\` first`);
}
if (!available) {
  console.warn(`sst-components.test.ts skipped: no SST platform at ${platform} (npm run infra:install generates it)`);
}

interface Probe {
  registered: { type: string; name: string; inputs: any; provider?: string }[];
  facts: any;
}

describe.skipIf(!available)('real SST components with our arguments', () => {
  let probe: Probe;
  const of = (type: string) => probe.registered.filter((r) => r.type === type);
  const queue = (name: string) => of('aws:sqs/queue:Queue').find((q) => q.name === name)!;

  beforeAll(async () => {
    const outfile = `${platform}amdm-probe-${process.pid}.mjs`;
    try {
      await build({
        entryPoints: [fileURLToPath(new URL('./sst-platform-probe.ts', import.meta.url))],
        outfile,
        bundle: true,
        format: 'esm',
        platform: 'node',
        target: 'node20',
        // As SST's own config build: the Pulumi packages stay external and resolve from the
        // platform's node_modules, because the output sits in .sst/platform.
        external: ['@pulumi/*', '@aws-sdk/*', 'esbuild', 'archiver', 'glob'],
        banner: { js: "import { createRequire } from 'module'; const require = createRequire(import.meta.url);" },
        logLevel: 'error',
      });
      const { stdout } = await promisify(execFile)(process.execPath, [outfile], {
        cwd: root,
        env: { ...process.env, SST_SECRET_KeyPepper: 'pepper-test', SST_SECRET_WebhookSigningSecret: 'whsec_dGVzdA==' },
        timeout: 60_000,
        maxBuffer: 64 * 1024 * 1024,
      });
      probe = JSON.parse(stdout.trim().split('\n').at(-1)!);
    } finally {
      rmSync(outfile, { force: true });
    }
  });

  it('builds a bucket whose public access block blocks everything', () => {
    const blocks = of('aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock');
    expect(blocks).toHaveLength(1);
    expect(blocks[0]!.inputs).toMatchObject({
      blockPublicAcls: true,
      blockPublicPolicy: true,
      ignorePublicAcls: true,
      restrictPublicBuckets: true,
    });
  });

  it('allows no one in through the bucket policy; its only statement denies plain HTTP', () => {
    const statements = of('aws:s3/bucketPolicy:BucketPolicy').flatMap((p) => JSON.parse(p.inputs.policy).Statement);
    expect(statements.filter((s: any) => s.Effect === 'Allow')).toEqual([]);
    expect(statements.some((s: any) => s.Effect === 'Deny' && JSON.stringify(s.Condition).includes('aws:SecureTransport'))).toBe(true);
  });

  it('turns our CORS arguments into one GET/PUT rule for the given origin', () => {
    const [cors, ...more] = of('aws:s3/bucketCorsConfiguration:BucketCorsConfiguration');
    expect(more).toEqual([]);
    expect(cors!.inputs.corsRules).toHaveLength(1);
    expect(cors!.inputs.corsRules[0]).toMatchObject({
      allowedMethods: ['GET', 'PUT'],
      allowedOrigins: ['https://api.amdm.test'],
      maxAgeSeconds: 3600,
    });
  });

  it('leaves the bucket with one lifecycle configuration: ours, expiring by tag', () => {
    const lifecycles = of('aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration');
    expect(lifecycles.map((l) => l.name)).toEqual(['StoreExpiry']);
    expect(lifecycles[0]!.inputs.rules[0]).toMatchObject({ filter: { tag: { key: 'amdm-expire' } }, expiration: { days: 7 } });
  });

  it('gives the job queue a redrive policy with maxReceiveCount 3 into the job DLQ', () => {
    const jobs = queue('JobQueueQueue');
    expect(JSON.parse(jobs.inputs.redrivePolicy)).toEqual({ deadLetterTargetArn: probe.facts.jobDeadLettersArn, maxReceiveCount: 3 });
    expect(jobs.inputs.visibilityTimeoutSeconds).toBe(120);
    const dlq = queue('JobDeadLettersQueue');
    expect(dlq.inputs.redrivePolicy).toBeUndefined();
    expect(dlq.inputs.messageRetentionSeconds).toBe(14 * 24 * 3600);
  });

  it('gives the webhook queue its own DLQ', () => {
    const webhooks = queue('WebhookQueueQueue');
    expect(JSON.parse(webhooks.inputs.redrivePolicy).deadLetterTargetArn).toBe(probe.facts.webhookDeadLettersArn);
    expect(probe.facts.webhookDeadLettersArn).not.toBe(probe.facts.jobDeadLettersArn);
  });

  it('makes the counters table on demand, keyed by pk, with TTL on expires_at (what the adapters read and write)', () => {
    const [table, ...more] = of('aws:dynamodb/table:Table').filter((t) => t.name === 'CountersTable');
    expect(more).toEqual([]);
    expect(table!.inputs).toMatchObject({
      billingMode: 'PAY_PER_REQUEST',
      hashKey: 'pk',
      attributes: [{ name: 'pk', type: 'S' }],
      ttl: { attributeName: 'expires_at', enabled: true },
    });
  });

  it('puts WAF in front of the Router: a CLOUDFRONT web ACL in us-east-1 blocking an address past our rate with a 429, on the distribution', () => {
    const [acl, ...more] = of('aws:wafv2/webAcl:WebAcl');
    expect(more).toEqual([]);
    expect(acl!.inputs.scope).toBe('CLOUDFRONT');
    expect(acl!.inputs.defaultAction).toEqual({ allow: {} });
    // our rule alone: no managed rule groups
    expect(acl!.inputs.rules).toHaveLength(1);
    expect(acl!.inputs.rules[0]).toMatchObject({
      name: 'RateLimitPerIP',
      statement: { rateBasedStatement: { aggregateKeyType: 'IP', limit: 1234 } },
      action: { block: { customResponse: { responseCode: 429, customResponseBodyKey: 'rate-limited', responseHeaders: [{ name: 'retry-after', value: '60' }] } } },
    });
    expect(acl!.inputs.customResponseBodies.map((b: any) => b.key)).toEqual(['rate-limited']);
    // a CLOUDFRONT web ACL exists only in us-east-1, whatever the stack's region
    const provider = of('pulumi:providers:aws').find((p) => acl!.provider?.includes(`::${p.name}::`));
    expect(provider?.inputs.region).toBe('us-east-1');
    const [distribution] = of('aws:cloudfront/distribution:Distribution');
    expect(distribution!.inputs.webAclId).toBe('arn:aws:wafv2:us-east-1:123456789012:global/webacl/amdm-test-apiwaf/1a2b3c');
  });

  it('links grant sqs:* and dynamodb:* by default, and grant nothing after infra/links.ts', () => {
    expect(probe.facts.defaultInclude.flatMap((p: any) => p.actions)).toEqual(['sqs:*']);
    expect(probe.facts.defaultTableInclude.flatMap((p: any) => p.actions)).toEqual(['dynamodb:*']);
    expect(probe.facts.include).toEqual([]);
  });

  it('writes link variables that the sst SDK Resource reads back', async () => {
    const env = probe.facts.env as Record<string, string>;
    expect(Object.keys(env).sort()).toEqual([
      'SST_RESOURCE_App',
      'SST_RESOURCE_Counters',
      'SST_RESOURCE_JobDeadLetters',
      'SST_RESOURCE_JobQueue',
      'SST_RESOURCE_Store',
      'SST_RESOURCE_WebhookQueue',
    ]);
    // The runner's secret arrives as its own variable (from SSM, infra/gpu.ts); the same key.
    const secret = probe.facts.secretEnv.SST_RESOURCE_WebhookSigningSecret;
    const saved = { ...process.env };
    Object.assign(process.env, env, { SST_RESOURCE_WebhookSigningSecret: secret });
    try {
      const { Resource } = (await import('sst')) as any;
      expect(Resource.JobQueue.url).toBe(probe.facts.jobQueueUrl);
      expect(Resource.WebhookQueue.url).toBe(probe.facts.webhookQueueUrl);
      expect(Resource.Store.name).toBe(probe.facts.bucketName);
      expect(Resource.JobDeadLetters.url).toBe(probe.facts.jobDeadLettersUrl);
      expect(Resource.Counters.name).toBe(probe.facts.countersName);
      expect(Resource.WebhookSigningSecret.value).toBe('whsec_dGVzdA==');
      expect(Resource.App).toEqual({ name: 'amdm', stage: 'test' });
    } finally {
      process.env = saved;
    }
  });
});
