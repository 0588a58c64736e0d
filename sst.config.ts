/// <reference path="./.sst/platform/config.d.ts" />
/**
 * The AWS stack: one file per area in infra/, wired here. Stage parameters come from the
 * deploy's environment (`.env.<stage>`); see infra/params.ts and docs/deploy.md.
 */
export default $config({
  app(input) {
    return {
      name: 'amdm',
      home: 'aws',
      // Production keeps its bucket and refuses `sst remove`; other stages clean up after themselves.
      removal: input?.stage === 'prod' ? 'retain' : 'remove',
      protect: input?.stage === 'prod',
    };
  },
  async run() {
    // Imported inside run(): SST evaluates app() before the providers are installed.
    const { BOOTSTRAP_IMAGE_TAG, readStageParams } = await import('./infra/params.ts');
    const { linksCarryNoPermissions } = await import('./infra/links.ts');
    const { createStorage } = await import('./infra/storage.ts');
    const { createQueues } = await import('./infra/queues.ts');
    const { createSecrets } = await import('./infra/secrets.ts');
    const { createCounters } = await import('./infra/counters.ts');
    const { createRouter, createEdge } = await import('./infra/edge.ts');
    const { createWebhookDelivery } = await import('./infra/webhooks.ts');
    const { createGpuFleet, lookupPlacement } = await import('./infra/gpu.ts');
    const { createRunnerScaling } = await import('./infra/autoscaling.ts');
    const { ensureServiceLinkedRoles } = await import('./infra/service-roles.ts');
    const { createFleetAlerts } = await import('./infra/alerts.ts');

    const params = readStageParams(process.env);
    linksCarryNoPermissions();

    const router = createRouter({ rateLimitPerIp: params.wafRateLimitPerIp });
    const { bucket } = createStorage({
      corsOrigins: [router.url, ...params.extraCorsOrigins],
      retentionDays: params.retentionDays,
    });
    const queues = createQueues();
    const secrets = createSecrets();
    // what every edge instance counts together: active jobs per tenant, requests per tenant
    const counters = createCounters();

    const edge = createEdge({
      router,
      bucketArn: bucket.arn,
      jobQueueArn: queues.jobs.arn,
      countersTableArn: counters.arn,
      // the pepper verifies API keys; the webhook secret is not the edge's to hold
      link: [bucket, queues.jobs, secrets.keyPepper, counters],
      publicBaseUrl: router.url,
      modelCatalog: params.modelCatalog,
      maxWaitSeconds: params.maxWaitSeconds,
      projectRoot: $cli.paths.root,
    });

    // The only consumer of WebhookQueue and the only holder of the signing secret: delivers
    // webhooks (and their retries) whenever due, also while the GPU fleet is at zero.
    createWebhookDelivery(queues.webhooks, {
      bucketArn: bucket.arn,
      publicBaseUrl: router.url,
      link: [bucket, queues.webhooks, secrets.webhookSigningSecret],
    });

    // before the fleet: a first deploy into an account that never used ECS needs them
    const serviceLinkedRoles = await ensureServiceLinkedRoles();
    const placement = await lookupPlacement();

    const fleet = createGpuFleet({
      stage: $app.stage,
      // a protected stage (prod) refuses `sst remove`; every other one must be removable to the end
      forceRemoval: !$app.protect,
      serviceLinkedRoles,
      ...placement,
      instanceTypes: params.gpuInstanceTypes,
      maxTasks: params.maxTasks,
      runnerImageTag: params.runnerImageTag,
      // The same SST_RESOURCE_* variables a linked Lambda gets, so the runner reads
      // `Resource.Store.name` like the edge does. No secret: the runner only enqueues
      // webhooks; signing them is the webhook Lambda's.
      environment: sst.Linkable.env([bucket, queues.jobs, queues.jobDeadLetters, queues.webhooks, counters]),
      secrets: {},
      publicBaseUrl: router.url,
      bucketArn: bucket.arn,
      jobQueueArn: queues.jobs.arn,
      jobDeadLetterQueueArn: queues.jobDeadLetters.arn,
      webhookQueueArn: queues.webhooks.arn,
      countersTableArn: counters.arn,
    });

    const scaling = createRunnerScaling({
      clusterName: fleet.cluster.name,
      serviceName: fleet.service.name,
      jobQueueArn: queues.jobs.arn,
      maxTasks: params.maxTasks,
      minTasks: params.minTasks,
      // until an image is pushed there is nothing a task could run (docs/deploy.md)
      imagePushed: params.runnerImageTag !== BOOTSTRAP_IMAGE_TAG,
      startTimeoutMinutes: params.startTimeoutMinutes,
      idleMinutes: params.idleMinutes,
      targetBacklogPerTask: params.targetBacklogPerTask,
      serviceLinkedRole: serviceLinkedRoles.applicationAutoScaling,
    });

    // a fleet that cannot start: notify, scale to zero, and hold there (infra/alerts.ts)
    const alerts = createFleetAlerts({
      stage: $app.stage,
      accountId: placement.accountId,
      clusterArn: fleet.cluster.arn,
      clusterName: fleet.cluster.name,
      serviceName: fleet.service.name,
      target: scaling.targetRef,
      ecsTasks: scaling.ecsTasks,
      oldestJob: scaling.sqs.oldest,
      startTimeoutMinutes: params.startTimeoutMinutes,
      alertEmail: params.alertEmail,
      alertTopicArn: params.alertTopicArn,
    });

    // What `npx sst shell --stage STAGE -- npx amdm aws preflight` checks the account against
    // (cli/aws-preflight.ts): names only, linked to nothing that runs
    new sst.Linkable('RunnerFleet', {
      properties: {
        region: placement.region,
        repository: fleet.repository.name,
        imageTag: params.runnerImageTag,
        instanceTypes: params.gpuInstanceTypes.join(','),
        maxTasks: params.maxTasks,
        cluster: fleet.cluster.name,
        service: fleet.service.name,
        catalogChecksumsSha256: edge.modelsChecksumsSha256 ?? '',
      },
    });

    return {
      api: router.url,
      bucket: bucket.name,
      // the model ids the edge serves (from the bundled catalog): runners need the same packages in models/
      models: edge.models.join(','),
      runnerImages: fleet.repository.repositoryUrl,
      cluster: fleet.cluster.name,
      service: fleet.service.name,
      alerts: alerts.topic.arn,
      // the active-job counts and request windows (docs/deploy.md, "Limits that differ on AWS")
      counters: counters.name,
    };
  },
});
