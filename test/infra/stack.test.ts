/**
 * The whole stack, built offline: the real sst.config.ts and infra/ run under Pulumi mocks.
 *
 * How the SST parts are tested honestly: SST components need the SST CLI at deploy time
 * (Function bundles through it, Router deploys CloudFront code), so here the `sst` global is a
 * shim (sst-shim.ts) whose components record the arguments our code passes; assertions on
 * those arguments are assertions on our code. The raw Pulumi parts (the GPU fleet, scaling,
 * IAM roles, lifecycle rules) are real @pulumi/aws resources, so their inputs are read from
 * the mocked engine exactly as AWS would receive them. sst-components.test.ts then runs the
 * real SST Bucket, Queue and Linkable with the same arguments, to check what SST makes of them.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatModelCatalog } from '../../shared/model-catalog.ts';
import { MockStack, resolve, GPU_AMI_ID, ACCOUNT_ID, REGION, ZONES } from './pulumi-mocks.ts';
import { component, installSstShim, LINK_ENV_MARKER, linkEnvCalls, ShimBucket, ShimDynamo, ShimQueue } from './sst-shim.ts';
import { COUNTERS_KEY, COUNTERS_TTL_ATTRIBUTE } from '../../adapters/aws/counters-table.ts';
import { actionsAllowed, parsePolicy } from './policy.ts';

const mocks = new MockStack();
installSstShim('prod');

const root = fileURLToPath(new URL('../../', import.meta.url));
/** The catalog this deploy bundles: written as `npm run models:catalog` writes one. */
const catalogDir = mkdtempSync(join(tmpdir(), 'amdm-stack-catalog-'));
const catalogFile = join(catalogDir, 'catalog.json');
writeFileSync(
  catalogFile,
  formatModelCatalog({
    models: ['shapes-base', 'shapes-style'].map((id) => ({
      id,
      description: '',
      ecosystem: 'shapes-v1',
      latent: { channels: 4, vae_scale_factor: 4 },
      sizes: { default: [32, 32] as [number, number], min: 32, max: 64, multiple: 8 },
      conditions: { prompt: { max_tokens: 75 }, grounding: null, reference_image: null },
      schedulers: ['ddim', 'euler'] as ('ddim' | 'euler')[],
    })),
    modelsChecksumsSha256: null,
  }),
);
afterAll(() => rmSync(catalogDir, { recursive: true, force: true }));

const env = {
  AMDM_GPU_INSTANCE_TYPES: 'g6.xlarge,g5.xlarge',
  AMDM_MAX_TASKS: '4',
  AMDM_MIN_TASKS: '1',
  AMDM_START_TIMEOUT_MINUTES: '25',
  AMDM_ALERT_EMAIL: 'ops@amdm.test',
  AMDM_ALERT_TOPIC_ARN: 'arn:aws:sns:us-east-1:123456789012:pager',
  AMDM_IDLE_MINUTES: '20',
  AMDM_RETENTION_DAYS: '9',
  AMDM_TARGET_BACKLOG_PER_TASK: '2',
  AMDM_RUNNER_IMAGE_TAG: 'abc1234',
  AMDM_CORS_ORIGINS: 'http://localhost:5173',
  AMDM_MAX_WAIT_SECONDS: '45',
  AMDM_WAF_RATE_PER_IP: '3000',
  // relative to the project root, as SST's copyFiles requires
  AMDM_MODEL_CATALOG: relative(root, catalogFile),
};

let outputs: Record<string, unknown>;

beforeAll(async () => {
  const saved = { ...process.env };
  Object.assign(process.env, env);
  try {
    const config = (await import('../../sst.config.ts')).default as unknown as { run(): Promise<Record<string, unknown>> };
    outputs = await mocks.run(() => config.run());
  } finally {
    process.env = saved;
  }
});

const raw = (type: string, name?: string) => mocks.one(type, name);

describe('storage', () => {
  it('is an SST Bucket left private: no public access mode, no public flag, public access block kept', () => {
    const args = component('sst:aws:Bucket', 'Store').args;
    expect(args).not.toHaveProperty('access');
    expect(args).not.toHaveProperty('public');
    expect(args.transform?.publicAccessBlock).not.toBe(false);
    expect(args.enforceHttps).toBe(true);
  });

  it('allows GET and PUT from the Router origin and the configured extra origins only', async () => {
    const cors = component('sst:aws:Bucket', 'Store').args.cors;
    expect(cors.allowMethods).toEqual(['GET', 'PUT']);
    expect(await resolve(cors.allowOrigins)).toEqual(['https://d1234abcd.cloudfront.net', 'http://localhost:5173']);
  });

  it('expires objects tagged as job outputs after the stage retention, and nothing untagged', () => {
    const lifecycle = raw('aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration');
    expect(lifecycle.inputs.bucket).toBe('amdm-test-store');
    const expiring = lifecycle.inputs.rules.filter((r: any) => r.expiration);
    expect(expiring).toHaveLength(1);
    expect(expiring[0]).toMatchObject({
      status: 'Enabled',
      filter: { tag: { key: 'amdm-expire', value: 'job-output' } },
      expiration: { days: 9 },
    });
  });
});

describe('the Router\'s WAF', () => {
  const router = () => component('sst:aws:Router', 'Api').args;

  it('blocks a client address past the stage\'s rate in 5 minutes, with no managed rule groups', () => {
    expect(router().waf).toEqual({ rateLimitPerIp: 3000, managedRules: { coreRuleSet: false, knownBadInputs: false, sqlInjection: false } });
  });

  it('answers a blocked client 429 with Retry-After and a problem body, not WAF\'s bare 403', async () => {
    // the web ACL SST's Router builds with our rateLimitPerIp (router.ts createWaf)
    const acl: any = {
      scope: 'CLOUDFRONT',
      defaultAction: { allow: {} },
      rules: [{ name: 'RateLimitPerIP', priority: 0, action: { block: {} }, statement: { rateBasedStatement: { limit: 3000, aggregateKeyType: 'IP' } }, visibilityConfig: {} }],
      visibilityConfig: {},
    };
    router().transform.waf(acl, {}, 'ApiWaf');
    const [rule] = await resolve<any[]>(acl.rules);
    expect(rule.statement).toEqual({ rateBasedStatement: { limit: 3000, aggregateKeyType: 'IP' } });
    expect(rule.action).toEqual({
      block: { customResponse: { responseCode: 429, customResponseBodyKey: 'rate-limited', responseHeaders: [{ name: 'retry-after', value: '60' }] } },
    });
    expect(acl.customResponseBodies).toHaveLength(1);
    const body = acl.customResponseBodies[0];
    expect(body).toMatchObject({ key: 'rate-limited', contentType: 'APPLICATION_JSON' });
    expect(JSON.parse(body.content)).toMatchObject({ type: 'urn:amdm:problem:rate-limited', status: 429 });
  });
});

