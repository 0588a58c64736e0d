/**
 * The GPU fleet, in raw Pulumi: SST's Cluster and Service run on Fargate, which has no GPUs.
 *
 * Shape: an ECS cluster whose only capacity is an EC2 Auto Scaling group (min 0) of GPU
 * instances on the ECS GPU-optimized AMI, attached through a capacity provider with managed
 * scaling. The service's desired task count belongs to Application Auto Scaling
 * (infra/autoscaling.ts); managed scaling then grows or shrinks the instances to fit the
 * tasks. With no jobs there are no tasks and, shortly after, no instances.
 *
 * Scale-in safety has two layers: the ASG protects new instances from scale-in so only ECS
 * (managed termination protection) decides which instance may go, and ECS never stops a
 * task that holds a job, because the runner sets task scale-in protection while it works
 * (gpu-runner/aws/task-protection.ts).
 *
 * Everything here is a function of plain inputs (ARNs, names, numbers), so the Pulumi mock
 * tests build it exactly as a deploy does.
 */
import { all, interpolate, jsonStringify, type Input, type Resource } from '@pulumi/pulumi';
import { autoscaling, cloudwatch, ec2, ecr, ecs, getAvailabilityZones, getCallerIdentity, getRegion, iam, ssm } from '@pulumi/aws';
import {
  EC2_TRUST_POLICY,
  MANAGED_POLICIES,
  runnerExecutionSecretsPolicy,
  runnerTaskPolicy,
  serviceTrustPolicy,
} from './iam.ts';
import {
  MODEL_CACHE_HOST_PATH,
  MODEL_CACHE_VOLUME,
  RUNNER_UID,
  runnerContainerDefinition,
} from './runner-task.ts';

// the runner's task settings live in infra/runner-task.ts (pure, for tools too); re-exported here
export * from './runner-task.ts';

/** The ECS GPU-optimized Amazon Linux 2023 AMI, as AWS publishes it. */
export const GPU_AMI_PARAMETER = '/aws/service/ecs/optimized-ami/amazon-linux-2023/gpu/recommended/image_id';

/** Root volume: the CUDA image (~8 GB), its extraction, and the model cache. */
export const ROOT_VOLUME_GIB = 100;

export interface GpuFleetArgs {
  stage: string;
  region: string;
  accountId: string;
  /** One public subnet is made in each; GPU capacity is scarce, more zones find it sooner. */
  availabilityZones: readonly string[];
  instanceTypes: readonly string[];
  maxTasks: number;
  runnerImageTag: string;
  /** Plain environment for the runner container, including the SST_RESOURCE_* link values. */
  environment: Input<Record<string, Input<string>>>;
  /**
   * Secret environment variables (name -> value). They go to SSM SecureString parameters and
   * ECS injects them at start, so no value appears in the task definition, which anyone with
   * ecs:DescribeTaskDefinition can read.
   */
  secrets: Record<string, Input<string>>;
  /** The API's public URL: links in webhook payloads point at it. */
  publicBaseUrl: Input<string>;
  bucketArn: Input<string>;
  jobQueueArn: Input<string>;
  jobDeadLetterQueueArn: Input<string>;
  webhookQueueArn: Input<string>;
  /** the counters table, where the runner releases finished jobs (infra/counters.ts) */
  countersTableArn: Input<string>;
  logRetentionDays?: number;
  /**
   * A non-production stage: `sst remove` must finish. The ASG, the service and the image
   * repository are then deleted with what they hold (protected instances, running tasks,
   * pushed images) instead of waiting for them, which never ends for scale-in-protected
   * instances. Production keeps the waits (and refuses removal anyway: `protect`).
   */
  forceRemoval: boolean;
  /** Service-linked roles created by this deploy (infra/service-roles.ts), to exist before their users. */
  serviceLinkedRoles?: { ecs: Resource[]; ec2AutoScaling: Resource[] };
}

