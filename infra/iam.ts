/**
 * IAM policy documents for the edge and the runner, as pure functions of ARNs.
 *
 * Least privilege is the point of this file, so it is written to be read and tested: every
 * statement has a Sid that says what it is for, actions are listed one by one (no wildcards
 * in actions), and object ARNs are limited to the key prefixes of docs/architecture.md.
 *
 * The split of roles follows the store's one-writer-per-key rule:
 * - the edge creates jobs (request.json, cancel.json, index, idempotency, uploads) and reads
 *   API keys and job records; it may enqueue jobs but never consume them;
 * - the runner consumes jobs, writes status/outputs/usage, reads models, and queues and
 *   delivers webhooks (the dispatcher runs in the runner process).
 * Admin keys (apikeys/ writes, apikey-ids/) belong to the operator's own credentials.
 */

export interface PolicyStatement {
  Sid: string;
  Effect: 'Allow' | 'Deny';
  Action: string[];
  Resource: string[];
  Condition?: Record<string, Record<string, string[]>>;
}

export interface PolicyDocument {
  Version: '2012-10-17';
  Statement: PolicyStatement[];
}

export interface EdgeArns {
  bucketArn: string;
  jobQueueArn: string;
}

export interface RunnerArns {
  bucketArn: string;
  jobQueueArn: string;
  jobDeadLetterQueueArn: string;
  webhookQueueArn: string;
  /** ARN pattern of the fleet cluster's tasks: arn:aws:ecs:REGION:ACCOUNT:task/CLUSTER/* */
  clusterTasksArn: string;
}

export function edgePolicy(arns: EdgeArns): PolicyDocument {
  const { bucketArn, jobQueueArn } = arns;
  return {
    Version: '2012-10-17',
    Statement: [
      {
        Sid: 'EnqueueJobs',
        Effect: 'Allow',
        // GetQueueAttributes answers "where is my job in the queue"; receiving and deleting
        // stay with the runner so a compromised edge cannot drain or steal jobs.
        Action: ['sqs:SendMessage', 'sqs:GetQueueAttributes'],
        Resource: [jobQueueArn],
      },
      {
        Sid: 'ReadKeysAndTenantObjects',
        Effect: 'Allow',
        // apikeys/ for authentication; tenants/ for job records, and for signing the short-lived
        // GET URLs of outputs (a presigned URL carries the signer's permissions).
        Action: ['s3:GetObject'],
        Resource: [`${bucketArn}/apikeys/*`, `${bucketArn}/tenants/*`],
      },
      {
        Sid: 'WriteTenantObjects',
        Effect: 'Allow',
        // request.json, cancel.json, index, idempotency claims and uploads (including the
        // presigned PUT URLs handed to clients). Tagging lets uploads carry the expiry tag.
        Action: ['s3:PutObject', 's3:PutObjectTagging'],
        Resource: [`${bucketArn}/tenants/*`],
      },
      {
        Sid: 'ListTenantPrefixes',
        Effect: 'Allow',
        // Job listing and idempotency claims list under tenants/ only; apikeys/ is never listed.
        Action: ['s3:ListBucket'],
        Resource: [bucketArn],
        Condition: { StringLike: { 's3:prefix': ['tenants/*'] } },
      },
    ],
  };
}

