/**
 * A fleet that cannot start must not burn money silently.
 *
 * What goes wrong and who notices:
 * - The image is missing or cannot be pulled, or no instance can be launched (no GPU quota, no
 *   capacity): no runner process ever runs. ECS keeps retrying, and the instance, if there is
 *   one, keeps running. The "not starting" alarm sees tasks wanted and none running for
 *   `startTimeoutMinutes`, notifies, and sets the desired count to 0; the start from zero then
 *   ignores the jobs that waited through it (infra/autoscaling.ts), so the fleet stays at zero
 *   until an operator starts it again. ECS's own "task failed to start" events reach the same
 *   topic at once, with ECS's reason (CannotPullContainerError ...).
 * - The runner runs but cannot start (models missing, a checksum mismatch, CUDA failing to
 *   build a session): the task starts and stops, so "running" flickers and the alarm may never
 *   fire. The runner handles that itself (gpu-runner/aws/start-failure.ts): after repeated
 *   failures it fails the waiting jobs with the reason, sets the desired count to 0, and exits
 *   with RUNNER_GAVE_UP_EXIT_CODE, which the event rule forwards to the topic.
 * - Anything else that leaves jobs waiting (the fleet at its maximum for an hour, a
 *   misconfiguration nobody foresaw): the oldest job's age alarm.
 *
 * The topic is the operator's: an email subscription (`AMDM_ALERT_EMAIL`, confirmed by a
 * mail from SNS) and/or an existing topic (`AMDM_ALERT_TOPIC_ARN`) that every alarm also
 * notifies. Each message names the stage.
 */
import { interpolate, jsonStringify, output, type Input } from '@pulumi/pulumi';
import { appautoscaling, cloudwatch, sns } from '@pulumi/aws';
import { RUNNER_GAVE_UP_EXIT_CODE } from '../gpu-runner/aws/start-failure.ts';
import { alarmStat, type MetricRef } from './autoscaling.ts';

/** The runner's exit code after it gave up starting: the event rule matches it. */
export { RUNNER_GAVE_UP_EXIT_CODE };
/** 1 while tasks are wanted and none runs. */
export const NOT_STARTING_EXPRESSION = 'IF(FILL(desired, 0) >= 1 AND FILL(running, 0) == 0, 1, 0)';
/** A job waiting this long means something is wrong, whatever it is. */
export const OLDEST_JOB_ALARM_MINUTES = 60;

export interface AlertArgs {
  stage: string;
  accountId: string;
  clusterArn: Input<string>;
  clusterName: Input<string>;
  serviceName: Input<string>;
  /** the scalable target of the service's desired count (infra/autoscaling.ts) */
  target: { serviceNamespace: Input<string>; scalableDimension: Input<string>; resourceId: Input<string> };
  /** ECS task counts of the service and the job queue's metrics, as the scaling reads them */
  ecsTasks: (metricName: 'RunningTaskCount' | 'DesiredTaskCount') => MetricRef;
  oldestJob: MetricRef;
  startTimeoutMinutes: number;
  alertEmail: string | null;
  alertTopicArn: string | null;
}

