/** `amdm list [--limit N] [--all] [--json]`: your jobs, newest first. */
import { parseArgs } from 'node:util';
import { UsageError, type CliCommand } from '../command.ts';
import { CONNECTION_OPTIONS, connect, describeState, withApi, type JobRecord } from '../api-client.ts';

const USAGE = 'list [--limit N] [--all] [--json] [--url URL] [--key KEY]   jobs, newest first';

export const command: CliCommand = {
  usage: USAGE,
  async run(args) {
    const { values, positionals } = parseArgs({
      args,
      allowPositionals: true,
      options: { ...CONNECTION_OPTIONS, limit: { type: 'string' }, all: { type: 'boolean' }, json: { type: 'boolean' } },
    });
    if (positionals.length > 0) throw new UsageError(`list takes no positional arguments (usage: amdm ${USAGE})`);
    const limit = values.limit === undefined ? 20 : Number(values.limit);
    if (!(Number.isInteger(limit) && limit >= 1 && limit <= 100)) throw new UsageError(`--limit must be a whole number from 1 to 100 (got "${values.limit}")`);
    const api = connect(values);
    const jobs: JobRecord[] = [];
    let cursor: string | null = null;
    do {
      const page = await withApi(() => api.list({ limit, cursor }));
      jobs.push(...page.data);
      cursor = values.all ? page.next_cursor : null;
    } while (cursor !== null);
    if (values.json) {
      process.stdout.write(`${JSON.stringify(jobs)}\n`);
      return 0;
    }
    const rows = [['ID', 'CREATED', 'MODELS', 'STATE'], ...jobs.map((j) => [j.id, j.created_at, j.spec.models.map((m) => m.id).join('+'), describeState(j)])];
    const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
    for (const r of rows) process.stdout.write(`${r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')}\n`);
    return 0;
  },
};