export function createGpuFleet(args: GpuFleetArgs) {
  if (args.availabilityZones.length === 0) {
    throw new RangeError('createGpuFleet: availabilityZones is empty; allowed: 1 to 6 zone names');
  }
  if (args.instanceTypes.length === 0) {
    throw new RangeError('createGpuFleet: instanceTypes is empty; allowed: one or more GPU instance types');
  }
  if (!Number.isInteger(args.maxTasks) || args.maxTasks < 1) {
    throw new RangeError(`createGpuFleet: maxTasks=${args.maxTasks}; allowed: a whole number >= 1`);
  }

  const network = createNetwork(args);

  const ecsRole = args.serviceLinkedRoles?.ecs ?? [];
  const cluster = new ecs.Cluster(
    'GpuCluster',
    {
      // Container Insights publishes RunningTaskCount and DesiredTaskCount per service, which
      // the backlog-per-task scaling divides by and the scale-from-zero alarm checks.
      settings: [{ name: 'containerInsights', value: 'enabled' }],
    },
    { dependsOn: ecsRole },
  );

  const logGroup = new cloudwatch.LogGroup('RunnerLogs', {
    name: `/amdm/${args.stage}/runner`,
    retentionInDays: args.logRetentionDays ?? 30,
  });

  const repository = new ecr.Repository('RunnerImages', {
    // Immutable tags: a task definition names exactly one build, and a deploy can be traced
    // back to its commit.
    imageTagMutability: 'IMMUTABLE',
    imageScanningConfiguration: { scanOnPush: true },
    // ECR refuses to delete a repository that holds images
    forceDelete: args.forceRemoval,
  });
  new ecr.LifecyclePolicy('RunnerImagesLifecycle', {
    repository: repository.name,
    policy: JSON.stringify({
      rules: [
        {
          rulePriority: 1,
          description: 'keep the 20 newest images; older ones cannot be rolled back to in practice',
          selection: { tagStatus: 'any', countType: 'imageCountMoreThan', countNumber: 20 },
          action: { type: 'expire' },
        },
      ],
    }),
  });

  const secretParameters = Object.entries(args.secrets).map(
    ([name, value]) =>
      [
        name,
        new ssm.Parameter(`RunnerSecret${name.replace(/[^A-Za-z0-9]/g, '')}`, {
          name: `/amdm/${args.stage}/runner/${name}`,
          type: 'SecureString',
          value,
        }),
      ] as const,
  );
  const roles = createRoles(args, cluster.name, secretParameters.map(([, p]) => p.arn));

  const launchTemplate = new ec2.LaunchTemplate('GpuLaunchTemplate', {
    imageId: ssm.getParameterOutput({ name: GPU_AMI_PARAMETER }).value,
    iamInstanceProfile: { arn: roles.instanceProfile.arn },
    networkInterfaces: [
      {
        // Public subnets without a NAT gateway: a NAT costs about $32 a month even at zero
        // load, and the runner only makes outbound calls. The security group admits nothing in.
        associatePublicIpAddress: 'true',
        securityGroups: [network.securityGroup.id],
        deleteOnTermination: 'true',
      },
    ],
    metadataOptions: {
      httpEndpoint: 'enabled',
      httpTokens: 'required',
      // One hop: the ECS agent on the host can reach instance metadata, containers on the
      // bridge network cannot, so the runner can never borrow the instance role.
      httpPutResponseHopLimit: 1,
    },
    blockDeviceMappings: [
      {
        deviceName: '/dev/xvda',
        ebs: { volumeSize: ROOT_VOLUME_GIB, volumeType: 'gp3', encrypted: 'true', deleteOnTermination: 'true' },
      },
    ],
    userData: cluster.name.apply((clusterName) => Buffer.from(ecsUserData(clusterName)).toString('base64')),
    tagSpecifications: [
      { resourceType: 'instance', tags: { Name: `amdm-${args.stage}-gpu-runner` } },
      { resourceType: 'volume', tags: { Name: `amdm-${args.stage}-gpu-runner` } },
    ],
  });

  const autoScalingGroup = new autoscaling.Group(
    'GpuInstances',
    {
      minSize: 0,
      maxSize: args.maxTasks,
      vpcZoneIdentifiers: network.subnets.map((s) => s.id),
      // Required by managed termination protection: instances are born protected, and ECS
      // lifts the protection only from instances that run no task.
      protectFromScaleIn: true,
      // Deleting the group otherwise first scales it to zero and waits, and protected
      // instances never leave (hashicorp/terraform#18507): force deletion terminates them with
      // the group (DeleteAutoScalingGroup ForceDelete). Only where `sst remove` is expected.
      forceDelete: args.forceRemoval,
      mixedInstancesPolicy: {
        launchTemplate: {
          launchTemplateSpecification: { launchTemplateId: launchTemplate.id, version: '$Latest' },
          overrides: args.instanceTypes.map((instanceType) => ({ instanceType })),
        },
        instancesDistribution: {
          // On-demand only: a spot interruption would kill a job mid-sampling. The list order
          // is the preference order.
          onDemandBaseCapacity: 0,
          onDemandPercentageAboveBaseCapacity: 100,
          onDemandAllocationStrategy: 'prioritized',
        },
      },
      tags: [
        // ECS adds this tag when the capacity provider takes the group; declaring it keeps
        // every deploy from fighting ECS over it.
        { key: 'AmazonECSManaged', value: 'true', propagateAtLaunch: true },
      ],
    },
    // Managed scaling owns the instance count; a deploy must not reset it.
    { ignoreChanges: ['desiredCapacity'], dependsOn: args.serviceLinkedRoles?.ec2AutoScaling ?? [] },
  );

  const capacityProvider = new ecs.CapacityProvider(
    'GpuCapacity',
    {
      autoScalingGroupProvider: {
        autoScalingGroupArn: autoScalingGroup.arn,
        managedTerminationProtection: 'ENABLED',
        managedDraining: 'ENABLED',
        managedScaling: {
          status: 'ENABLED',
          // 100: no idle spare instance. A spare GPU instance would cost more than the cold start
          // it saves at this scale.
          targetCapacity: 100,
          minimumScalingStepSize: 1,
          maximumScalingStepSize: args.maxTasks,
          // GPU AMI boot, ECS agent registration and the first image pull take minutes.
          instanceWarmupPeriod: 300,
        },
      },
    },
    // CreateCapacityProvider is the call that fails without ECS's service-linked role
    { dependsOn: ecsRole },
  );

  const clusterCapacity = new ecs.ClusterCapacityProviders('GpuClusterCapacity', {
    clusterName: cluster.name,
    capacityProviders: [capacityProvider.name],
    defaultCapacityProviderStrategies: [{ capacityProvider: capacityProvider.name, weight: 1, base: 0 }],
  });

  const image = interpolate`${repository.repositoryUrl}:${args.runnerImageTag}`;

  const taskDefinition = new ecs.TaskDefinition('RunnerTask', {
    family: `amdm-${args.stage}-gpu-runner`,
    requiresCompatibilities: ['EC2'],
    // Bridge: the runner accepts no connections, so it needs no ENI of its own (GPU
    // instances have few), and the bridge is what the one-hop metadata limit keys on.
    networkMode: 'bridge',
    volumes: [{ name: MODEL_CACHE_VOLUME, hostPath: MODEL_CACHE_HOST_PATH }],
    executionRoleArn: roles.executionRole.arn,
    taskRoleArn: roles.taskRole.arn,
    containerDefinitions: jsonStringify(
      all([
        image,
        args.environment,
        args.publicBaseUrl,
        logGroup.name,
        all(secretParameters.map(([name, p]) => all([name, p.arn]))),
      ]).apply(([image, environment, publicBaseUrl, logGroupName, secrets]) => [
        runnerContainerDefinition({
          image,
          environment: { ...environment, PUBLIC_BASE_URL: publicBaseUrl },
          secrets: Object.fromEntries(secrets),
          logGroupName,
          region: args.region,
        }),
      ]),
    ),
  });

  const service = new ecs.Service(
    'RunnerService',
    {
      cluster: cluster.arn,
      taskDefinition: taskDefinition.arn,
      desiredCount: 0,
      capacityProviderStrategies: [{ capacityProvider: capacityProvider.name, weight: 1, base: 0 }],
      // New tasks start before old ones stop, so a deploy never drops throughput; old tasks
      // that hold a job stay until their protection clears.
      deploymentMinimumHealthyPercent: 100,
      deploymentMaximumPercent: 200,
      deploymentCircuitBreaker: { enable: true, rollback: true },
      enableEcsManagedTags: true,
      propagateTags: 'SERVICE',
      // removal does not wait for the tasks to drain (a protected task may hold a job)
      forceDelete: args.forceRemoval,
    },
    {
      // Application Auto Scaling owns desiredCount; a deploy must not reset it to 0 under a
      // running job.
      ignoreChanges: ['desiredCount'],
      // The capacity provider must be attached to the cluster before a service can use it.
      dependsOn: [clusterCapacity],
    },
  );

  return {
    ...network,
    secretParameters: Object.fromEntries(secretParameters),
    cluster,
    logGroup,
    repository,
    ...roles,
    launchTemplate,
    autoScalingGroup,
    capacityProvider,
    clusterCapacity,
    taskDefinition,
    service,
  };
}

