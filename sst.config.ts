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
    const { readStageParams } = await import('./infra/params.ts');
    const { linksCarryNoPermissions } = await import('./infra/links.ts');
    const { createStorage } = await import('./infra/storage.ts');
    const { createQueues } = await import('./infra/queues.ts');
    const { createSecrets } = await import('./infra/secrets.ts');
    const { createRouter, createEdge } = await import('./infra/edge.ts');
    const { createWebhookDelivery } = await import('./infra/webhooks.ts');
    const { createGpuFleet, lookupPlacement } = await import('./infra/gpu.ts');
    const { createRunnerScaling } = await import('./infra/autoscaling.ts');
    const { ensureServiceLinkedRoles } = await import('./infra/service-roles.ts');

    const params = readStageParams(process.env);
    linksCarryNoPermissions();

    const router = createRouter();
    const { bucket } = createStorage({
      corsOrigins: [router.url, ...params.extraCorsOrigins],
      retentionDays: params.retentionDays,
    });
    const queues = createQueues();
    const secrets = createSecrets();

    const edge = createEdge({
      router,
      bucketArn: bucket.arn,
      jobQueueArn: queues.jobs.arn,
      // the pepper verifies API keys; the webhook secret is not the edge's to hold
      link: [bucket, queues.jobs, secrets.keyPepper],
      publicBaseUrl: router.url,
      modelCatalog: params.modelCatalog,
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

    const fleet = createGpuFleet({
      stage: $app.stage,
      // a protected stage (prod) refuses `sst remove`; every other one must be removable to the end
      forceRemoval: !$app.protect,
      serviceLinkedRoles,
      ...(await lookupPlacement()),
      instanceTypes: params.gpuInstanceTypes,
      maxTasks: params.maxTasks,
      runnerImageTag: params.runnerImageTag,
      // The same SST_RESOURCE_* variables a linked Lambda gets, so the runner reads
      // `Resource.Store.name` like the edge does. No secret: the runner only enqueues
      // webhooks; signing them is the webhook Lambda's.
      environment: sst.Linkable.env([bucket, queues.jobs, queues.jobDeadLetters, queues.webhooks]),
      secrets: {},
      publicBaseUrl: router.url,
      bucketArn: bucket.arn,
      jobQueueArn: queues.jobs.arn,
      jobDeadLetterQueueArn: queues.jobDeadLetters.arn,
      webhookQueueArn: queues.webhooks.arn,
    });

    createRunnerScaling({
      clusterName: fleet.cluster.name,
      serviceName: fleet.service.name,
      jobQueueArn: queues.jobs.arn,
      maxTasks: params.maxTasks,
      idleMinutes: params.idleMinutes,
      targetBacklogPerTask: params.targetBacklogPerTask,
      serviceLinkedRole: serviceLinkedRoles.applicationAutoScaling,
    });

    return {
      api: router.url,
      bucket: bucket.name,
      // the model ids the edge serves (from the bundled catalog): runners need the same packages in models/
      models: edge.models.join(','),
      runnerImages: fleet.repository.repositoryUrl,
      cluster: fleet.cluster.name,
    };
  },
});