describe('counters table', () => {
  it('is one on-demand DynamoDB table keyed as the adapters read it, with their TTL attribute', () => {
    const args = component('sst:aws:Dynamo', 'Counters').args;
    expect(args).toEqual({ fields: { [COUNTERS_KEY]: 'string' }, primaryIndex: { hashKey: COUNTERS_KEY }, ttl: COUNTERS_TTL_ATTRIBUTE });
    expect([COUNTERS_KEY, COUNTERS_TTL_ATTRIBUTE]).toEqual(['pk', 'expires_at']);
  });

  it('grants nothing by being linked (SST would grant dynamodb:* on it)', () => {
    const link = (component('sst:aws:Function', 'Edge').args.link as any[]).find((l) => l instanceof ShimDynamo)!;
    expect(link.getSSTLink()).toEqual({ properties: { name: link.name } });
  });
});

describe('queues', () => {
  it('dead-letters a job after 3 receives, into its own DLQ', async () => {
    const jobs = component('sst:aws:Queue', 'JobQueue').args;
    expect(jobs.dlq.retry).toBe(3);
    expect(await resolve(jobs.dlq.queue)).toBe(`arn:aws:sqs:${REGION}:${ACCOUNT_ID}:amdm-test-jobdeadletters`);
    expect(jobs.visibilityTimeout).toBe('120 seconds');
  });

  it('gives the webhook outbox its own DLQ', async () => {
    const webhooks = component('sst:aws:Queue', 'WebhookQueue').args;
    expect(await resolve(webhooks.dlq.queue)).toBe(`arn:aws:sqs:${REGION}:${ACCOUNT_ID}:amdm-test-webhookdeadletters`);
    expect(webhooks.dlq.retry).toBeGreaterThan(1);
  });
});

describe('edge', () => {
  const edge = () => component('sst:aws:Function', 'Edge').args;

  it('runs edge/lambda.handler with response streaming behind the Router', async () => {
    expect(edge().handler).toBe('edge/lambda.handler');
    expect(edge().streaming).toBe(true);
    const router = edge().url.router.instance;
    expect(await resolve(router.urn)).toMatch(/sst:aws:Router::Api$/);
    // SSE streams idle between events; CloudFront's longest origin read timeout.
    expect(edge().url.router.readTimeout).toBe('60 seconds');
  });

  it('caps Prefer: wait (the stage parameter) so that the cap plus the margin ends before the origin read timeout', async () => {
    const { PREFER_WAIT_MARGIN_SECONDS, ORIGIN_READ_TIMEOUT_SECONDS } = await import('../../infra/edge.ts');
    const cap = Number(edge().environment.AMDM_MAX_WAIT_SECONDS);
    expect(cap).toBe(45);
    const readTimeout = Number(/^(\d+) seconds$/.exec(edge().url.router.readTimeout)![1]);
    expect(readTimeout).toBe(ORIGIN_READ_TIMEOUT_SECONDS);
    expect(cap + PREFER_WAIT_MARGIN_SECONDS).toBeLessThan(readTimeout);
    // and the default does too: the largest cap a stage may set
    const { DEFAULT_PARAMS, readStageParams } = await import('../../infra/params.ts');
    expect(DEFAULT_PARAMS.maxWaitSeconds + PREFER_WAIT_MARGIN_SECONDS).toBeLessThan(readTimeout);
    expect(() => readStageParams({ AMDM_MAX_WAIT_SECONDS: String(readTimeout - PREFER_WAIT_MARGIN_SECONDS) })).toThrow(/AMDM_MAX_WAIT_SECONDS=52 is out of range; allowed: 1\.\.51/);
  });

  it('names a handler file that exports `handler`', () => {
    const [file, exported] = (edge().handler as string).split('.');
    const source = readFileSync(join(root, `${file}.ts`), 'utf8');
    expect(source).toMatch(new RegExp(`export const ${exported} = streamHandle\\(`));
  });

  it('links the bucket, the job queue, the key pepper and the counters table, and nothing else (not the webhook secret)', () => {
    const linked = edge().link as any[];
    expect(linked.map((l) => l.constructor.name).sort()).toEqual(['Bucket', 'Dynamo', 'Queue', 'Secret']);
    expect(linked.find((l) => l instanceof ShimDynamo)!.logicalName).toBe('Counters');
    const queue = linked.find((l) => l instanceof ShimQueue)!;
    expect(queue.args).toBe(component('sst:aws:Queue', 'JobQueue').args);
    expect(linked.find((l) => l.constructor.name === 'Secret').logicalName).toBe('KeyPepper');
  });

  it('bundles the model catalog at the root of the function package, and knows the public URL', async () => {
    expect(edge().copyFiles).toEqual([{ from: relative(root, catalogFile), to: 'model-catalog.json' }]);
    expect(join(root, edge().copyFiles[0].from)).toBe(catalogFile);
    expect(await resolve(edge().environment.PUBLIC_BASE_URL)).toBe('https://d1234abcd.cloudfront.net');
    expect(await resolve(outputs.models as any)).toBe('shapes-base,shapes-style');
  });

  it('refuses to deploy without a catalog, naming the file and the command that writes it', async () => {
    const { createEdge } = await import('../../infra/edge.ts');
    expect(() =>
      createEdge({ router: {} as never, bucketArn: 'b', jobQueueArn: 'q', countersTableArn: 't', maxWaitSeconds: 50, link: [], publicBaseUrl: 'https://x', modelCatalog: 'no/such/catalog.json', projectRoot: root }),
    ).toThrow(/no model catalog at .*no\/such\/catalog\.json.*npm run models:catalog/);
  });

  it('gets no implicit permissions from its links (they would grant sqs:*, s3:* and dynamodb:*)', () => {
    for (const link of edge().link as any[]) {
      if (link instanceof ShimBucket || link instanceof ShimQueue || link instanceof ShimDynamo) {
        expect(link.getSSTLink().include ?? []).toEqual([]);
      }
    }
  });

  it('may send to the job queue and read its attributes, but never receive or delete', async () => {
    const permissions = await resolve<any[]>(edge().permissions);
    const doc = parsePolicy({
      Version: '2012-10-17',
      Statement: permissions.map((p) => ({ Effect: p.effect === 'deny' ? 'Deny' : 'Allow', Action: p.actions, Resource: p.resources })),
    });
    const jobQueue = `arn:aws:sqs:${REGION}:${ACCOUNT_ID}:amdm-test-jobqueue`;
    expect(actionsAllowed(doc, jobQueue).sort()).toEqual(['sqs:GetQueueAttributes', 'sqs:SendMessage']);
    for (const forbidden of ['sqs:ReceiveMessage', 'sqs:DeleteMessage', 'sqs:ChangeMessageVisibility', 'sqs:PurgeQueue']) {
      expect(actionsAllowed(doc, jobQueue)).not.toContain(forbidden);
    }
  });

  it('may read and conditionally update the counters table, and nothing else there (no delete, scan or put)', async () => {
    const permissions = await resolve<any[]>(edge().permissions);
    const doc = parsePolicy({
      Version: '2012-10-17',
      Statement: permissions.map((p) => ({ Effect: p.effect === 'deny' ? 'Deny' : 'Allow', Action: p.actions, Resource: p.resources })),
    });
    const table = `arn:aws:dynamodb:${REGION}:${ACCOUNT_ID}:table/amdm-test-counters`;
    expect(actionsAllowed(doc, table).sort()).toEqual(['dynamodb:GetItem', 'dynamodb:UpdateItem']);
    // and on no other table
    expect(actionsAllowed(doc, `arn:aws:dynamodb:${REGION}:${ACCOUNT_ID}:table/other`)).toEqual([]);
  });

  it('reaches S3 only under apikeys/ (read) and tenants/ (read, write, list)', async () => {
    const permissions = await resolve<any[]>(edge().permissions);
    const s3 = permissions.filter((p) => p.actions.some((a: string) => a.startsWith('s3:')));
    const resources = s3.flatMap((p) => p.resources);
    expect(resources.sort()).toEqual([
      'arn:aws:s3:::amdm-test-store',
      'arn:aws:s3:::amdm-test-store/apikeys/*',
      'arn:aws:s3:::amdm-test-store/tenants/*',
      'arn:aws:s3:::amdm-test-store/tenants/*',
    ]);
    const list = s3.find((p) => p.actions.includes('s3:ListBucket'));
    expect(list.resources).toEqual(['arn:aws:s3:::amdm-test-store']);
    const writes = s3.filter((p) => p.actions.includes('s3:PutObject')).flatMap((p) => p.resources);
    expect(writes).toEqual(['arn:aws:s3:::amdm-test-store/tenants/*']);
  });
});

