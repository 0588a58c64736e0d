/**
 * `amdm submit REQUEST.json [--wait] [--out DIR]`: send a job to an AMDM server. The file
 * is validated with the contract first (a bad file is one line naming the field, exit 2,
 * and nothing is sent). Without --wait it prints the job id and returns at once; with
 * --wait it follows the job's event stream with a progress bar on stderr until it
 * finishes, and on a color terminal draws the live previews above the bar (each model's
 * picture, side by side; elsewhere one line per end-of-window preview); --out DIR (implies
 * --wait) downloads the images there and prints their paths. Warnings (a size rounded, a
 * prompt cut to the token limit, ...) go to stderr as they appear. A job that fails or is
 * canceled exits 1.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { UsageError, type CliCommand } from '../command.ts';
import { CONNECTION_OPTIONS, connect, describeProblem, describeState, describeWarning, download, outputFileName, withApi, type JobPreview, type JobRecord } from '../api-client.ts';
import { type ColorDepth, previewLine, renderPreview } from '../preview-render.ts';
import { TerminalBlock } from '../terminal-block.ts';
import { readRequestFile } from '../request-file.ts';

const USAGE = 'submit REQUEST.json [--wait] [--out DIR] [--json] [--quiet] [--url URL] [--key KEY]   send a job to a server (AMDM_URL, AMDM_API_KEY)';

export const command: CliCommand = {
  usage: USAGE,
  async run(args) {
    const { values, positionals } = parseArgs({
      args,
      allowPositionals: true,
      options: {
        ...CONNECTION_OPTIONS,
        wait: { type: 'boolean', short: 'w' },
        out: { type: 'string', short: 'o' },
        json: { type: 'boolean' },
        quiet: { type: 'boolean', short: 'q' },
        'idempotency-key': { type: 'string' },
      },
    });
    if (positionals.length !== 1) throw new UsageError(`give exactly one REQUEST.json (usage: amdm ${USAGE})`);
    const file = positionals[0]!;
    const request = await readRequestFile(file);
    const api = connect(values);
    const wait = values.wait === true || values.out !== undefined;

    const job = await withApi(() => api.submit(request, values['idempotency-key'] ? { idempotencyKey: values['idempotency-key'] } : {}), file);
    if (!values.quiet) for (const w of job.warnings ?? []) process.stderr.write(`${describeWarning(w)}\n`);
    if (!wait) {
      process.stdout.write(values.json ? `${JSON.stringify(job)}\n` : `${job.id}\n`);
      if (!values.quiet && !values.json) process.stderr.write(`${describeState(job)}; follow it with: amdm status ${job.id}\n`);
      return 0;
    }

    const done = await follow(api, job, values.quiet === true);
    if (values.json) process.stdout.write(`${JSON.stringify(done)}\n`);
    if (done.status !== 'succeeded') {
      const why = done.status === 'failed' ? (done.error ? describeProblem(done.error) : 'no reason given') : 'canceled';
      process.stderr.write(`amdm submit: job ${done.id} ${done.status === 'failed' ? `failed: ${why}` : 'was canceled'}\n`);
      return 1;
    }
    if (values.out !== undefined) {
      await mkdir(values.out, { recursive: true });
      for (const o of done.outputs) {
        const path = join(values.out, outputFileName(done.id, o));
        await download(o.url, path);
        if (!values.json) process.stdout.write(`${path}\n`);
      }
    } else if (!values.json) {
      process.stdout.write(`${done.id}\n`);
    }
    if (!values.quiet) {
      const u = done.usage;
      process.stderr.write(`job ${done.id} succeeded: seed ${done.spec.sampler.seed}${u ? `, ${u.unet_evals} UNet evaluations, ${Math.round(u.runner_ms)} ms on the runner` : ''}\n`);
    }
    return 0;
  },
};

/**
 * Follow the job to its end: on a terminal a progress bar with the live previews above it,
 * otherwise one line per change of status or phase (and per end-of-window preview).
 */
async function follow(api: ReturnType<typeof connect>, job: JobRecord, quiet: boolean): Promise<JobRecord> {
  const err = process.stderr;
  const tty = err.isTTY === true && !quiet;
  const colors: ColorDepth | null = !tty ? null : err.hasColors?.(2 ** 24) ? 'truecolor' : err.hasColors?.(256) ? '256' : null;
  const block = tty ? new TerminalBlock(err) : null;
  const warned = new Set((job.warnings ?? []).map((w) => `${w.code} ${w.field}`));
  let current = job;
  let preview: string[] = [];
  let last = '';
  const lines = () => [...preview, barLine(current, block?.columns ?? 80)];
  const onUpdate = (j: JobRecord) => {
    current = j;
    for (const w of j.warnings ?? []) {
      const key = `${w.code} ${w.field}`;
      if (warned.has(key)) continue;
      warned.add(key);
      if (block) block.log(describeWarning(w), lines());
      else if (!quiet) err.write(`${describeWarning(w)}\n`);
    }
    if (block) {
      if (j.status !== 'running') preview = [];
      block.render(lines());
    } else if (!quiet) {
      // without a terminal, a line per change of status or phase, not per step
      const key = `${j.status} ${j.progress?.phase ?? ''} ${j.progress?.image ?? ''} ${j.progress?.model ?? ''}`;
      if (key !== last) err.write(`${j.id} ${describeState(j)}\n`);
      last = key;
    }
  };
  const onPreview = (p: JobPreview) => {
    if (block && colors) {
      preview = renderPreview(p, { columns: block.columns, colors });
      block.render(lines());
    } else if (!quiet && p.window_end) {
      err.write(`${previewLine(job.id, p)}\n`);
    }
  };
  onUpdate(job);
  try {
    return await withApi(() => api.follow(job.id, { onUpdate, onPreview }), `job ${job.id}`);
  } finally {
    block?.done();
  }
}

function barLine(j: JobRecord, columns: number): string {
  const total = j.progress?.total ?? j.spec.sampler.steps;
  const step = j.status === 'succeeded' ? total : (j.progress?.step ?? 0);
  const width = Math.max(10, Math.min(30, columns - 50));
  const filled = total > 0 ? Math.round((width * step) / total) : 0;
  return `[${'█'.repeat(filled)}${'░'.repeat(width - filled)}] ${step}/${total} ${describeState(j)}`;
}
