/**
 * `amdm submit REQUEST.json [--wait] [--out DIR]`: send a job to an AMDM server. The file
 * is validated with the contract first (a bad file is one line naming the field, exit 2,
 * and nothing is sent). Without --wait it prints the job id and returns at once; with
 * --wait it follows the job's event stream with a progress bar on stderr until it
 * finishes; --out DIR (implies --wait) downloads the images there and prints their paths.
 * A job that fails or is canceled exits 1.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import cliProgress from 'cli-progress';
import { UsageError, type CliCommand } from '../command.ts';
import { CONNECTION_OPTIONS, connect, describeProblem, describeState, download, withApi, type JobRecord } from '../api-client.ts';
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
        const ext = o.kind === 'image' ? 'png' : 'f32';
        const path = join(values.out, `${done.id}-${o.source}-${o.index}.${ext}`);
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

/** Follow the job to its end; a progress bar on a terminal, one line per change otherwise. */
async function follow(api: ReturnType<typeof connect>, job: JobRecord, quiet: boolean): Promise<JobRecord> {
  const tty = process.stderr.isTTY === true;
  const bar =
    quiet || !tty
      ? null
      : new cliProgress.SingleBar(
          { format: '[{bar}] {value}/{total} {state}', stream: process.stderr, hideCursor: true, clearOnComplete: false, barsize: 30 },
          cliProgress.Presets.shades_classic,
        );
  bar?.start(job.spec.sampler.steps, 0, { state: describeState(job) });
  let last = '';
  const show = (j: JobRecord) => {
    const state = describeState(j);
    if (bar) {
      bar.setTotal(j.progress?.total ?? j.spec.sampler.steps);
      bar.update(j.status === 'succeeded' ? (j.progress?.total ?? 0) : (j.progress?.step ?? 0), { state });
    } else if (!quiet) {
      // without a terminal, a line per change of status or phase, not per step
      const key = `${j.status} ${j.progress?.phase ?? ''} ${j.progress?.image ?? ''}`;
      if (key !== last) process.stderr.write(`${j.id} ${state}\n`);
      last = key;
    }
  };
  show(job);
  try {
    return await withApi(() => api.follow(job.id, { onUpdate: show }), `job ${job.id}`);
  } finally {
    bar?.stop();
  }
}
