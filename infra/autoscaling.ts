/**
 * Scaling the runner service on queue backlog, including to and from zero.
 *
 * Three mechanisms, each for one job:
 * 1. Target tracking on backlog per task: (visible + in-flight jobs) / running tasks, held
 *    near `targetBacklogPerTask`. In-flight counts because a job being sampled still occupies
 *    a task; counting only visible messages would shrink the fleet under a steady load that
 *    the tasks just keep up with.
 * 2. Start from zero: target tracking cannot leave zero (with no running task the ratio has
 *    no value), so an alarm on "work waiting and no task desired" triggers a step policy that
 *    sets the desired count to 1. Target tracking takes over once that task runs.
 * 3. Scale to zero: when the queue has been empty (visible + in flight == 0) for
 *    `idleMinutes`, a second alarm sets the desired count to 0. ECS then stops only tasks
 *    without scale-in protection; a runner that still holds a job keeps running.
 *
 * A fleet that cannot start must not be restarted forever (infra/alerts.ts scales it to zero
 * when tasks are wanted and none has run for `startTimeoutMinutes`). So the start from zero
 * only answers jobs younger than that: the jobs that were waiting while the fleet failed are
 * older, and they keep it at zero, and notified, until an operator starts it again
 * (docs/deploy.md). They stay queued, never lost; a job submitted later does not restart the
 * fleet either while they wait, since the age is the oldest job's. A runner that fails to
 * start on its own terms fails the waiting jobs instead (gpu-runner/aws/start-failure.ts),
 * which empties the queue, so the next job starts the fleet again.
 *
 * The warm pool (`minTasks`) is the scalable target's minimum: no policy goes below it. With
 * no runner image pushed yet (the bootstrap tag) minimum and maximum are 0: there is nothing
 * a task could run, and an instance pulling a missing image forever is money for nothing.
 *
 * Target tracking must never choose zero itself, or the idle time would be whatever its own
 * scale-in alarm decides (15 minutes, not configurable). Its metric is therefore floored at a
 * small positive value while tasks run: a proportional scale-in from n tasks then asks for at
 * least one.
 */
import { interpolate, output, type Input, type Resource } from '@pulumi/pulumi';
import { appautoscaling, cloudwatch } from '@pulumi/aws';

/** Backlog per task: the series target tracking holds at the target value. */
export const BACKLOG_PER_TASK_EXPRESSION = '(visible + inflight) / running';
/** Floor for the tracked metric while any task runs (see the header). */
export const BACKLOG_FLOOR = 0.01;
export const TRACKED_EXPRESSION = `IF(backlog < ${BACKLOG_FLOOR}, ${BACKLOG_FLOOR}, backlog)`;
/**
 * 1 when jobs wait (visible or in flight), no task is desired, and the oldest job is younger
 * than the start timeout (`$START_TIMEOUT_SECONDS`, see the header), else 0.
 */
export const START_FROM_ZERO_EXPRESSION =
  'IF(FILL(desired, 0) == 0 AND (FILL(visible, 0) + FILL(inflight, 0)) > 0 AND FILL(oldest, 0) < $START_TIMEOUT_SECONDS, 1, 0)';
/** All the work the queue holds: waiting plus leased. Zero means idle. */
export const QUEUE_WORK_EXPRESSION = 'FILL(visible, 0) + FILL(inflight, 0)';

const PERIOD_SECONDS = 60;

export interface ScalingArgs {
  clusterName: Input<string>;
  serviceName: Input<string>;
  jobQueueArn: Input<string>;
  maxTasks: number;
  /** tasks kept with an empty queue (the warm pool) */
  minTasks: number;
  /** false while no runner image exists (the bootstrap tag): the fleet stays at zero */
  imagePushed: boolean;
  /** jobs older than this do not start the fleet from zero (see the header) */
  startTimeoutMinutes: number;
  idleMinutes: number;
  targetBacklogPerTask: number;
  /** Application Auto Scaling's service-linked role when this deploy creates it (infra/service-roles.ts) */
  serviceLinkedRole?: Resource[];
}

