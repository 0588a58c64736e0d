/**
 * Runs inside a child process, bundled the way `sst deploy` bundles sst.config.ts: esbuild
 * with @pulumi/* left external and the output placed in .sst/platform/, so the Pulumi SDK and
 * AWS provider are the platform's own copies, as in a deploy. (Loading SST components into
 * the test process would mix two copies of the Pulumi SDK in one engine, which fails.)
 *
 * It builds the storage, queue and counters areas and the Router with the real SST components
 * under Pulumi mocks and prints, as one JSON line, every registered resource (with the provider
 * it was given) plus the link facts the test checks.
 */
import * as pulumi from '@pulumi/pulumi';
import { Bucket } from '../../.sst/platform/src/components/aws/bucket.ts';
import { Dynamo } from '../../.sst/platform/src/components/aws/dynamo.ts';
import { Queue } from '../../.sst/platform/src/components/aws/queue.ts';
import { Router } from '../../.sst/platform/src/components/aws/router.ts';
import { Secret } from '../../.sst/platform/src/components/secret.ts';
import { Linkable } from '../../.sst/platform/src/components/linkable.ts';
import { Link } from '../../.sst/platform/src/components/link.ts';

Object.assign(globalThis, {
  sst: { aws: { Bucket, Queue, Dynamo, Router }, Secret, Linkable },
  $app: { name: 'amdm', stage: 'test', removal: 'remove', protect: false, providers: {} },
  $dev: false,
  $cli: { command: 'deploy', dev: false, paths: { root: process.cwd(), work: '.sst', platform: '.sst/platform' } },
});

const registered: { type: string; name: string; inputs: Record<string, unknown>; provider?: string }[] = [];
pulumi.runtime.setMocks(
  {
    newResource(args) {
      registered.push({ type: args.type, name: args.name, inputs: args.inputs, ...(args.provider ? { provider: args.provider } : {}) });
      const physical = `amdm-test-${args.name.toLowerCase()}`;
      const isQueue = args.type === 'aws:sqs/queue:Queue';
      const isTable = args.type === 'aws:dynamodb/table:Table';
      const isWebAcl = args.type === 'aws:wafv2/webAcl:WebAcl';
      return {
        id: `${args.name}-id`,
        state: {
          ...args.inputs,
          name: physical,
          bucket: physical,
          arn: isQueue
            ? `arn:aws:sqs:us-east-1:123456789012:${physical}`
            : isTable
              ? `arn:aws:dynamodb:us-east-1:123456789012:table/${physical}`
              : isWebAcl
                ? `arn:aws:wafv2:us-east-1:123456789012:global/webacl/${physical}/1a2b3c`
                : `arn:aws:s3:::${physical}`,
          url: `https://sqs.us-east-1.amazonaws.com/123456789012/${physical}`,
        },
      };
    },
    call(args) {
      // The provider renders policy documents; render the statements SST asks for the same
      // way (IAM's JSON field names), so the bucket policy can be read as AWS would get it.
      if (args.token === 'aws:iam/getPolicyDocument:getPolicyDocument') {
        const statements = (args.inputs.statements ?? []).map((s: any) => ({
          Effect: s.effect ?? 'Allow',
          Action: s.actions,
          Resource: s.resources,
          ...(s.principals ? { Principal: Object.fromEntries(s.principals.map((p: any) => [p.type, p.identifiers])) } : {}),
          ...(s.conditions
            ? { Condition: Object.fromEntries(s.conditions.map((c: any) => [c.test, { [c.variable]: c.values }])) }
            : {}),
        }));
        return { json: JSON.stringify({ Version: '2012-10-17', Statement: statements }) };
      }
      return args.inputs;
    },
  },
  'amdm',
  'test',
  false,
);

const resolve = <T>(o: pulumi.Input<T>) => new Promise<T>((r) => pulumi.output(o).apply((v) => r(v as T)));

const { bucketArgs, createExpiryRules } = await import('../../infra/storage.ts');
const { createQueues } = await import('../../infra/queues.ts');
const { linksCarryNoPermissions } = await import('../../infra/links.ts');
const { createCounters } = await import('../../infra/counters.ts');
const { createRouter } = await import('../../infra/edge.ts');

let facts: Record<string, unknown> = {};
await pulumi.runtime.runInPulumiStack(async () => {
  // SST's per-deploy link bookkeeping, as its run() does before the program.
  Link.reset();
  const probe = new Queue('Probe');
  const defaultInclude = await resolve(Link.getInclude('aws.permission', [probe]));
  const probeTable = new Dynamo('ProbeTable', { fields: { id: 'string' }, primaryIndex: { hashKey: 'id' } });
  const defaultTableInclude = await resolve(Link.getInclude('aws.permission', [probeTable]));
  linksCarryNoPermissions();
  const bucket = new Bucket('Store', bucketArgs({ corsOrigins: ['https://api.amdm.test'] }));
  createExpiryRules('StoreExpiry', bucket.name, 7);
  const queues = createQueues();
  const counters = createCounters();
  // what sst.config.ts builds from AMDM_WAF_RATE_PER_IP
  createRouter({ rateLimitPerIp: 1234 });
  // Set by the test as `sst secret set` would; SST reads it when the Secret is constructed.
  const { createSecrets } = await import('../../infra/secrets.ts');
  const secrets = createSecrets();
  facts = {
    secretEnv: await resolve(Linkable.env([secrets.webhookSigningSecret])),
    defaultInclude,
    defaultTableInclude,
    include: await resolve(Link.getInclude('aws.permission', [bucket, queues.jobs, queues.webhooks, counters])),
    env: await resolve(Linkable.env([bucket, queues.jobs, queues.jobDeadLetters, queues.webhooks, counters])),
    countersName: await resolve(counters.name),
    jobDeadLettersArn: await resolve(queues.jobDeadLetters.arn),
    jobDeadLettersUrl: await resolve(queues.jobDeadLetters.url),
    webhookDeadLettersArn: await resolve(queues.webhookDeadLetters.arn),
    jobQueueUrl: await resolve(queues.jobs.url),
    webhookQueueUrl: await resolve(queues.webhooks.url),
    bucketName: await resolve(bucket.name),
  };
});
// Let registrations started inside applies finish.
for (let i = 0, last = -1; i < 20; i++) {
  await new Promise((r) => setTimeout(r, 10));
  if (registered.length === last) break;
  last = registered.length;
}
process.stdout.write(`${JSON.stringify({ registered, facts })}\n`);
// Pulumi's leak detector overrides the exit code for promises the mock engine leaves behind.
process.removeAllListeners('exit');
process.exit(0);
