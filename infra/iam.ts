/**
 * IAM policy documents for the edge and the runner, as pure functions of ARNs.
 *
 * Least privilege is the point of this file, so it is written to be read and tested: every
 * statement has a Sid that says what it is for, actions are listed one by one (no wildcards
 * in actions), and object ARNs are limited to the key prefixes of docs/architecture.md.
 *
 * The split of roles follows the store's one-writer-per-key rule:
 * - the edge creates jobs (request.json, cancel.json, index, idempotency, uploads) and reads
 *   API keys and job records; it may enqueue jobs but never consume them; it counts active
 *   jobs and request rates in the counters table (read and conditional update, never delete);
 * - the runner consumes jobs, writes status/outputs/usage, reads models, enqueues webhooks
 *   (send only), and releases finished jobs from the active-job counts (update of `admit#`
 *   items only);
 * - the webhook Lambda consumes the webhook queue (SST's subscription grants exactly that),
 *   reads job records and writes only the webhook attempt records.
 * Admin keys (apikeys/ writes, apikey-ids/) belong to the operator's own credentials.
 *
 * ListBucket matters beyond listing. For a GetObject (or HeadObject) of a key that does not
 * exist, S3 answers 404 NoSuchKey when the caller has s3:ListBucket on the bucket and 403
 * AccessDenied when it does not (GetObject API reference, "Permissions"). What that check
 * puts in the request context is not documented: whether an `s3:prefix` condition on the
 * ListBucket grant is evaluated against the key (Ceph's RGW says AWS does, in its PR 68577)
 * or fails because a GetObject has no s3:prefix (what the review of this stack reported).
 * Only AWS can settle it, so the stack does not depend on the answer: every role that reads
 * keys which may be absent (API keys, status.json, cancel.json, request.json, webhook
 * attempts, model files) holds s3:ListBucket on the bucket without a condition. That lets
 * those roles list every key name in the bucket; it grants no read of any object, the names
 * under apikeys/ are peppered hashes, and the edge already lists every tenant's jobs.
 * The stores still treat an AccessDenied on a read as an error with a message that says
 * this (adapters/aws/s3-store.ts), never as "absent".
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
  /** the counters table (infra/counters.ts) */
  countersTableArn: string;
}

export interface RunnerArns {
  bucketArn: string;
  jobQueueArn: string;
  jobDeadLetterQueueArn: string;
  webhookQueueArn: string;
  /** ARN pattern of the fleet cluster's tasks: arn:aws:ecs:REGION:ACCOUNT:task/CLUSTER/* */
  clusterTasksArn: string;
  /** ARN pattern of the fleet cluster's services: arn:aws:ecs:REGION:ACCOUNT:service/CLUSTER/* */
  clusterServicesArn: string;
  /** the counters table (infra/counters.ts) */
  countersTableArn: string;
}

export function edgePolicy(arns: EdgeArns): PolicyDocument {
  const { bucketArn, jobQueueArn, countersTableArn } = arns;
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
      // Job listing and idempotency claims list under tenants/; an unknown API key, a job
      // without cancel.json or status.json must read as NoSuchKey (401, "not canceled",
      // "queued"), not AccessDenied (500).
      listBucketForMissingKeys(bucketArn),
      {
        Sid: 'CountActiveJobsAndRequests',
        Effect: 'Allow',
        // admit#{tenant}: read the admitted jobs, admit one (conditional update), release one;
        // rate#{subject}#{window}: count a request (conditional update). No delete, no scan:
        // items go through the table's TTL.
        Action: ['dynamodb:GetItem', 'dynamodb:UpdateItem'],
        Resource: [countersTableArn],
      },
    ],
  };
}

export function runnerTaskPolicy(arns: RunnerArns): PolicyDocument {
  const { bucketArn, jobQueueArn, jobDeadLetterQueueArn, webhookQueueArn, clusterTasksArn, clusterServicesArn, countersTableArn } = arns;
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
        Sid: 'EnqueueWebhooks',
        Effect: 'Allow',
        // The worker loop puts a webhook message in the outbox when a job ends; the webhook
        // Lambda delivers it (infra/webhooks.ts). The runner never reads the queue.
        Action: ['sqs:SendMessage'],
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
        // status.json, out/*.png (tagged for lifecycle expiry) and usage records.
        Action: ['s3:PutObject', 's3:PutObjectTagging'],
        Resource: [`${bucketArn}/tenants/*`],
      },
      // status.json and cancel.json of a job that has none yet, a model file missing from the
      // upload, the fleet's start records (gpu-runner/aws/start-failure.ts)
      listBucketForMissingKeys(bucketArn),
      {
        Sid: 'RecordStarts',
        Effect: 'Allow',
        // one record per start and per failed start, tagged for expiry (gpu-runner/aws/start-failure.ts)
        Action: ['s3:PutObject', 's3:PutObjectTagging'],
        Resource: [`${bucketArn}/fleet/*`],
      },
      {
        Sid: 'GiveUpStarting',
        Effect: 'Allow',
        // after repeated failed starts with no other task running: read the service's running
        // count, then set its desired count to 0; only the services of the fleet's own cluster
        Action: ['ecs:DescribeServices', 'ecs:UpdateService'],
        Resource: [clusterServicesArn],
      },
      {
        Sid: 'TaskScaleInProtection',
        Effect: 'Allow',
        // The ECS agent's task-protection endpoint calls ECS with the task role; the resource
        // pattern keeps a runner from protecting (or unprotecting) tasks of any other cluster.
        Action: ['ecs:UpdateTaskProtection', 'ecs:GetTaskProtection'],
        Resource: [clusterTasksArn],
      },
      {
        Sid: 'ReleaseJobSlots',
        Effect: 'Allow',
        // a finished job leaves its tenant's active-job count (adapters/aws/dynamo-admission.ts);
        // only the admit# items, so a runner can neither read nor reset the request counts
        Action: ['dynamodb:UpdateItem'],
        Resource: [countersTableArn],
        Condition: { 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': ['admit#*'] } },
      },
    ],
  };
}

export interface WebhookDeliveryArns {
  bucketArn: string;
}

/**
 * The webhook Lambda, beyond what subscribing it to the webhook queue grants (receive,
 * delete, change visibility and read attributes on that queue only).
 */
export function webhookDeliveryPolicy(arns: WebhookDeliveryArns): PolicyDocument {
  const { bucketArn } = arns;
  return {
    Version: '2012-10-17',
    Statement: [
      {
        Sid: 'ReadJobRecords',
        Effect: 'Allow',
        // request.json (the webhook URL), status.json, cancel.json and earlier attempts, to
        // assemble the payload; and the signing of the payload's presigned output URLs.
        Action: ['s3:GetObject'],
        Resource: [`${bucketArn}/tenants/*`],
      },
      {
        Sid: 'WriteWebhookAttempts',
        Effect: 'Allow',
        // One record per delivery attempt, and nothing else: not the status, not the usage.
        Action: ['s3:PutObject'],
        Resource: [`${bucketArn}/tenants/*/jobs/*/webhook/*`],
      },
      // the attempts of a job are listed; status.json and cancel.json may be absent
      listBucketForMissingKeys(bucketArn),
    ],
  };
}

/**
 * s3:ListBucket on the whole bucket, with no s3:prefix condition: what makes S3 answer a
 * missing key with 404 instead of 403 whatever the answer to the question in the header.
 */
export function listBucketForMissingKeys(bucketArn: string): PolicyStatement {
  return {
    Sid: 'ListBucketSoMissingKeysRead404',
    Effect: 'Allow',
    Action: ['s3:ListBucket'],
    Resource: [bucketArn],
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
