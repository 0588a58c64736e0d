/**
 * The service-linked roles the GPU fleet needs, created by the deploy when the account has
 * none yet.
 *
 * A capacity provider, a cluster or a service created in an account that never used ECS fails
 * with "ECS Service Linked Role does not exist" or "Unable to assume the service linked role"
 * (public reports in terraform-aws-modules/terraform-aws-ecs#26, aws-samples/
 * baseline-environment-on-aws#238, cloudformation-coverage-roadmap#818): ECS creates its role
 * on some paths and not on others. Application Auto Scaling and EC2 Auto Scaling create
 * theirs on first use when the caller may call iam:CreateServiceLinkedRole. Rather than
 * depend on which path runs first, the deploy looks each role up (a read that lists nothing
 * when the role is absent, so it cannot fail the deploy) and creates the missing ones before
 * anything that needs them.
 *
 * A service-linked role belongs to the account, not to this stack: other stacks use the same
 * one. So a role created here is retained when the stack is removed (`retainOnDelete`), and a
 * later deploy that finds it present simply stops declaring it, which with `retainOnDelete`
 * forgets it without deleting it.
 *
 * IAM is eventually consistent: a role created seconds before ECS first uses it can still be
 * reported missing. Then the first deploy fails once and the next one passes;
 * `npx amdm aws preflight` shows whether the roles exist (docs/deploy.md).
 */
import type { Resource } from '@pulumi/pulumi';
import { iam } from '@pulumi/aws';

/** The roles, by the service that assumes them; `name` is the role AWS creates for that service. */
export const SERVICE_LINKED_ROLES = {
  ecs: { service: 'ecs.amazonaws.com', name: 'AWSServiceRoleForECS', logicalName: 'EcsServiceLinkedRole' },
  applicationAutoScaling: {
    service: 'ecs.application-autoscaling.amazonaws.com',
    name: 'AWSServiceRoleForApplicationAutoScaling_ECSService',
    logicalName: 'EcsAutoScalingServiceLinkedRole',
  },
  ec2AutoScaling: { service: 'autoscaling.amazonaws.com', name: 'AWSServiceRoleForAutoScaling', logicalName: 'Ec2AutoScalingServiceLinkedRole' },
} as const;

export type ServiceLinkedRoleId = keyof typeof SERVICE_LINKED_ROLES;

/** Service-linked roles live under this path (IAM User Guide, "Using service-linked roles"). */
export const serviceLinkedRolePath = (service: string) => `/aws-service-role/${service}/`;

/** The deploy's dependencies: each a role created now, or nothing when the account has it already. */
export type ServiceLinkedRoles = Record<ServiceLinkedRoleId, Resource[]>;

export async function ensureServiceLinkedRoles(): Promise<ServiceLinkedRoles> {
  const entries = await Promise.all(
    (Object.keys(SERVICE_LINKED_ROLES) as ServiceLinkedRoleId[]).map(async (id) => {
      const role = SERVICE_LINKED_ROLES[id];
      const found = await iam.getRoles({ pathPrefix: serviceLinkedRolePath(role.service) });
      if ((found.names ?? []).includes(role.name)) return [id, []] as const;
      const created = new iam.ServiceLinkedRole(
        role.logicalName,
        { awsServiceName: role.service, description: 'Created by the AMDM stack because the account had none; shared by every stack' },
        { retainOnDelete: true },
      );
      return [id, [created]] as const;
    }),
  );
  return Object.fromEntries(entries) as ServiceLinkedRoles;
}
