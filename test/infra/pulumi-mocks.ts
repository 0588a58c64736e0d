/**
 * Pulumi's offline test mode for the stack: `pulumi.runtime.setMocks` replaces the engine, so
 * resource constructors run exactly as in a deploy, and every registration lands here with
 * its inputs and options instead of going to AWS.
 *
 * Resource options (ignoreChanges, dependsOn) are not sent to mocks, so a stack
 * transformation records them on the way through.
 */
import * as pulumi from '@pulumi/pulumi';

export const ACCOUNT_ID = '123456789012';
export const REGION = 'us-east-1';
export const ZONES = ['us-east-1a', 'us-east-1b', 'us-east-1c', 'us-east-1d'];
export const GPU_AMI_ID = 'ami-0gpu0mock0000001';

export interface Registered {
  type: string;
  name: string;
  inputs: Record<string, any>;
  opts: pulumi.CustomResourceOptions & pulumi.ComponentResourceOptions;
}

export class MockStack {
  readonly resources: Registered[] = [];
  readonly calls: { token: string; inputs: Record<string, any> }[] = [];
  private readonly opts = new Map<string, Registered['opts']>();

  /**
   * `existingRoles`: names of the roles the mocked account already has, as iam.getRoles lists
   * them (by path prefix); default none, a fresh account.
   */
  constructor(private readonly existingRoles: { path: string; name: string }[] = []) {
    const stack = this;
    pulumi.runtime.setMocks(
      {
        newResource(args) {
          const state = stack.fakeState(args.type, args.name, args.inputs);
          stack.resources.push({
            type: args.type,
            name: args.name,
            inputs: args.inputs,
            opts: stack.opts.get(`${args.type}::${args.name}`) ?? {},
          });
          return { id: `${args.name}-id`, state };
        },
        call(args) {
          stack.calls.push({ token: args.token, inputs: args.inputs });
          switch (args.token) {
            case 'aws:index/getRegion:getRegion':
              return { region: REGION, name: REGION, id: REGION };
            case 'aws:index/getCallerIdentity:getCallerIdentity':
              return { accountId: ACCOUNT_ID, arn: `arn:aws:iam::${ACCOUNT_ID}:user/ci`, userId: 'AIDAMOCK', id: ACCOUNT_ID };
            case 'aws:index/getAvailabilityZones:getAvailabilityZones':
              return { names: ZONES, zoneIds: ZONES.map((_, i) => `use1-az${i + 1}`), id: REGION };
            case 'aws:iam/getRoles:getRoles': {
              const prefix = String(args.inputs.pathPrefix ?? '/');
              return { names: stack.existingRoles.filter((r) => r.path.startsWith(prefix)).map((r) => r.name), arns: [], id: prefix };
            }
            case 'aws:ssm/getParameter:getParameter':
              return { name: args.inputs.name, value: GPU_AMI_ID, insecureValue: GPU_AMI_ID, type: 'String', id: args.inputs.name };
            default:
              return args.inputs;
          }
        },
      },
      'amdm',
      'test',
      // preview=false: outputs resolve to the mocked values, as in an update
      false,
    );
  }

  /**
   * Runs `program` as a Pulumi program: inside a root stack resource, as the engine would,
   * which stack transformations (ours, and SST's link bookkeeping) need.
   */
  async run<T>(program: () => Promise<T>): Promise<T> {
    let result!: T;
    await pulumi.runtime.runInPulumiStack(async () => {
      pulumi.runtime.registerStackTransformation((args) => {
        this.opts.set(`${args.type}::${args.name}`, args.opts);
        return undefined;
      });
      result = await program();
      return undefined;
    });
    await this.settle();
    return result;
  }

  /** Plausible provider outputs, so ARNs and names flow into dependent resources. */
  private fakeState(type: string, name: string, inputs: Record<string, any>): Record<string, any> {
    const physical = inputs.name ?? `${name.toLowerCase()}-mock`;
    const [, module = '', kind = ''] = /^aws:([^/]+)\/([^:]+):/.exec(type) ?? [];
    const arn =
      module === 's3'
        ? `arn:aws:s3:::${physical}`
        : module === 'sqs'
          ? `arn:aws:sqs:${REGION}:${ACCOUNT_ID}:${physical}`
          : `arn:aws:${module}:${REGION}:${ACCOUNT_ID}:${kind}/${physical}`;
    return {
      ...inputs,
      name: physical,
      arn,
      ...(module === 'ecr' && kind === 'repository'
        ? { repositoryUrl: `${ACCOUNT_ID}.dkr.ecr.${REGION}.amazonaws.com/${physical}` }
        : {}),
      ...(module === 'sqs' && kind === 'queue' ? { url: `https://sqs.${REGION}.amazonaws.com/${ACCOUNT_ID}/${physical}` } : {}),
      ...(module === 's3' ? { bucket: physical } : {}),
    };
  }

  /** Waits until no new resource has registered for a few turns of the event loop. */
  async settle(): Promise<void> {
    let quiet = 0;
    let last = -1;
    while (quiet < 10) {
      await new Promise((r) => setTimeout(r, 5));
      if (this.resources.length === last) quiet++;
      else {
        quiet = 0;
        last = this.resources.length;
      }
    }
  }

  ofType(type: string): Registered[] {
    return this.resources.filter((r) => r.type === type);
  }

  one(type: string, name?: string): Registered {
    const found = this.ofType(type).filter((r) => name === undefined || r.name === name);
    if (found.length !== 1) {
      const seen = this.resources.map((r) => `${r.type}::${r.name}`).join('\n  ');
      throw new Error(`expected exactly one ${type}${name ? ` named ${name}` : ''}, found ${found.length}; registered:\n  ${seen}`);
    }
    return found[0]!;
  }
}

export function resolve<T>(output: pulumi.Input<T>): Promise<T> {
  return new Promise((res) => pulumi.output(output).apply((v) => res(v as T)));
}