export function createFleetAlerts(args: AlertArgs) {
  const topic = new sns.Topic('Alerts', { displayName: `AMDM ${args.stage}` });
  // CloudWatch alarms and EventBridge publish as their service principals; only for this
  // account's alarms and this stack's rule (confused-deputy conditions)
  new sns.TopicPolicy('AlertsPublishers', {
    arn: topic.arn,
    policy: jsonStringify({
      Version: '2012-10-17',
      Statement: [
        {
          Sid: 'CloudWatchAlarms',
          Effect: 'Allow',
          Principal: { Service: 'cloudwatch.amazonaws.com' },
          Action: 'sns:Publish',
          Resource: topic.arn,
          Condition: { StringEquals: { 'aws:SourceAccount': args.accountId } },
        },
        {
          Sid: 'EcsTaskEvents',
          Effect: 'Allow',
          Principal: { Service: 'events.amazonaws.com' },
          Action: 'sns:Publish',
          Resource: topic.arn,
          Condition: { StringEquals: { 'aws:SourceAccount': args.accountId } },
        },
      ],
    }),
  });
  if (args.alertEmail) {
    new sns.TopicSubscription('AlertsEmail', { topic: topic.arn, protocol: 'email', endpoint: args.alertEmail });
  }
  const notify: Input<string>[] = [topic.arn, ...(args.alertTopicArn ? [args.alertTopicArn] : [])];

  const stopStarting = new appautoscaling.Policy('RunnerStopStarting', {
    ...args.target,
    policyType: 'StepScaling',
    stepScalingPolicyConfiguration: {
      adjustmentType: 'ExactCapacity',
      cooldown: 60,
      metricAggregationType: 'Maximum',
      stepAdjustments: [{ metricIntervalLowerBound: '0', scalingAdjustment: 0 }],
    },
  });
  const notStarting = new cloudwatch.MetricAlarm('RunnerNotStartingAlarm', {
    alarmDescription:
      `AMDM ${args.stage}: runner tasks have been wanted for ${args.startTimeoutMinutes} minutes and none is running ` +
      '(no runner image, no GPU capacity or quota, or tasks failing to start). The service was set to 0 tasks; ' +
      'see docs/deploy.md "When the fleet cannot start" to find the reason and start it again.',
    comparisonOperator: 'GreaterThanOrEqualToThreshold',
    threshold: 1,
    evaluationPeriods: args.startTimeoutMinutes,
    datapointsToAlarm: args.startTimeoutMinutes,
    treatMissingData: 'notBreaching',
    metricQueries: [
      alarmStat('desired', args.ecsTasks('DesiredTaskCount'), 'Minimum'),
      alarmStat('running', args.ecsTasks('RunningTaskCount'), 'Maximum'),
      { id: 'stuck', expression: NOT_STARTING_EXPRESSION, label: 'tasks wanted, none running', returnData: true },
    ],
    // no OK action: setting the service to 0 clears the condition a minute later, which is
    // not a recovery
    alarmActions: [...notify, stopStarting.arn],
  });

  const oldestJob = new cloudwatch.MetricAlarm('JobsWaitingAlarm', {
    alarmDescription:
      `AMDM ${args.stage}: a job has waited more than ${OLDEST_JOB_ALARM_MINUTES} minutes in the job queue ` +
      '(the fleet cannot start, is held at zero after failing to, or is too small for the load).',
    comparisonOperator: 'GreaterThanThreshold',
    threshold: OLDEST_JOB_ALARM_MINUTES * 60,
    evaluationPeriods: 5,
    datapointsToAlarm: 5,
    treatMissingData: 'notBreaching',
    namespace: args.oldestJob.namespace,
    metricName: args.oldestJob.metricName,
    dimensions: args.oldestJob.dimensions,
    statistic: 'Maximum',
    period: 60,
    alarmActions: notify,
    okActions: notify,
  });

  // ECS's own word on a task of this cluster that failed to start, or a runner that gave up
  const taskEvents = new cloudwatch.EventRule('RunnerTaskFailures', {
    description: `AMDM ${args.stage}: runner tasks that fail to start`,
    eventPattern: jsonStringify({
      source: ['aws.ecs'],
      'detail-type': ['ECS Task State Change'],
      detail: {
        clusterArn: [args.clusterArn],
        lastStatus: ['STOPPED'],
        $or: [{ stopCode: ['TaskFailedToStart'] }, { containers: { exitCode: [RUNNER_GAVE_UP_EXIT_CODE] } }],
      },
    }),
  });
  new cloudwatch.EventTarget('RunnerTaskFailuresToAlerts', {
    rule: taskEvents.name,
    arn: topic.arn,
    inputTransformer: {
      inputPaths: { task: '$.detail.taskArn', code: '$.detail.stopCode', reason: '$.detail.stoppedReason' },
      inputTemplate: output(args.stage).apply(
        (stage) => `"AMDM ${stage}: runner task <task> stopped (<code>): <reason>. See docs/deploy.md, When the fleet cannot start."`,
      ),
    },
  });

  return { topic, stopStarting, notStarting, oldestJob, taskEvents, resumeCommand: interpolate`aws ecs update-service --cluster ${args.clusterName} --service ${args.serviceName} --desired-count 1` };
}