/**
 * Where the fleet goes: the deploy's region and account, and up to three of the region's
 * ordinary zones (Local Zones and Wavelength zones need opt-in and rarely have GPUs).
 */
export async function lookupPlacement(maxZones = 3) {
  const [region, identity, zones] = await Promise.all([
    getRegion(),
    getCallerIdentity(),
    getAvailabilityZones({ state: 'available', filters: [{ name: 'opt-in-status', values: ['opt-in-not-required'] }] }),
  ]);
  return {
    region: region.region,
    accountId: identity.accountId,
    availabilityZones: [...zones.names].sort().slice(0, maxZones),
  };
}

/** ECS agent configuration for the GPU instances. */
export function ecsUserData(clusterName: string): string {
  return [
    '#!/bin/bash',
    'set -euo pipefail',
    `echo "ECS_CLUSTER=${clusterName}" >> /etc/ecs/ecs.config`,
    // Expose the NVIDIA devices as schedulable GPU resources (the GPU AMI's default, stated).
    'echo "ECS_ENABLE_GPU_SUPPORT=true" >> /etc/ecs/ecs.config',
    // Task IAM roles (the default, stated): the runner's AWS calls, and the agent's
    // task-protection endpoint on its behalf, use the task role, never the instance role.
    'echo "ECS_ENABLE_TASK_IAM_ROLE=true" >> /etc/ecs/ecs.config',
    // The runner image is large; keep it cached across task restarts on the same instance.
    'echo "ECS_IMAGE_PULL_BEHAVIOR=prefer-cached" >> /etc/ecs/ecs.config',
    // The model cache the runner tasks bind-mount: made here, owned by the image's user,
    // since Docker would create a missing host path owned by root and the runner could not write.
    `mkdir -p ${MODEL_CACHE_HOST_PATH}`,
    `chown ${RUNNER_UID}:${RUNNER_UID} ${MODEL_CACHE_HOST_PATH}`,
    `chmod 0750 ${MODEL_CACHE_HOST_PATH}`,
    '',
  ].join('\n');
}

