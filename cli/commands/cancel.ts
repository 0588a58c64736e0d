/** `amdm cancel ID`: cancel a queued job at once, or a running one at its next step. */
import { parseArgs } from 'node:util';
import { UsageError, type CliCommand } from '../command.ts';
import { CONNECTION_OPTIONS, connect, withApi } from '../api-client.ts';

const USAGE = 'cancel JOB_ID [--url URL] [--key KEY]   cancel a job';

export const command: CliCommand = {
  usage: USAGE,
  async run(args) {
    const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { ...CONNECTION_OPTIONS } });
    if (positionals.length !== 1) throw new UsageError(`give exactly one JOB_ID (usage: amdm ${USAGE})`);
    const api = connect(values);
    const job = await withApi(() => api.cancel(positionals[0]!));
    process.stdout.write(job.status === 'canceled' ? `${job.id} canceled\n` : `${job.id} cancel requested; it stops at its next step (amdm status ${job.id})\n`);
    return 0;
  },
};
