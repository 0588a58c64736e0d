/** `amdm status ID [--json]`: a job's state, progress, timing and output URLs. */
import { parseArgs } from 'node:util';
import { UsageError, type CliCommand } from '../command.ts';
import { CONNECTION_OPTIONS, connect, describeProblem, describeState, describeWarning, withApi } from '../api-client.ts';

const USAGE = 'status JOB_ID [--json] [--url URL] [--key KEY]   a job: status, progress, outputs';

export const command: CliCommand = {
  usage: USAGE,
  async run(args) {
    const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { ...CONNECTION_OPTIONS, json: { type: 'boolean' } } });
    if (positionals.length !== 1) throw new UsageError(`give exactly one JOB_ID (usage: amdm ${USAGE})`);
    const api = connect(values);
    const job = await withApi(() => api.job(positionals[0]!));
    if (values.json) {
      process.stdout.write(`${JSON.stringify(job)}\n`);
      return 0;
    }
    const lines = [`${job.id} ${describeState(job)}`];
    if (job.error) lines.push(`  error    ${describeProblem(job.error)}`);
    for (const w of job.warnings ?? []) lines.push(`  ${describeWarning(w)}`);
    const t = job.timings;
    if (t.run_ms !== null) lines.push(`  timing   queued ${Math.round(t.queued_ms ?? 0)} ms, ran ${Math.round(t.run_ms)} ms`);
    if (job.usage) lines.push(`  usage    ${job.usage.unet_evals} UNet evaluations, ${job.usage.images} image(s)`);
    lines.push(`  seed     ${job.spec.sampler.seed}; models ${job.spec.models.map((m) => m.id).join(', ')}`);
    for (const o of job.outputs) lines.push(`  ${o.source === 'solo' ? `solo-${o.model}` : o.source}-${o.index}  ${o.url}`);
    if (job.outputs.length > 0) lines.push(`  (output URLs expire at ${job.outputs[0]!.expires_at})`);
    process.stdout.write(`${lines.join('\n')}\n`);
    return 0;
  },
};