function createNetwork(args: GpuFleetArgs) {
  // A VPC of its own with only public subnets: no NAT gateway and no interface endpoints,
  // both of which bill by the hour even when the fleet is at zero.
  const vpc = new ec2.Vpc('GpuVpc', {
    cidrBlock: '10.42.0.0/16',
    enableDnsHostnames: true,
    enableDnsSupport: true,
    tags: { Name: `amdm-${args.stage}-gpu` },
  });
  const internetGateway = new ec2.InternetGateway('GpuInternetGateway', { vpcId: vpc.id });
  const routeTable = new ec2.RouteTable('GpuPublicRoutes', {
    vpcId: vpc.id,
    routes: [{ cidrBlock: '0.0.0.0/0', gatewayId: internetGateway.id }],
  });
  const subnets = args.availabilityZones.map((zone, i) => {
    const subnet = new ec2.Subnet(`GpuSubnet${i}`, {
      vpcId: vpc.id,
      availabilityZone: zone,
      cidrBlock: `10.42.${i * 16}.0/20`,
      mapPublicIpOnLaunch: true,
      tags: { Name: `amdm-${args.stage}-gpu-${zone}` },
    });
    new ec2.RouteTableAssociation(`GpuSubnet${i}Routes`, { subnetId: subnet.id, routeTableId: routeTable.id });
    return subnet;
  });
  // S3 through a gateway endpoint: free, keeps model downloads and image uploads off the
  // public internet path.
  const s3Endpoint = new ec2.VpcEndpoint('GpuS3Endpoint', {
    vpcId: vpc.id,
    serviceName: `com.amazonaws.${args.region}.s3`,
    vpcEndpointType: 'Gateway',
    routeTableIds: [routeTable.id],
  });
  const securityGroup = new ec2.SecurityGroup('GpuInstances', {
    vpcId: vpc.id,
    description: 'AMDM GPU runners: outbound only',
    egress: [{ protocol: '-1', fromPort: 0, toPort: 0, cidrBlocks: ['0.0.0.0/0'], ipv6CidrBlocks: ['::/0'] }],
  });
  return { vpc, internetGateway, routeTable, subnets, s3Endpoint, securityGroup };
}