describe('GPU fleet', () => {
  it('has its own cluster with Container Insights', () => {
    expect(raw('aws:ecs/cluster:Cluster').inputs.settings).toContainEqual({ name: 'containerInsights', value: 'enabled' });
  });

  it('launches the ECS GPU-optimized AL2023 AMI, resolved from the public SSM parameter', () => {
    const ami = mocks.calls.find((c) => c.token === 'aws:ssm/getParameter:getParameter');
    expect(ami?.inputs.name).toBe('/aws/service/ecs/optimized-ami/amazon-linux-2023/gpu/recommended/image_id');
    const lt = raw('aws:ec2/launchTemplate:LaunchTemplate').inputs;
    expect(lt.imageId).toBe(GPU_AMI_ID);
    expect(lt.metadataOptions).toMatchObject({ httpTokens: 'required', httpPutResponseHopLimit: 1 });
    const userData = Buffer.from(lt.userData, 'base64').toString();
    expect(userData).toContain('ECS_CLUSTER=gpucluster-mock');
    expect(userData).toContain('ECS_ENABLE_GPU_SUPPORT=true');
  });

  it('scales instances from 0 to max tasks, new instances protected, the desired count left to ECS', () => {
    const asg = raw('aws:autoscaling/group:Group');
    expect(asg.inputs.minSize).toBe(0);
    expect(asg.inputs.maxSize).toBe(4);
    expect(asg.inputs.protectFromScaleIn).toBe(true);
    expect(asg.inputs).not.toHaveProperty('desiredCapacity');
    expect(asg.opts.ignoreChanges).toContain('desiredCapacity');
    expect(asg.inputs.vpcZoneIdentifiers).toHaveLength(3);
    const overrides = asg.inputs.mixedInstancesPolicy.launchTemplate.overrides.map((o: any) => o.instanceType);
    expect(overrides).toEqual(['g6.xlarge', 'g5.xlarge']);
  });

  it('puts the instances in the three first ordinary zones of the region', () => {
    const zones = mocks.ofType('aws:ec2/subnet:Subnet').map((s) => s.inputs.availabilityZone).sort();
    expect(zones).toEqual(ZONES.slice(0, 3));
    const zoneQuery = mocks.calls.find((c) => c.token === 'aws:index/getAvailabilityZones:getAvailabilityZones');
    expect(zoneQuery?.inputs.filters).toEqual([{ name: 'opt-in-status', values: ['opt-in-not-required'] }]);
  });

  it('attaches a capacity provider with managed scaling and managed termination protection', () => {
    const cp = raw('aws:ecs/capacityProvider:CapacityProvider').inputs.autoScalingGroupProvider;
    expect(cp.managedTerminationProtection).toBe('ENABLED');
    expect(cp.managedScaling.status).toBe('ENABLED');
    expect(cp.autoScalingGroupArn).toContain('gpuinstances-mock');
    const attached = raw('aws:ecs/clusterCapacityProviders:ClusterCapacityProviders').inputs;
    expect(attached.capacityProviders).toEqual(['gpucapacity-mock']);
  });

  const container = () => {
    const td = raw('aws:ecs/taskDefinition:TaskDefinition').inputs;
    const [first, ...others] = JSON.parse(td.containerDefinitions);
    expect(others).toEqual([]);
    return { td, container: first, env: Object.fromEntries(first.environment.map((e: any) => [e.name, e.value])) };
  };

  it('defines a runner task on EC2 that requests one GPU and logs to CloudWatch', () => {
    const { td, container: c } = container();
    expect(td.requiresCompatibilities).toEqual(['EC2']);
    expect(c.resourceRequirements).toEqual([{ type: 'GPU', value: '1' }]);
    expect(c.image).toBe(`${ACCOUNT_ID}.dkr.ecr.${REGION}.amazonaws.com/runnerimages-mock:abc1234`);
    expect(c.logConfiguration.logDriver).toBe('awslogs');
    expect(c.logConfiguration.options['awslogs-group']).toBe('/amdm/prod/runner');
    // EC2 has no 120 s ceiling (that is Fargate's): long enough for a running job to finish
    expect(c.stopTimeout).toBe(600);
  });

  it('wires the runner to its resources through SST_RESOURCE_* variables from sst.Linkable.env', () => {
    const { env } = container();
    expect(env[LINK_ENV_MARKER]).toBe('1');
    expect(linkEnvCalls[0]!.map((l: any) => l.logicalName).sort()).toEqual(['Counters', 'JobDeadLetters', 'JobQueue', 'Store', 'WebhookQueue']);
    expect(JSON.parse(env.SST_RESOURCE_JobQueue)).toEqual({ url: `https://sqs.${REGION}.amazonaws.com/${ACCOUNT_ID}/amdm-test-jobqueue` });
    expect(JSON.parse(env.SST_RESOURCE_Store)).toEqual({ name: 'amdm-test-store' });
    // where it releases the slots of finished jobs, by name only (no dynamodb:* from the link)
    expect(JSON.parse(env.SST_RESOURCE_Counters)).toEqual({ name: 'amdm-test-counters' });
  });

  it('configures the runner to agree with the stack: AWS mode, CUDA, lease, receive limit, drain, public URL', () => {
    const { env } = container();
    expect(env).toMatchObject({
      AMDM_MODE: 'aws',
      ORT_PROVIDER: 'cuda',
      RUNNER_VISIBILITY_SECONDS: '120',
      AMDM_MAX_RECEIVES: '3',
      PUBLIC_BASE_URL: 'https://d1234abcd.cloudfront.net',
      AWS_REGION: REGION,
    });
    expect(Number(env.RUNNER_GRACE_SECONDS)).toBeLessThan(container().container.stopTimeout);
    // the release of an unfinished job and the cleanup fit between the grace period and the kill
    expect(container().container.stopTimeout - Number(env.RUNNER_GRACE_SECONDS)).toBeGreaterThanOrEqual(60);
    expect(env.AMDM_MODELS_DIR).toMatch(/^\//);
  });

  it('gives the runner no secret at all: it enqueues webhooks and never signs them', () => {
    const { td, container: c, env } = container();
    expect(c.secrets).toEqual([]);
    expect(mocks.ofType('aws:ssm/parameter:Parameter')).toEqual([]);
    expect(mocks.ofType('aws:iam/rolePolicy:RolePolicy').map((p) => p.name)).not.toContain('RunnerExecutionSecrets');
    expect(Object.keys(env).filter((k) => /Secret|Pepper/.test(k))).toEqual([]);
    expect(JSON.stringify(td.containerDefinitions)).not.toMatch(/WebhookSigningSecret|KeyPepper/);
  });

  it('keeps the model cache on the instance, shared by the runner tasks it runs', () => {
    const { td, container: c, env } = container();
    expect(td.volumes).toEqual([{ name: 'model-cache', hostPath: '/var/cache/amdm/models' }]);
    expect(c.mountPoints).toEqual([{ sourceVolume: 'model-cache', containerPath: env.AMDM_MODELS_DIR, readOnly: false }]);
    // the host folder exists before any task and belongs to the image's user (gpu-runner/Dockerfile)
    const userData = Buffer.from(raw('aws:ec2/launchTemplate:LaunchTemplate').inputs.userData, 'base64').toString();
    expect(userData).toContain('mkdir -p /var/cache/amdm/models');
    const uid = /useradd[^\n]*--uid (\d+)/.exec(readFileSync(join(root, 'gpu-runner/Dockerfile'), 'utf8'))?.[1];
    expect(uid).toBeDefined();
    expect(userData).toContain(`chown ${uid}:${uid} /var/cache/amdm/models`);
  });

  it('checks the runner\'s health with the liveness file the runner writes', () => {
    const { container: c, env } = container();
    expect(c.healthCheck).toEqual({ command: ['CMD', 'node', 'gpu-runner/aws/healthcheck.mjs'], interval: 30, timeout: 5, retries: 3, startPeriod: 300 });
    // the script exists where the image puts the code (WORKDIR /app, COPY gpu-runner)
    expect(existsSync(join(root, 'gpu-runner/aws/healthcheck.mjs'))).toBe(true);
    // both sides agree on the file: the runner writes AMDM_LIVENESS_FILE, the check reads it
    expect(env.AMDM_LIVENESS_FILE).toBe('/tmp/amdm-runner.alive');
    // failing for interval x retries after the start period: well past the check's 60 s age limit
    expect(c.healthCheck.interval * c.healthCheck.retries).toBeGreaterThan(60);
  });

  it('runs the service on the capacity provider, with the desired count owned by autoscaling', () => {
    const svc = raw('aws:ecs/service:Service');
    expect(svc.inputs.capacityProviderStrategies).toEqual([{ capacityProvider: 'gpucapacity-mock', weight: 1, base: 0 }]);
    expect(svc.inputs).not.toHaveProperty('launchType');
    expect(svc.opts.ignoreChanges).toContain('desiredCount');
  });
});

describe('first deploy into an account that never used ECS', () => {
  const dependsOnNames = async (opts: any) => Promise.all(([opts.dependsOn ?? []].flat() as any[]).map(async (r) => (await resolve<string>(r.urn)).split('::').at(-1)));

  it('creates the ECS, Application Auto Scaling and EC2 Auto Scaling service-linked roles the account lacks', () => {
    const roles = mocks.ofType('aws:iam/serviceLinkedRole:ServiceLinkedRole');
    expect(roles.map((r) => r.inputs.awsServiceName).sort()).toEqual([
      'autoscaling.amazonaws.com',
      'ecs.amazonaws.com',
      'ecs.application-autoscaling.amazonaws.com',
    ]);
    // they belong to the account: removing this stack must not delete them from under others
    for (const role of roles) expect(role.opts.retainOnDelete, role.name).toBe(true);
    // looked up by their documented path, a read that lists nothing when absent
    const lookups = mocks.calls.filter((c) => c.token === 'aws:iam/getRoles:getRoles').map((c) => c.inputs.pathPrefix).sort();
    expect(lookups).toEqual(['/aws-service-role/autoscaling.amazonaws.com/', '/aws-service-role/ecs.amazonaws.com/', '/aws-service-role/ecs.application-autoscaling.amazonaws.com/']);
  });

  it('creates them before the resources whose creation needs them', async () => {
    expect(await dependsOnNames(raw('aws:ecs/cluster:Cluster').opts)).toContain('EcsServiceLinkedRole');
    expect(await dependsOnNames(raw('aws:ecs/capacityProvider:CapacityProvider').opts)).toContain('EcsServiceLinkedRole');
    expect(await dependsOnNames(raw('aws:autoscaling/group:Group').opts)).toContain('Ec2AutoScalingServiceLinkedRole');
    expect(await dependsOnNames(raw('aws:appautoscaling/target:Target').opts)).toContain('EcsAutoScalingServiceLinkedRole');
  });
});

describe('removal of a protected stage', () => {
  it('keeps the waits on prod: no forced deletion of the instances, the service or the images', () => {
    expect(raw('aws:autoscaling/group:Group').inputs.forceDelete).toBe(false);
    expect(raw('aws:ecs/service:Service').inputs.forceDelete).toBe(false);
    expect(raw('aws:ecr/repository:Repository').inputs.forceDelete).toBe(false);
  });
});

describe('scaling', () => {
  const policies = () => mocks.ofType('aws:appautoscaling/policy:Policy');
  const alarms = () => mocks.ofType('aws:cloudwatch/metricAlarm:MetricAlarm');
  const metricNames = (queries: any[]) =>
    queries.flatMap((q) => [q.metric?.metricName, q.metricStat?.metric?.metricName]).filter(Boolean);

  it('lets the service go from the warm pool (min tasks) to max tasks', () => {
    const target = raw('aws:appautoscaling/target:Target').inputs;
    expect(target).toMatchObject({ minCapacity: 1, maxCapacity: 4, scalableDimension: 'ecs:service:DesiredCount' });
    expect(target.resourceId).toBe('service/gpucluster-mock/runnerservice-mock');
  });

  it('tracks (visible + in-flight) jobs per running task', () => {
    const tracking = policies().filter((p) => p.inputs.policyType === 'TargetTrackingScaling');
    expect(tracking).toHaveLength(1);
    const config = tracking[0]!.inputs.targetTrackingScalingPolicyConfiguration;
    expect(config.targetValue).toBe(2);
    const metrics = config.customizedMetricSpecification.metrics;
    expect(metricNames(metrics).sort()).toEqual([
      'ApproximateNumberOfMessagesNotVisible',
      'ApproximateNumberOfMessagesVisible',
      'RunningTaskCount',
    ]);
    const queueDims = metrics
      .filter((m: any) => m.metricStat?.metric.namespace === 'AWS/SQS')
      .map((m: any) => m.metricStat.metric.dimensions);
    expect(queueDims).toEqual([[{ name: 'QueueName', value: 'amdm-test-jobqueue' }], [{ name: 'QueueName', value: 'amdm-test-jobqueue' }]]);
    const byId = Object.fromEntries(metrics.map((m: any) => [m.id, m]));
    const visibleId = metrics.find((m: any) => m.metricStat?.metric.metricName === 'ApproximateNumberOfMessagesVisible').id;
    const inflightId = metrics.find((m: any) => m.metricStat?.metric.metricName === 'ApproximateNumberOfMessagesNotVisible').id;
    const runningId = metrics.find((m: any) => m.metricStat?.metric.metricName === 'RunningTaskCount').id;
    expect(byId.backlog.expression.replace(/\s/g, '')).toBe(`(${visibleId}+${inflightId})/${runningId}`);
    // Exactly one series is returned, and it is built on the backlog expression.
    const returned = metrics.filter((m: any) => m.returnData);
    expect(returned).toHaveLength(1);
    expect(returned[0].expression).toContain('backlog');
  });

  it('starts the first task from zero when any job waits, via a step policy and an alarm', () => {
    const start = policies().find((p) => p.name === 'RunnerStartFromZero')!;
    expect(start.inputs.policyType).toBe('StepScaling');
    expect(start.inputs.stepScalingPolicyConfiguration).toMatchObject({
      adjustmentType: 'ExactCapacity',
      stepAdjustments: [{ metricIntervalLowerBound: '0', scalingAdjustment: 1 }],
    });
    const alarm = alarms().find((a) => a.inputs.alarmActions?.includes(`arn:aws:appautoscaling:${REGION}:${ACCOUNT_ID}:policy/runnerstartfromzero-mock`))!;
    expect(alarm).toBeDefined();
    expect(metricNames(alarm.inputs.metricQueries).sort()).toEqual([
      'ApproximateAgeOfOldestMessage',
      'ApproximateNumberOfMessagesNotVisible',
      'ApproximateNumberOfMessagesVisible',
      'DesiredTaskCount',
    ]);
    expect(alarm.inputs).toMatchObject({ comparisonOperator: 'GreaterThanOrEqualToThreshold', threshold: 1, evaluationPeriods: 1 });
    // jobs that waited through a failed start (older than the start timeout) do not restart it
    const gate = alarm.inputs.metricQueries.find((q: any) => q.returnData);
    const oldestId = alarm.inputs.metricQueries.find((q: any) => q.metric?.metricName === 'ApproximateAgeOfOldestMessage').id;
    expect(gate.expression.replace(/\s/g, '')).toContain(`FILL(${oldestId},0)<${25 * 60}`);
  });

  it('scales to zero after the configured idle minutes with nothing visible or in flight', () => {
    const stop = policies().find((p) => p.name === 'RunnerScaleToZero')!;
    expect(stop.inputs.stepScalingPolicyConfiguration).toMatchObject({
      adjustmentType: 'ExactCapacity',
      stepAdjustments: [{ metricIntervalUpperBound: '0', scalingAdjustment: 0 }],
    });
    const alarm = alarms().find((a) => a.inputs.alarmActions?.includes(`arn:aws:appautoscaling:${REGION}:${ACCOUNT_ID}:policy/runnerscaletozero-mock`))!;
    expect(alarm.inputs).toMatchObject({ comparisonOperator: 'LessThanThreshold', threshold: 1, evaluationPeriods: 20, datapointsToAlarm: 20 });
    expect(metricNames(alarm.inputs.metricQueries).sort()).toEqual([
      'ApproximateNumberOfMessagesNotVisible',
      'ApproximateNumberOfMessagesVisible',
    ]);
    const work = alarm.inputs.metricQueries.find((q: any) => q.returnData);
    expect(work.expression).toMatch(/visible/);
    expect(work.expression).toMatch(/inflight/);
  });
});

describe('a fleet that cannot start', () => {
  const alarms = () => mocks.ofType('aws:cloudwatch/metricAlarm:MetricAlarm');
  const alertTopic = () => raw('aws:sns/topic:Topic', 'Alerts');
  // the mocked provider's ARN for the topic
  const topic = () => `arn:aws:sns:${REGION}:${ACCOUNT_ID}:topic/alerts-mock`;

  it('notifies the operator\'s email and topic', () => {
    expect(alertTopic().inputs.displayName).toBe('AMDM prod');
    const sub = raw('aws:sns/topicSubscription:TopicSubscription').inputs;
    expect(sub).toMatchObject({ protocol: 'email', endpoint: 'ops@amdm.test', topic: topic() });
    // CloudWatch and EventBridge may publish, for this account only
    const policy = JSON.parse(raw('aws:sns/topicPolicy:TopicPolicy').inputs.policy);
    expect(policy.Statement.map((s: any) => s.Principal.Service).sort()).toEqual(['cloudwatch.amazonaws.com', 'events.amazonaws.com']);
    for (const s of policy.Statement) expect(s.Condition).toEqual({ StringEquals: { 'aws:SourceAccount': ACCOUNT_ID } });
  });

  it('alarms when tasks have been wanted for the start timeout with none running, and sets the service to zero', () => {
    const alarm = alarms().find((a) => a.name === 'RunnerNotStartingAlarm')!;
    expect(alarm.inputs).toMatchObject({ comparisonOperator: 'GreaterThanOrEqualToThreshold', threshold: 1, evaluationPeriods: 25, datapointsToAlarm: 25 });
    const byName = Object.fromEntries(alarm.inputs.metricQueries.filter((q: any) => q.metric).map((q: any) => [q.metric.metricName, q]));
    expect(Object.keys(byName).sort()).toEqual(['DesiredTaskCount', 'RunningTaskCount']);
    const expr = alarm.inputs.metricQueries.find((q: any) => q.returnData).expression.replace(/\s/g, '');
    expect(expr).toBe(`IF(FILL(${byName.DesiredTaskCount.id},0)>=1ANDFILL(${byName.RunningTaskCount.id},0)==0,1,0)`);
    const stop = mocks.ofType('aws:appautoscaling/policy:Policy').find((p) => p.name === 'RunnerStopStarting')!;
    expect(stop.inputs.stepScalingPolicyConfiguration).toMatchObject({ adjustmentType: 'ExactCapacity', stepAdjustments: [{ metricIntervalLowerBound: '0', scalingAdjustment: 0 }] });
    expect(alarm.inputs.alarmActions).toEqual([topic(), 'arn:aws:sns:us-east-1:123456789012:pager', `arn:aws:appautoscaling:${REGION}:${ACCOUNT_ID}:policy/runnerstopstarting-mock`]);
  });

  it('alarms when a job has waited an hour, whatever the reason', () => {
    const alarm = alarms().find((a) => a.name === 'JobsWaitingAlarm')!;
    expect(alarm.inputs).toMatchObject({ metricName: 'ApproximateAgeOfOldestMessage', namespace: 'AWS/SQS', threshold: 3600, comparisonOperator: 'GreaterThanThreshold' });
    expect(alarm.inputs.dimensions).toEqual({ QueueName: 'amdm-test-jobqueue' });
    expect(alarm.inputs.alarmActions).toContain(topic());
  });

  it('forwards ECS\'s "task failed to start" events, and runners that gave up, to the topic', () => {
    const rule = JSON.parse(raw('aws:cloudwatch/eventRule:EventRule').inputs.eventPattern);
    expect(rule).toEqual({
      source: ['aws.ecs'],
      'detail-type': ['ECS Task State Change'],
      detail: {
        clusterArn: [`arn:aws:ecs:${REGION}:${ACCOUNT_ID}:cluster/gpucluster-mock`],
        lastStatus: ['STOPPED'],
        $or: [{ stopCode: ['TaskFailedToStart'] }, { containers: { exitCode: [78] } }],
      },
    });
    const target = raw('aws:cloudwatch/eventTarget:EventTarget').inputs;
    expect(target.arn).toBe(topic());
    expect(target.inputTransformer.inputPaths).toEqual({ task: '$.detail.taskArn', code: '$.detail.stopCode', reason: '$.detail.stoppedReason' });
    expect(JSON.parse(target.inputTransformer.inputTemplate.replace(/<(\w+)>/g, '$1'))).toMatch(/^AMDM prod: runner task task stopped \(code\): reason/);
  });
});

describe('webhook delivery', () => {
  const subscription = () => component('sst:aws:QueueLambdaSubscriber', 'WebhookQueueSubscriber').args;
  const fn = () => subscription().subscriber;
  const store = 'arn:aws:s3:::amdm-test-store';

  it('subscribes one function to the webhook queue, with partial batch responses', () => {
    expect(subscription().queue).toBeInstanceOf(ShimQueue);
    expect(subscription().queue.logicalName).toBe('WebhookQueue');
    expect(subscription().batch).toEqual({ size: 10, partialResponses: true });
    expect(subscription().transform.eventSourceMapping).toEqual({ scalingConfig: { maximumConcurrency: 2 } });
    // nothing else consumes it: the runner may only send (see IAM)
    expect(() => component('sst:aws:QueueLambdaSubscriber', 'JobQueueSubscriber')).toThrow(/found 0/);
  });

  it('runs webhooks/lambda.handler, which exists and is exported', () => {
    expect(fn().handler).toBe('webhooks/lambda.handler');
    expect(readFileSync(join(root, 'webhooks/lambda.ts'), 'utf8')).toMatch(/export async function handler\(/);
  });

  it('times out before the queue would hand a record to another invocation', async () => {
    const { WEBHOOK_VISIBILITY_TIMEOUT_SECONDS } = await import('../../infra/queues.ts');
    const seconds = Number(/^(\d+) seconds$/.exec(fn().timeout)![1]);
    expect(seconds).toBeLessThan(WEBHOOK_VISIBILITY_TIMEOUT_SECONDS);
    expect(component('sst:aws:Queue', 'WebhookQueue').args.visibilityTimeout).toBe(`${WEBHOOK_VISIBILITY_TIMEOUT_SECONDS} seconds`);
  });

  it('links the bucket, the webhook queue and the signing secret, and knows the public URL', async () => {
    const linked = fn().link as any[];
    expect(linked.map((l) => l.logicalName).sort()).toEqual(['Store', 'WebhookQueue', 'WebhookSigningSecret']);
    expect(await resolve(fn().environment.PUBLIC_BASE_URL)).toBe('https://d1234abcd.cloudfront.net');
  });

  it('may read job records, write only webhook attempt records, and nothing in apikeys/ or models/', async () => {
    const permissions = await resolve<any[]>(fn().permissions);
    const doc = parsePolicy({
      Version: '2012-10-17',
      Statement: permissions.map((p) => ({ Effect: p.effect === 'deny' ? 'Deny' : 'Allow', Action: p.actions, Resource: p.resources })),
    });
    expect(actionsAllowed(doc, `${store}/tenants/t1/jobs/j1/webhook/0001.json`).sort()).toEqual(['s3:GetObject', 's3:PutObject']);
    expect(actionsAllowed(doc, `${store}/tenants/t1/jobs/j1/status.json`)).toEqual(['s3:GetObject']);
    expect(actionsAllowed(doc, `${store}/tenants/t1/usage/2026-01-01/j1.json`)).toEqual(['s3:GetObject']);
    expect(actionsAllowed(doc, `${store}/apikeys/abc.json`)).toEqual([]);
    expect(actionsAllowed(doc, `${store}/models/checksums.json`)).toEqual([]);
    // its queue rights come from the subscription (SST grants receive/delete/visibility on that queue only)
    expect(permissions.flatMap((p) => p.actions).filter((a: string) => a.startsWith('sqs:'))).toEqual([]);
  });
});

describe('missing keys read as 404 (S3 answers 403 without s3:ListBucket)', () => {
  const store = 'arn:aws:s3:::amdm-test-store';
  /** The statements granting s3:ListBucket on the bucket, in IAM's JSON shape, from any role's policy. */
  const fromSst = (permissions: any[]) =>
    permissions.map((p) => ({
      Effect: p.effect === 'deny' ? 'Deny' : 'Allow',
      Action: p.actions,
      Resource: p.resources,
      ...(p.conditions?.length ? { Condition: p.conditions } : {}),
    }));
  const roles = async () => ({
    edge: fromSst(await resolve<any[]>(component('sst:aws:Function', 'Edge').args.permissions)),
    webhooks: fromSst(await resolve<any[]>(component('sst:aws:QueueLambdaSubscriber', 'WebhookQueueSubscriber').args.subscriber.permissions)),
    runner: parsePolicy(raw('aws:iam/rolePolicy:RolePolicy', 'RunnerTaskPolicy').inputs.policy).Statement,
  });

  it('every role that reads keys which may be absent may list the whole bucket, with no condition', async () => {
    for (const [role, statements] of Object.entries(await roles())) {
      const list = statements.filter((s: any) => s.Effect === 'Allow' && s.Action.includes('s3:ListBucket') && s.Resource.includes(store));
      // an s3:prefix condition may not apply to the check a GetObject makes: only an
      // unconditional grant is certain to turn a missing key into 404 (infra/iam.ts)
      expect(list.filter((s: any) => s.Condition === undefined), role).toHaveLength(1);
    }
  });

  it('and each of them reads keys that may be absent (the reason for the grant)', async () => {
    const r = await roles();
    const reads = (statements: any[], arn: string) => actionsAllowed(parsePolicy({ Version: '2012-10-17', Statement: statements }), arn);
    expect(reads(r.edge, `${store}/apikeys/unknown.json`)).toContain('s3:GetObject');
    expect(reads(r.edge, `${store}/tenants/t/jobs/j/cancel.json`)).toContain('s3:GetObject');
    expect(reads(r.webhooks, `${store}/tenants/t/jobs/j/cancel.json`)).toContain('s3:GetObject');
    expect(reads(r.runner, `${store}/tenants/t/jobs/j/status.json`)).toContain('s3:GetObject');
    expect(reads(r.runner, `${store}/models/checksums.json`)).toContain('s3:GetObject');
  });
});

describe('IAM', () => {
  const taskPolicy = () => parsePolicy(raw('aws:iam/rolePolicy:RolePolicy', 'RunnerTaskPolicy').inputs.policy);
  const store = 'arn:aws:s3:::amdm-test-store';
  const jobQueue = `arn:aws:sqs:${REGION}:${ACCOUNT_ID}:amdm-test-jobqueue`;
  const jobDlq = `arn:aws:sqs:${REGION}:${ACCOUNT_ID}:amdm-test-jobdeadletters`;
  const webhookQueue = `arn:aws:sqs:${REGION}:${ACCOUNT_ID}:amdm-test-webhookqueue`;

  it('lets the runner lease jobs on the job queue and its DLQ, and only enqueue webhooks', () => {
    const lease = ['sqs:ChangeMessageVisibility', 'sqs:DeleteMessage', 'sqs:GetQueueAttributes', 'sqs:ReceiveMessage'];
    expect(actionsAllowed(taskPolicy(), jobQueue).sort()).toEqual(lease);
    expect(actionsAllowed(taskPolicy(), jobDlq).sort()).toEqual(lease);
    expect(actionsAllowed(taskPolicy(), webhookQueue)).toEqual(['sqs:SendMessage']);
    expect(actionsAllowed(taskPolicy(), jobQueue)).not.toContain('sqs:SendMessage');
  });

  it('lets the runner read models and write job results in S3', () => {
    expect(actionsAllowed(taskPolicy(), `${store}/models/shapes/unet.onnx`)).toEqual(['s3:GetObject']);
    expect(actionsAllowed(taskPolicy(), `${store}/tenants/t1/jobs/j1/out/a-0.png`).sort()).toEqual([
      's3:GetObject',
      's3:PutObject',
      's3:PutObjectTagging',
    ]);
    expect(actionsAllowed(taskPolicy(), `${store}/apikeys/abc.json`)).toEqual([]);
  });

  it('lets a runner that cannot start record it, and set only its own cluster\'s services to zero', () => {
    expect(actionsAllowed(taskPolicy(), `${store}/fleet/start-failures/0001-task.json`).sort()).toEqual(['s3:PutObject', 's3:PutObjectTagging']);
    const giveUp = taskPolicy().Statement.find((s) => s.Action.includes('ecs:UpdateService'))!;
    expect(giveUp.Action.sort()).toEqual(['ecs:DescribeServices', 'ecs:UpdateService']);
    expect(giveUp.Resource).toEqual([`arn:aws:ecs:${REGION}:${ACCOUNT_ID}:service/gpucluster-mock/*`]);
    // and the runner knows when to give up: the same numbers as its defaults
    const { env } = (() => {
      const td = raw('aws:ecs/taskDefinition:TaskDefinition').inputs;
      const [c] = JSON.parse(td.containerDefinitions);
      return { env: Object.fromEntries(c.environment.map((e: any) => [e.name, e.value])) };
    })();
    expect(env).toMatchObject({ AMDM_START_FAILURE_LIMIT: '3', AMDM_START_FAILURE_WINDOW_MINUTES: '30' });
  });

  it('lets the runner only update the admission items of the counters table (releasing finished jobs)', () => {
    const table = `arn:aws:dynamodb:${REGION}:${ACCOUNT_ID}:table/amdm-test-counters`;
    expect(actionsAllowed(taskPolicy(), table)).toEqual(['dynamodb:UpdateItem']);
    const statement = taskPolicy().Statement.find((s) => s.Resource.includes(table))!;
    // the request windows (rate#...) are the edge's alone
    expect(statement.Condition).toEqual({ 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': ['admit#*'] } });
  });

  it('lets the runner change task protection only on its own cluster tasks', () => {
    const statement = taskPolicy().Statement.find((s) => s.Action.includes('ecs:UpdateTaskProtection'))!;
    expect(statement.Action.sort()).toEqual(['ecs:GetTaskProtection', 'ecs:UpdateTaskProtection']);
    expect(statement.Resource).toEqual([`arn:aws:ecs:${REGION}:${ACCOUNT_ID}:task/gpucluster-mock/*`]);
  });

  it('grants no admin or wildcard action to any role policy in the stack', () => {
    const inline = mocks.ofType('aws:iam/rolePolicy:RolePolicy').map((p) => parsePolicy(p.inputs.policy));
    expect(inline.length).toBeGreaterThan(0);
    for (const doc of inline) {
      for (const s of doc.Statement) {
        for (const action of s.Action) {
          expect(action).not.toMatch(/\*/);
          expect(action).not.toMatch(/^(iam|sts|organizations|kms):/);
        }
        expect(s.Resource).not.toContain('*');
      }
    }
  });

  it('gives the instance role only the ECS managed policy for container instances', () => {
    const attachments = mocks.ofType('aws:iam/rolePolicyAttachment:RolePolicyAttachment');
    const byRole = (role: string) => attachments.filter((a) => a.inputs.role === role).map((a) => a.inputs.policyArn);
    expect(byRole('gpuinstancerole-mock')).toEqual(['arn:aws:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role']);
    expect(byRole('runnertaskrole-mock')).toEqual([]);
    const instancePolicies = mocks
      .ofType('aws:iam/rolePolicy:RolePolicy')
      .filter((p) => p.inputs.role === 'gpuinstancerole-id' || p.inputs.role === 'gpuinstancerole-mock');
    expect(instancePolicies).toEqual([]);
  });

  it('lets ECS assume the task roles only on behalf of this account', () => {
    const taskRole = raw('aws:iam/role:Role', 'RunnerTaskRole').inputs;
    const trust = JSON.parse(taskRole.assumeRolePolicy);
    expect(trust.Statement[0].Principal).toEqual({ Service: 'ecs-tasks.amazonaws.com' });
    expect(trust.Statement[0].Condition).toEqual({ StringEquals: { 'aws:SourceAccount': ACCOUNT_ID } });
  });
});

describe('what `amdm aws preflight` reads under `sst shell`', () => {
  it('links the fleet\'s names and settings as RunnerFleet, and nothing secret', async () => {
    const fleet = component('sst:sst:Linkable', 'RunnerFleet').args.properties;
    const resolved = Object.fromEntries(await Promise.all(Object.entries(fleet).map(async ([k, v]) => [k, await resolve(v as any)])));
    expect(resolved).toEqual({
      region: REGION,
      repository: 'runnerimages-mock',
      imageTag: 'abc1234',
      instanceTypes: 'g6.xlarge,g5.xlarge',
      maxTasks: 4,
      cluster: 'gpucluster-mock',
      service: 'runnerservice-mock',
      // the catalog of this deploy records no checksums.json (written without one)
      catalogChecksumsSha256: '',
    });
  });
});

describe('outputs', () => {
  it('exposes the API URL, bucket, image repository and cluster', async () => {
    expect(await resolve(outputs.api as any)).toBe('https://d1234abcd.cloudfront.net');
    expect(await resolve(outputs.bucket as any)).toBe('amdm-test-store');
    expect(await resolve(outputs.runnerImages as any)).toContain('.dkr.ecr.');
    expect(await resolve(outputs.cluster as any)).toBe('gpucluster-mock');
    // for the manual start after a failed one (docs/deploy.md)
    expect(await resolve(outputs.service as any)).toBe('runnerservice-mock');
    expect(await resolve(outputs.alerts as any)).toBe(`arn:aws:sns:${REGION}:${ACCOUNT_ID}:topic/alerts-mock`);
    expect(await resolve(outputs.counters as any)).toBe('amdm-test-counters');
  });
});

