/**
 * `amdm aws preflight`: whether an AWS account and a stage are ready for the GPU fleet, with
 * the operator's credentials and read-only calls (cli/aws-preflight.ts). Exit 0 when nothing
 * failed (warnings allowed), 1 when a check failed, 2 on bad usage.
 *
 *   npx sst shell --stage prod -- npx amdm aws preflight --stage prod
 *
 * Under `sst shell` it reads the stage from its links: the bucket (Resource.Store), the image
 * repository, tag, instance types, task limit and region (Resource.RunnerFleet, written by
 * sst.config.ts). Before a first deploy, or without `sst shell`, the account checks still run
 * (service-linked roles, GPU quota, Lambda concurrency) with the instance types and task limit
 * of the stage parameters in the environment (`.env.<stage>`, infra/params.ts), and the stage
 * checks say how to run them; flags name anything the links would.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { ECRClient } from '@aws-sdk/client-ecr';
import { IAMClient } from '@aws-sdk/client-iam';
import { LambdaClient } from '@aws-sdk/client-lambda';
import { S3Client } from '@aws-sdk/client-s3';
import { ServiceQuotasClient } from '@aws-sdk/client-service-quotas';
import { Resource } from 'sst/resource';
import { hasLink, linkedString, type Links } from '../../adapters/aws/links.ts';
import { readStageParams } from '../../infra/params.ts';
import { parseModelCatalog } from '../../shared/model-catalog.ts';
import { formatChecks, runPreflight, type PreflightClients, type StageFacts } from '../aws-preflight.ts';
import { UsageError, type CliCommand } from '../command.ts';

const USAGE =
  'aws preflight [--stage S] [--region R] [--bucket B] [--repository NAME] [--image-tag T] [--catalog FILE] [--hash-models] [--json]   check an AWS account and stage for the GPU fleet (read-only; under `sst shell`)';

/** The RunnerFleet link's properties, when `sst shell` provides them. */
interface FleetLink {
  region?: string;
  repository?: string;
  imageTag?: string;
  instanceTypes?: string;
  maxTasks?: number;
  catalogChecksumsSha256?: string;
}

function fleetLink(links: Links): FleetLink | null {
  if (!('RunnerFleet' in links)) return null;
  const value = (links as Record<string, unknown>).RunnerFleet;
  return typeof value === 'object' && value !== null ? (value as FleetLink) : null;
}

function linkedStage(links: Links): string | null {
  if (!('App' in links)) return null;
  const app = (links as Record<string, unknown>).App as { stage?: unknown } | undefined;
  return typeof app?.stage === 'string' ? app.stage : null;
}

export function stageFacts(
  values: { stage?: string; region?: string; bucket?: string; repository?: string; 'image-tag'?: string; catalog?: string },
  env: NodeJS.ProcessEnv,
  links: Links,
): StageFacts {
  const shellStage = linkedStage(links);
  if (values.stage && shellStage && values.stage !== shellStage) {
    throw new UsageError(`--stage ${values.stage} but \`sst shell\` links stage ${shellStage}; run under \`npx sst shell --stage ${values.stage}\``);
  }
  const fleet = fleetLink(links);
  const params = readStageParams(env);
  const region = values.region ?? fleet?.region ?? env.AWS_REGION ?? env.AWS_DEFAULT_REGION;
  if (!region) throw new UsageError('no region: give --region, set AWS_REGION, or run under `npx sst shell --stage STAGE`');
  let catalogChecksumsSha256: string | null = fleet?.catalogChecksumsSha256 || null;
  if (values.catalog) {
    catalogChecksumsSha256 = parseModelCatalog(readFileSync(values.catalog, 'utf8'), values.catalog).modelsChecksumsSha256;
  }
  return {
    region,
    bucket: values.bucket ?? (hasLink(links, 'store') ? linkedString(links, 'store') : null),
    repository: values.repository ?? fleet?.repository ?? null,
    imageTag: values['image-tag'] ?? fleet?.imageTag ?? (fleet ? null : params.runnerImageTag),
    instanceTypes: fleet?.instanceTypes ? fleet.instanceTypes.split(',') : params.gpuInstanceTypes,
    maxTasks: typeof fleet?.maxTasks === 'number' ? fleet.maxTasks : params.maxTasks,
    catalogChecksumsSha256,
  };
}

export const command: CliCommand = {
  usage: USAGE,
  async run(args) {
    const { values, positionals } = parseArgs({
      args,
      allowPositionals: true,
      options: {
        stage: { type: 'string' },
        region: { type: 'string' },
        bucket: { type: 'string' },
        repository: { type: 'string' },
        'image-tag': { type: 'string' },
        catalog: { type: 'string' },
        'hash-models': { type: 'boolean' },
        json: { type: 'boolean' },
      },
    });
    if (positionals[0] !== 'preflight' || positionals.length !== 1) throw new UsageError(`give a subcommand: preflight (usage: amdm ${USAGE})`);
    const stage = stageFacts(values, process.env, Resource);
    // the operator's credentials from the environment or ~/.aws, as the AWS CLI finds them
    const config = { region: stage.region };
    const clients: PreflightClients = {
      iam: new IAMClient(config),
      quotas: new ServiceQuotasClient(config),
      lambda: new LambdaClient(config),
      ecr: new ECRClient(config),
      s3: new S3Client(config),
    };
    try {
      const checks = await runPreflight(stage, clients, { hashModels: values['hash-models'] === true });
      process.stdout.write(values.json ? `${JSON.stringify({ stage: values.stage ?? linkedStage(Resource), region: stage.region, checks })}\n` : formatChecks(checks));
      return checks.some((c) => c.status === 'fail') ? 1 : 0;
    } finally {
      for (const client of Object.values(clients)) client.destroy();
    }
  },
};
