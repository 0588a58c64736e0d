import { describe, expect, it } from 'vitest';
import { DEFAULT_PARAMS, readStageParams, StageParamError } from '../../infra/params.ts';

describe('stage parameters', () => {
  it('defaults every knob when the environment sets none', () => {
    expect(readStageParams({})).toEqual(DEFAULT_PARAMS);
    expect(DEFAULT_PARAMS).toMatchObject({ retentionDays: 7, idleMinutes: 15 });
  });

  it('treats blank values as unset', () => {
    expect(readStageParams({ AMDM_MAX_TASKS: '  ', AMDM_GPU_INSTANCE_TYPES: '' })).toEqual(DEFAULT_PARAMS);
  });

  it('reads every knob', () => {
    expect(
      readStageParams({
        AMDM_GPU_INSTANCE_TYPES: ' g6e.xlarge, g5.2xlarge ',
        AMDM_MAX_TASKS: '8',
        AMDM_MIN_TASKS: '1',
        AMDM_START_TIMEOUT_MINUTES: '25',
        AMDM_ALERT_EMAIL: 'ops@amdm.test',
        AMDM_ALERT_TOPIC_ARN: 'arn:aws:sns:us-east-1:123456789012:pager',
        AMDM_IDLE_MINUTES: '30',
        AMDM_RETENTION_DAYS: '30',
        AMDM_TARGET_BACKLOG_PER_TASK: '5',
        AMDM_RUNNER_IMAGE_TAG: 'git-3f2a9c1',
        AMDM_CORS_ORIGINS: 'https://playground.amdm.test, http://localhost:5173',
        AMDM_MODEL_CATALOG: 'build/catalog.json',
        AMDM_MAX_WAIT_SECONDS: '30',
        AMDM_WAF_RATE_PER_IP: '1500',
      }),
    ).toEqual({
      gpuInstanceTypes: ['g6e.xlarge', 'g5.2xlarge'],
      maxTasks: 8,
      minTasks: 1,
      startTimeoutMinutes: 25,
      alertEmail: 'ops@amdm.test',
      alertTopicArn: 'arn:aws:sns:us-east-1:123456789012:pager',
      idleMinutes: 30,
      retentionDays: 30,
      targetBacklogPerTask: 5,
      runnerImageTag: 'git-3f2a9c1',
      extraCorsOrigins: ['https://playground.amdm.test', 'http://localhost:5173'],
      modelCatalog: 'build/catalog.json',
      maxWaitSeconds: 30,
      wafRateLimitPerIp: 1500,
    });
  });

  it.each([
    [{ AMDM_MAX_TASKS: '0' }, /AMDM_MAX_TASKS=0 is out of range; allowed: 1\.\.100/],
    [{ AMDM_MIN_TASKS: '3' }, /AMDM_MIN_TASKS=3 is above AMDM_MAX_TASKS=2; allowed: 0\.\.2/],
    [{ AMDM_START_TIMEOUT_MINUTES: '5' }, /AMDM_START_TIMEOUT_MINUTES=5 is out of range; allowed: 10\.\.1440/],
    [{ AMDM_ALERT_EMAIL: 'ops at example' }, /AMDM_ALERT_EMAIL="ops at example" is not an email address/],
    [{ AMDM_ALERT_TOPIC_ARN: 'pager' }, /AMDM_ALERT_TOPIC_ARN="pager" is not an SNS topic ARN/],
    [{ AMDM_MAX_TASKS: '2.5' }, /AMDM_MAX_TASKS="2\.5" is not a whole number/],
    [{ AMDM_IDLE_MINUTES: '1441' }, /AMDM_IDLE_MINUTES=1441 is out of range; allowed: 1\.\.1440/],
    [{ AMDM_RETENTION_DAYS: 'seven' }, /AMDM_RETENTION_DAYS="seven" is not a whole number/],
    [{ AMDM_TARGET_BACKLOG_PER_TASK: '-1' }, /AMDM_TARGET_BACKLOG_PER_TASK="-1"/],
    [{ AMDM_GPU_INSTANCE_TYPES: 'm5.xlarge' }, /AMDM_GPU_INSTANCE_TYPES contains "m5\.xlarge", which is not an x86_64 NVIDIA GPU/],
    [{ AMDM_GPU_INSTANCE_TYPES: 'g5g.xlarge' }, /"g5g\.xlarge"/],
    [{ AMDM_GPU_INSTANCE_TYPES: 'g5.xlarge,g5.xlarge' }, /lists a type twice/],
    [{ AMDM_GPU_INSTANCE_TYPES: ',' }, /names no instance type/],
    [{ AMDM_RUNNER_IMAGE_TAG: 'latest' }, /AMDM_RUNNER_IMAGE_TAG=latest is refused/],
    [{ AMDM_RUNNER_IMAGE_TAG: 'a/b' }, /AMDM_RUNNER_IMAGE_TAG="a\/b" is not a valid image tag/],
    [{ AMDM_CORS_ORIGINS: 'https://x.amdm.test/' }, /AMDM_CORS_ORIGINS contains "https:\/\/x\.amdm\.test\/"/],
    [{ AMDM_CORS_ORIGINS: 'http://x.amdm.test' }, /allowed: https:\/\/host/],
    [{ AMDM_CORS_ORIGINS: 'not a url' }, /which is not a URL/],
    [{ AMDM_MODEL_CATALOG: 'models/' }, /AMDM_MODEL_CATALOG="models\/" is not a path to a \.json file/],
    [{ AMDM_MODEL_CATALOG: '/abs/catalog.json' }, /AMDM_MODEL_CATALOG="\/abs\/catalog\.json" is absolute/],
    // CloudFront's origin read timeout (60 s) less the margin a Prefer: wait answer needs (infra/edge.ts)
    [{ AMDM_MAX_WAIT_SECONDS: '55' }, /AMDM_MAX_WAIT_SECONDS=55 is out of range; allowed: 1\.\.51/],
    [{ AMDM_MAX_WAIT_SECONDS: '0' }, /AMDM_MAX_WAIT_SECONDS=0 is out of range/],
    // WAF's own bounds for a rate-based rule
    [{ AMDM_WAF_RATE_PER_IP: '5' }, /AMDM_WAF_RATE_PER_IP=5 is out of range; allowed: 10\.\.2000000000/],
  ])('refuses %o, naming the variable', (env, message) => {
    expect(() => readStageParams(env)).toThrow(StageParamError);
    expect(() => readStageParams(env)).toThrow(message);
  });
});
