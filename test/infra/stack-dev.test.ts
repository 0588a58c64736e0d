/**
 * The stack as a non-production stage in an account that already has the service-linked
 * roles: the same sst.config.ts under Pulumi mocks (see stack.test.ts for how), with the
 * account's roles listed by the mocked iam.getRoles.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatModelCatalog } from '../../shared/model-catalog.ts';
import { MockStack } from './pulumi-mocks.ts';
import { installSstShim } from './sst-shim.ts';

const mocks = new MockStack([
  { path: '/aws-service-role/ecs.amazonaws.com/', name: 'AWSServiceRoleForECS' },
  { path: '/aws-service-role/ecs.application-autoscaling.amazonaws.com/', name: 'AWSServiceRoleForApplicationAutoScaling_ECSService' },
  { path: '/aws-service-role/autoscaling.amazonaws.com/', name: 'AWSServiceRoleForAutoScaling' },
]);
installSstShim('dev');

const root = fileURLToPath(new URL('../../', import.meta.url));
const catalogDir = mkdtempSync(join(tmpdir(), 'amdm-stack-dev-catalog-'));
const catalogFile = join(catalogDir, 'catalog.json');
writeFileSync(
  catalogFile,
  formatModelCatalog({
    models: [
      {
        id: 'shapes-base',
        description: '',
        ecosystem: 'shapes-v1',
        latent: { channels: 4, vae_scale_factor: 4 },
        sizes: { default: [32, 32] as [number, number], min: 32, max: 64, multiple: 8 },
        conditions: { prompt: { max_tokens: 75 }, grounding: null, reference_image: null },
        schedulers: ['ddim'] as 'ddim'[],
      },
    ],
    modelsChecksumsSha256: null,
  }),
);
afterAll(() => rmSync(catalogDir, { recursive: true, force: true }));

beforeAll(async () => {
  const saved = { ...process.env };
  // no AMDM_RUNNER_IMAGE_TAG: a stage deployed before its first image
  Object.assign(process.env, { AMDM_MODEL_CATALOG: relative(root, catalogFile) });
  try {
    const config = (await import('../../sst.config.ts')).default as unknown as { run(): Promise<Record<string, unknown>> };
    await mocks.run(() => config.run());
  } finally {
    process.env = saved;
  }
});

describe('a non-production stage', () => {
  it('is removable to the end: the ASG, the service and the image repository are deleted with what they hold', () => {
    // protected instances never leave a group that is scaled to zero before deletion
    expect(mocks.one('aws:autoscaling/group:Group').inputs).toMatchObject({ forceDelete: true, protectFromScaleIn: true });
    expect(mocks.one('aws:ecs/service:Service').inputs.forceDelete).toBe(true);
    // ECR refuses to delete a repository with images in it
    expect(mocks.one('aws:ecr/repository:Repository').inputs.forceDelete).toBe(true);
  });
});

describe('a stage without a runner image yet (the bootstrap tag)', () => {
  it('holds the fleet at zero: a task could only pull a missing image on a paid GPU instance', () => {
    expect(mocks.one('aws:appautoscaling/target:Target').inputs).toMatchObject({ minCapacity: 0, maxCapacity: 0 });
  });

  it('has no alert email or extra topic unless configured', () => {
    expect(mocks.ofType('aws:sns/topicSubscription:TopicSubscription')).toEqual([]);
    const alarm = mocks.ofType('aws:cloudwatch/metricAlarm:MetricAlarm').find((a) => a.name === 'RunnerNotStartingAlarm')!;
    expect(alarm.inputs.alarmActions).toHaveLength(2);
    expect(alarm.inputs.evaluationPeriods).toBe(20);
  });
});

describe('an account that has the service-linked roles', () => {
  it('creates none of them (and so never owns, or deletes, a role other stacks use)', () => {
    expect(mocks.ofType('aws:iam/serviceLinkedRole:ServiceLinkedRole')).toEqual([]);
    expect(mocks.calls.filter((c) => c.token === 'aws:iam/getRoles:getRoles')).toHaveLength(3);
  });
});
