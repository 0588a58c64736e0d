/**
 * A stand-in for the SST globals that sst.config.ts and infra/ use (`sst`, `aws`, `$app`,
 * `$config`), for running the real config under Pulumi mocks.
 *
 * It does not imitate what SST builds inside its components: each component is a Pulumi
 * ComponentResource that records the arguments our code passed and exposes the outputs our
 * code reads (arn, url, name). Tests assert on those arguments. What SST makes of them (that
 * no `access` means a blocked bucket, that `dlq.retry` becomes maxReceiveCount, the link env
 * format) is checked against the real SST components in sst-components.test.ts.
 */
import * as pulumi from '@pulumi/pulumi';
import * as awsProvider from '@pulumi/aws';
import { ACCOUNT_ID, REGION } from './pulumi-mocks.ts';

export interface ShimRecord {
  type: string;
  name: string;
  args: any;
}

export const components: ShimRecord[] = [];

class Shim extends pulumi.ComponentResource {
  constructor(type: string, readonly logicalName: string, readonly args: any) {
    super(type, logicalName, {}, {});
    components.push({ type, name: logicalName, args });
    this.registerOutputs({});
  }
}

const physical = (name: string) => `amdm-test-${name.toLowerCase()}`;

class Bucket extends Shim {
  readonly name: pulumi.Output<string>;
  readonly arn: pulumi.Output<string>;
  constructor(name: string, args: any = {}) {
    super('sst:aws:Bucket', name, args);
    this.name = pulumi.output(physical(name));
    this.arn = pulumi.output(`arn:aws:s3:::${physical(name)}`);
  }
  // SST's own default: every linked Bucket grants s3:* (replaced by infra/links.ts).
  getSSTLink() {
    return { properties: { name: this.name }, include: [{ type: 'aws.permission', actions: ['s3:*'], resources: [this.arn] }] };
  }
}

class Queue extends Shim {
  readonly arn: pulumi.Output<string>;
  readonly url: pulumi.Output<string>;
  constructor(name: string, args: any = {}) {
    super('sst:aws:Queue', name, args);
    this.arn = pulumi.output(`arn:aws:sqs:${REGION}:${ACCOUNT_ID}:${physical(name)}`);
    this.url = pulumi.output(`https://sqs.${REGION}.amazonaws.com/${ACCOUNT_ID}/${physical(name)}`);
  }
  getSSTLink() {
    return { properties: { url: this.url }, include: [{ type: 'aws.permission', actions: ['sqs:*'], resources: [this.arn] }] };
  }
  /** Records the subscription; what SST builds from it is its QueueLambdaSubscriber's business. */
  subscribe(subscriber: unknown, args: any = {}) {
    return new QueueSubscriber(`${this.logicalName}Subscriber`, { queue: this, subscriber, ...args });
  }
}

class QueueSubscriber extends Shim {
  constructor(name: string, args: any) {
    super('sst:aws:QueueLambdaSubscriber', name, args);
  }
}

class Dynamo extends Shim {
  readonly name: pulumi.Output<string>;
  readonly arn: pulumi.Output<string>;
  constructor(name: string, args: any) {
    super('sst:aws:Dynamo', name, args);
    this.name = pulumi.output(physical(name));
    this.arn = pulumi.output(`arn:aws:dynamodb:${REGION}:${ACCOUNT_ID}:table/${physical(name)}`);
  }
  // SST's own default: every linked Dynamo grants dynamodb:* (replaced by infra/links.ts).
  getSSTLink() {
    return { properties: { name: this.name }, include: [{ type: 'aws.permission', actions: ['dynamodb:*'], resources: [this.arn] }] };
  }
}

class Router extends Shim {
  readonly url = pulumi.output('https://d1234abcd.cloudfront.net');
  constructor(name: string, args: any = {}) {
    super('sst:aws:Router', name, args);
  }
}

class Function extends Shim {
  constructor(name: string, args: any) {
    super('sst:aws:Function', name, args);
  }
}

class Secret extends Shim {
  readonly value: pulumi.Output<string>;
  constructor(name: string) {
    super('sst:sst:Secret', name, {});
    this.value = pulumi.secret(`${name}-value`);
  }
  getSSTLink() {
    return { properties: { value: this.value } };
  }
}

/** Marks the environment that sst.Linkable.env returned, to follow it into the task definition. */
export const LINK_ENV_MARKER = 'SHIM_FROM_LINKABLE_ENV';
export const linkEnvCalls: unknown[][] = [];

class Linkable {
  constructor(
    readonly logicalName: string,
    readonly args: { properties: Record<string, unknown> },
  ) {
    components.push({ type: 'sst:sst:Linkable', name: logicalName, args });
  }
  getSSTLink() {
    return { properties: this.args.properties };
  }
  static wrapped = new Map<unknown, (resource: any) => unknown>();
  static wrap(cls: { prototype: any }, cb: (resource: any) => unknown) {
    Linkable.wrapped.set(cls, cb);
    cls.prototype.getSSTLink = function (this: unknown) {
      return cb(this);
    };
  }
  /** One SST_RESOURCE_<name> per link, holding its link properties (the format is SST's). */
  static env(links: Shim[]) {
    linkEnvCalls.push(links);
    const properties = links.map((l) => pulumi.output((l as any).getSSTLink().properties));
    return pulumi.all(properties).apply((props) => ({
      [LINK_ENV_MARKER]: '1',
      ...Object.fromEntries(links.map((l, i) => [`SST_RESOURCE_${l.logicalName}`, JSON.stringify(props[i])])),
    }));
  }
}

/** The project root SST resolves paths against ($cli.paths.root): this checkout. */
export const SHIM_ROOT = new URL('../../', import.meta.url).pathname.replace(/\/$/, '');

export function installSstShim(stage = 'test') {
  components.length = 0;
  linkEnvCalls.length = 0;
  Object.assign(globalThis, {
    sst: { aws: { Bucket, Queue, Router, Function, Dynamo }, Secret, Linkable },
    aws: awsProvider,
    // as sst.config.ts's app() decides them
    $app: { name: 'amdm', stage, removal: stage === 'prod' ? 'retain' : 'remove', protect: stage === 'prod', providers: {} },
    $dev: false,
    $cli: { command: 'deploy', paths: { root: SHIM_ROOT } },
    $config: (config: unknown) => config,
  });
}

export function component(type: string, name: string): ShimRecord {
  const found = components.filter((c) => c.type === type && c.name === name);
  if (found.length !== 1) throw new Error(`expected one ${type} named ${name}, found ${found.length}`);
  return found[0]!;
}

export { Bucket as ShimBucket, Dynamo as ShimDynamo, Queue as ShimQueue };