export function createRunnerScaling(args: ScalingArgs) {
  if (!Number.isInteger(args.idleMinutes) || args.idleMinutes < 1 || args.idleMinutes > 1440) {
    throw new RangeError(`createRunnerScaling: idleMinutes=${args.idleMinutes}; allowed: 1..1440`);
  }
  if (!Number.isInteger(args.minTasks) || args.minTasks < 0 || args.minTasks > args.maxTasks) {
    throw new RangeError(`createRunnerScaling: minTasks=${args.minTasks}; allowed: 0..${args.maxTasks}`);
  }
  if (!Number.isInteger(args.startTimeoutMinutes) || args.startTimeoutMinutes < 1) {
    throw new RangeError(`createRunnerScaling: startTimeoutMinutes=${args.startTimeoutMinutes}; allowed: a whole number >= 1`);
  }
  if (!(args.targetBacklogPerTask > BACKLOG_FLOOR)) {
    throw new RangeError(`createRunnerScaling: targetBacklogPerTask=${args.targetBacklogPerTask}; allowed: > ${BACKLOG_FLOOR}`);
  }

  const target = new appautoscaling.Target(
    'RunnerScalingTarget',
    {
      serviceNamespace: 'ecs',
      scalableDimension: 'ecs:service:DesiredCount',
      resourceId: interpolate`service/${args.clusterName}/${args.serviceName}`,
      minCapacity: args.imagePushed ? args.minTasks : 0,
      maxCapacity: args.imagePushed ? args.maxTasks : 0,
    },
    { dependsOn: args.serviceLinkedRole ?? [] },
  );
  const targetRef = {
    serviceNamespace: target.serviceNamespace,
    scalableDimension: target.scalableDimension,
    resourceId: target.resourceId,
  };

  const sqs = sqsMetrics(output(args.jobQueueArn).apply(queueNameFromArn));
  const ecsTasks = (metricName: 'RunningTaskCount' | 'DesiredTaskCount') => ({
    namespace: 'ECS/ContainerInsights',
    metricName,
    dimensions: { ClusterName: args.clusterName, ServiceName: args.serviceName },
  });

  const backlogTracking = new appautoscaling.Policy('RunnerBacklogTracking', {
    ...targetRef,
    policyType: 'TargetTrackingScaling',
    targetTrackingScalingPolicyConfiguration: {
      targetValue: args.targetBacklogPerTask,
      // Scale out fast (a GPU instance takes minutes to arrive anyway), in slowly.
      scaleOutCooldown: 60,
      scaleInCooldown: 300,
      customizedMetricSpecification: {
        metrics: [
          stat('visible', sqs.visible, 'Maximum'),
          stat('inflight', sqs.inflight, 'Maximum'),
          stat('running', ecsTasks('RunningTaskCount'), 'Average'),
          { id: 'backlog', expression: BACKLOG_PER_TASK_EXPRESSION, label: 'jobs per running task', returnData: false },
          { id: 'tracked', expression: TRACKED_EXPRESSION, label: 'jobs per running task, floored', returnData: true },
        ].map(toTrackingQuery),
      },
    },
  });

  const startFromZero = new appautoscaling.Policy('RunnerStartFromZero', {
    ...targetRef,
    policyType: 'StepScaling',
    stepScalingPolicyConfiguration: {
      // Exact, not +1: the alarm stays in ALARM until the desired count shows up in the
      // metrics, and an exact capacity can be applied any number of times.
      adjustmentType: 'ExactCapacity',
      cooldown: 60,
      metricAggregationType: 'Maximum',
      stepAdjustments: [{ metricIntervalLowerBound: '0', scalingAdjustment: 1 }],
    },
  });
  const startFromZeroAlarm = new cloudwatch.MetricAlarm('RunnerStartFromZeroAlarm', {
    alarmDescription: 'Jobs are waiting and the runner service has no task: start one',
    comparisonOperator: 'GreaterThanOrEqualToThreshold',
    threshold: 1,
    evaluationPeriods: 1,
    datapointsToAlarm: 1,
    treatMissingData: 'notBreaching',
    metricQueries: [
      alarmStat('visible', sqs.visible, 'Maximum'),
      alarmStat('inflight', sqs.inflight, 'Maximum'),
      alarmStat('desired', ecsTasks('DesiredTaskCount'), 'Maximum'),
      alarmStat('oldest', sqs.oldest, 'Maximum'),
      {
        id: 'start',
        expression: START_FROM_ZERO_EXPRESSION.replace('$START_TIMEOUT_SECONDS', String(args.startTimeoutMinutes * 60)),
        label: 'young work waiting with no task',
        returnData: true,
      },
    ],
    alarmActions: [startFromZero.arn],
  });

  const scaleToZero = new appautoscaling.Policy('RunnerScaleToZero', {
    ...targetRef,
    policyType: 'StepScaling',
    stepScalingPolicyConfiguration: {
      adjustmentType: 'ExactCapacity',
      cooldown: 60,
      metricAggregationType: 'Maximum',
      // The alarm fires when work < 1, i.e. work == 0: work - threshold <= 0.
      stepAdjustments: [{ metricIntervalUpperBound: '0', scalingAdjustment: 0 }],
    },
  });
  const scaleToZeroAlarm = new cloudwatch.MetricAlarm('RunnerScaleToZeroAlarm', {
    alarmDescription: `The job queue has been empty (visible + in flight == 0) for ${args.idleMinutes} minutes: scale the runners to zero`,
    comparisonOperator: 'LessThanThreshold',
    threshold: 1,
    evaluationPeriods: args.idleMinutes,
    datapointsToAlarm: args.idleMinutes,
    // FILL makes the series continuous; a gap in SQS metrics is not evidence of idleness.
    treatMissingData: 'notBreaching',
    metricQueries: [
      alarmStat('visible', sqs.visible, 'Maximum'),
      alarmStat('inflight', sqs.inflight, 'Maximum'),
      { id: 'work', expression: QUEUE_WORK_EXPRESSION, label: 'jobs waiting or running', returnData: true },
    ],
    alarmActions: [scaleToZero.arn],
  });

  return { target, targetRef, backlogTracking, startFromZero, startFromZeroAlarm, scaleToZero, scaleToZeroAlarm, ecsTasks, sqs };
}