export function runnerTaskPolicy(arns: RunnerArns): PolicyDocument {
  const { bucketArn, jobQueueArn, jobDeadLetterQueueArn, webhookQueueArn, clusterTasksArn } = arns;
  return {
    Version: '2012-10-17',
    Statement: [
      {
        Sid: 'ConsumeJobs',
        Effect: 'Allow',
        // Leases: receive, extend (ChangeMessageVisibility), release and ack; the dead-letter
        // queue too, where the worker loop marks dead-lettered jobs failed (and parks
        // messages that name no job).
        Action: [
          'sqs:ReceiveMessage',
          'sqs:DeleteMessage',
          'sqs:ChangeMessageVisibility',
          'sqs:GetQueueAttributes',
        ],
        Resource: [jobQueueArn, jobDeadLetterQueueArn],
      },
      {
        Sid: 'DeliverWebhooks',
        Effect: 'Allow',
        // The worker loop queues webhook messages; the webhook dispatcher, which runs in the
        // same process (gpu-runner/main.ts), leases them and releases failed attempts with a
        // delay until the retry schedule is spent.
        Action: [
          'sqs:SendMessage',
          'sqs:ReceiveMessage',
          'sqs:DeleteMessage',
          'sqs:ChangeMessageVisibility',
          'sqs:GetQueueAttributes',
        ],
        Resource: [webhookQueueArn],
      },
      {
        Sid: 'ReadJobsAndModels',
        Effect: 'Allow',
        Action: ['s3:GetObject'],
        Resource: [`${bucketArn}/tenants/*`, `${bucketArn}/models/*`],
      },
      {
        Sid: 'WriteJobResults',
        Effect: 'Allow',
        // status.json, out/*.png (tagged for lifecycle expiry), usage records and webhook
        // attempt records.
        Action: ['s3:PutObject', 's3:PutObjectTagging'],
        Resource: [`${bucketArn}/tenants/*`],
      },
      {
        Sid: 'ListModelsAndJobs',
        Effect: 'Allow',
        Action: ['s3:ListBucket'],
        Resource: [bucketArn],
        Condition: { StringLike: { 's3:prefix': ['models/*', 'tenants/*'] } },
      },
      {
        Sid: 'TaskScaleInProtection',
        Effect: 'Allow',
        // The ECS agent's task-protection endpoint calls ECS with the task role; the resource
        // pattern keeps a runner from protecting (or unprotecting) tasks of any other cluster.
        Action: ['ecs:UpdateTaskProtection', 'ecs:GetTaskProtection'],
        Resource: [clusterTasksArn],
      },
    ],
  };
}

/**
 * The task execution role reads the runner's secrets from SSM to inject them into the
 * container; the parameters are SecureStrings under the default aws/ssm key, which needs no
 * kms grant of its own.
 */
export function runnerExecutionSecretsPolicy(parameterArns: string[]): PolicyDocument {
  return {
    Version: '2012-10-17',
    Statement: [{ Sid: 'ReadRunnerSecrets', Effect: 'Allow', Action: ['ssm:GetParameters'], Resource: parameterArns }],
  };
}

/**
 * Trust policy for a role assumed by an AWS service on this account's behalf. The source
 * account condition stops another account's resources from using the service as a confused
 * deputy to obtain this role.
 */
export function serviceTrustPolicy(service: string, accountId: string): string {
  return JSON.stringify({
    Version: '2012-10-17',
    Statement: [
      {
        Effect: 'Allow',
        Principal: { Service: service },
        Action: 'sts:AssumeRole',
        Condition: { StringEquals: { 'aws:SourceAccount': accountId } },
      },
    ],
  });
}

/** EC2 does not send aws:SourceAccount when it assumes an instance role, so no condition. */
export const EC2_TRUST_POLICY = JSON.stringify({
  Version: '2012-10-17',
  Statement: [{ Effect: 'Allow', Principal: { Service: 'ec2.amazonaws.com' }, Action: 'sts:AssumeRole' }],
});

/** AWS managed policies, by the job that needs them and nothing more. */
export const MANAGED_POLICIES = {
  /** ECS agent on the instance: register with the cluster, pull from ECR, write container logs. */
  ecsInstance: 'arn:aws:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role',
  /** Task execution: pull the runner image from ECR and create its log streams. */
  ecsTaskExecution: 'arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy',
} as const;

/**
 * SST's Function takes permissions in its own shape; this converts the statements above so
 * the edge's role is built from the same document the tests read.
 */
export function toSstPermissions(doc: PolicyDocument): {
  effect: 'allow' | 'deny';
  actions: string[];
  resources: string[];
  conditions?: { test: string; variable: string; values: string[] }[];
}[] {
  return doc.Statement.map((s) => ({
    effect: s.Effect === 'Allow' ? ('allow' as const) : ('deny' as const),
    actions: s.Action,
    resources: s.Resource,
    ...(s.Condition
      ? {
          conditions: Object.entries(s.Condition).flatMap(([test, vars]) =>
            Object.entries(vars).map(([variable, values]) => ({ test, variable, values })),
          ),
        }
      : {}),
  }));
}