function createRoles(args: GpuFleetArgs, clusterName: Input<string>, secretParameterArns: Input<string>[]) {
  const instanceRole = new iam.Role('GpuInstanceRole', { assumeRolePolicy: EC2_TRUST_POLICY });
  new iam.RolePolicyAttachment('GpuInstanceEcs', {
    role: instanceRole.name,
    policyArn: MANAGED_POLICIES.ecsInstance,
  });
  const instanceProfile = new iam.InstanceProfile('GpuInstanceProfile', { role: instanceRole.name });

  const ecsTasksTrust = serviceTrustPolicy('ecs-tasks.amazonaws.com', args.accountId);
  const executionRole = new iam.Role('RunnerExecutionRole', { assumeRolePolicy: ecsTasksTrust });
  new iam.RolePolicyAttachment('RunnerExecutionEcs', {
    role: executionRole.name,
    policyArn: MANAGED_POLICIES.ecsTaskExecution,
  });
  if (secretParameterArns.length > 0) {
    new iam.RolePolicy('RunnerExecutionSecrets', {
      role: executionRole.id,
      policy: all(secretParameterArns).apply((arns) => JSON.stringify(runnerExecutionSecretsPolicy(arns))),
    });
  }

  const taskRole = new iam.Role('RunnerTaskRole', { assumeRolePolicy: ecsTasksTrust });
  const taskPolicy = new iam.RolePolicy('RunnerTaskPolicy', {
    role: taskRole.id,
    policy: all([args.bucketArn, args.jobQueueArn, args.jobDeadLetterQueueArn, args.webhookQueueArn, args.countersTableArn, clusterName]).apply(
      ([bucketArn, jobQueueArn, jobDeadLetterQueueArn, webhookQueueArn, countersTableArn, cluster]) =>
        JSON.stringify(
          runnerTaskPolicy({
            bucketArn,
            jobQueueArn,
            jobDeadLetterQueueArn,
            webhookQueueArn,
            countersTableArn,
            clusterTasksArn: `arn:aws:ecs:${args.region}:${args.accountId}:task/${cluster}/*`,
            clusterServicesArn: `arn:aws:ecs:${args.region}:${args.accountId}:service/${cluster}/*`,
          }),
        ),
    ),
  });

  return { instanceRole, instanceProfile, executionRole, taskRole, taskPolicy };
}