/** SQS metrics are keyed by queue name, the last field of arn:aws:sqs:REGION:ACCOUNT:NAME. */
export function queueNameFromArn(arn: string): string {
  const parts = arn.split(':');
  if (parts.length !== 6 || parts[2] !== 'sqs' || parts[5] === '') {
    throw new Error(`"${arn}" is not an SQS queue ARN; expected arn:aws:sqs:REGION:ACCOUNT:NAME`);
  }
  return parts[5]!;
}

export interface MetricRef {
  namespace: string;
  metricName: string;
  dimensions: Record<string, Input<string>>;
}

function sqsMetrics(queueName: Input<string>) {
  const metric = (metricName: string): MetricRef => ({
    namespace: 'AWS/SQS',
    metricName,
    dimensions: { QueueName: queueName },
  });
  return {
    visible: metric('ApproximateNumberOfMessagesVisible'),
    // "Not visible" is SQS for leased: the jobs runners are working on right now.
    inflight: metric('ApproximateNumberOfMessagesNotVisible'),
    oldest: metric('ApproximateAgeOfOldestMessage'),
  };
}

function stat(id: string, metric: MetricRef, statistic: string) {
  return { id, metric, stat: statistic, returnData: false };
}

type TrackingInput =
  | ReturnType<typeof stat>
  | { id: string; expression: string; label: string; returnData: boolean };

function toTrackingQuery(q: TrackingInput) {
  if ('expression' in q) return q;
  return {
    id: q.id,
    returnData: q.returnData,
    metricStat: {
      stat: q.stat,
      metric: {
        namespace: q.metric.namespace,
        metricName: q.metric.metricName,
        dimensions: Object.entries(q.metric.dimensions).map(([name, value]) => ({ name, value })),
      },
    },
  };
}

export function alarmStat(id: string, metric: MetricRef, statistic: string) {
  return {
    id,
    returnData: false,
    metric: {
      namespace: metric.namespace,
      metricName: metric.metricName,
      dimensions: metric.dimensions,
      period: PERIOD_SECONDS,
      stat: statistic,
    },
  };
}
