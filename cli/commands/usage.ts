/** `amdm usage [--from DAY] [--to DAY] [--json]`: jobs, images, UNet evaluations and runner time per UTC day. */
import { parseArgs } from 'node:util';
import { UsageError, type CliCommand } from '../command.ts';
import { CONNECTION_OPTIONS, connect, withApi, type UsageReport } from '../api-client.ts';

const USAGE = 'usage [--from YYYY-MM-DD] [--to YYYY-MM-DD] [--json] [--url URL] [--key KEY]   usage per day';

export const command: CliCommand = {
  usage: USAGE,
  async run(args) {
    const { values, positionals } = parseArgs({
      args,
      allowPositionals: true,
      options: { ...CONNECTION_OPTIONS, from: { type: 'string' }, to: { type: 'string' }, json: { type: 'boolean' } },
    });
    if (positionals.length > 0) throw new UsageError(`usage takes no positional arguments (usage: amdm ${USAGE})`);
    const api = connect(values);
    // the server checks the dates and names the bad one (query.from / query.to), exit 2
    const report = await withApi(() => api.usage({ ...(values.from ? { from: values.from } : {}), ...(values.to ? { to: values.to } : {}) }));
    if (values.json) {
      process.stdout.write(`${JSON.stringify(report)}\n`);
      return 0;
    }
    const fmt = (d: UsageReport['total']) => [String(d.jobs), String(d.images), String(d.unet_evals), (d.runner_ms / 1000).toFixed(1)];
    const rows = [['DAY', 'JOBS', 'IMAGES', 'UNET_EVALS', 'RUNNER_S'], ...report.days.map((d) => [d.day, ...fmt(d)]), ['total', ...fmt(report.total)]];
    const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
    process.stdout.write(`usage from ${report.from} to ${report.to} (UTC)\n`);
    for (const r of rows) process.stdout.write(`${r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ')}\n`);
    return 0;
  },
};
