/**
 * The runner image's application layer, checked without Docker: the steps of
 * gpu-runner/Dockerfile that are ours, performed in a temporary folder, and that runner run
 * on the CPU against fauxqs (and dynalite for the counters table) through one job.
 *
 *   npx tsx tools/runner-app-check.ts [--keep] [--npm]
 *
 * 1. Production install: the lockfile's production closure (every package-lock.json entry
 *    that is not `dev`), linked from this checkout's node_modules into DIR/node_modules, the
 *    tree `npm ci --omit=dev` lays out from the same lockfile; with `--npm`, a real
 *    `npm ci --omit=dev` there instead (it needs the registry, and compilers for a native
 *    addon without a prebuilt binary). Then the Dockerfile's prune
 *    (gpu-runner/prune-node-modules.mjs).
 * 2. The final stage's COPY instructions from the build context, as written in the Dockerfile,
 *    with .dockerignore's exclusions (tests are not shipped), and its ENV.
 * 3. Model sync and start: the Dockerfile's CMD in DIR, with the environment the task
 *    definition gives (infra/runner-task.ts runnerContainerDefinition) and the CPU provider, over a
 *    bucket and queues on fauxqs holding the built-in models and the counters table on
 *    dynalite. Node resolves every import from DIR only, so a package the runner imports but
 *    the image does not install, or a file it imports but the image does not copy, fails here.
 * 4. One job submitted through the edge (createApp over the same S3 and SQS), run to
 *    `succeeded` with a PNG in the bucket; then SIGTERM, and a clean exit.
 *
 * What it cannot show: the CUDA base image, the CUDA build of onnxruntime (downloaded only
 * with ONNXRUNTIME_NODE_INSTALL=cuda12), the GPU. It prints one JSON report with the sizes
 * and times it measured; exit 1 when a step fails.
 */
import { spawn } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, linkSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { S3Store } from '../adapters/aws/s3-store.ts';
import { SqsQueue } from '../adapters/aws/sqs-queue.ts';
import { createApp } from '../edge/app.ts';
import { runnerContainerDefinition } from '../infra/runner-task.ts';
import { createApiKey } from '../shared/api-keys.ts';
import type { JobRecord } from '../shared/contract/index.ts';
import { startDynalite } from '../test/conformance/dynalite-server.ts';
import { startFauxqs } from '../test/conformance/fauxqs-server.ts';
import { contextCopies, envOf, finalStage, parseDockerfile } from './dockerfile.ts';
import { readModelCatalog } from '../shared/model-catalog.ts';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const FAUXQS_DNS = fileURLToPath(new URL('../test/e2e/fauxqs-dns.mjs', import.meta.url));

export interface AppCheckReport {
  dir: string;
  install: 'lockfile' | 'npm';
  /** node_modules after the production install, before and after the prune, in bytes */
  nodeModulesBytes: { installed: number; pruned: number };
  /** what the prune removed */
  pruned: string[];
  /** our code in the image (the COPY instructions), in bytes */
  appBytes: number;
  /** from the runner's own log lines */
  modelSyncMs: number | null;
  modelsLoadedMs: number | null;
  /** from spawning the command to the first job's success */
  startToFirstImageMs: number;
  job: { id: string; status: string; outputs: number };
  exitCode: number | null;
}

function bytesOf(path: string): number {
  const info = lstatSync(path, { throwIfNoEntry: false });
  if (!info) return 0;
  if (!info.isDirectory()) return info.size;
  return readdirSync(path).reduce((sum, name) => sum + bytesOf(join(path, name)), 0);
}

/** Links (or, across file systems, copies) a package folder, leaving out its nested node_modules (separate lockfile entries). */
function placePackage(from: string, to: string): void {
  mkdirSync(to, { recursive: true });
  for (const entry of readdirSync(from, { withFileTypes: true })) {
    if (entry.name === 'node_modules') continue;
    const src = join(from, entry.name);
    const dst = join(to, entry.name);
    if (entry.isSymbolicLink()) symlinkSync(readlinkSync(src), dst);
    else if (entry.isDirectory()) cpTree(src, dst);
    else link(src, dst);
  }
}

function cpTree(from: string, to: string): void {
  mkdirSync(to, { recursive: true });
  for (const entry of readdirSync(from, { withFileTypes: true })) {
    const src = join(from, entry.name);
    const dst = join(to, entry.name);
    if (entry.isSymbolicLink()) symlinkSync(readlinkSync(src), dst);
    else if (entry.isDirectory()) cpTree(src, dst);
    else link(src, dst);
  }
}

function link(src: string, dst: string): void {
  try {
    linkSync(src, dst);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EXDEV' && (err as NodeJS.ErrnoException).code !== 'EPERM') throw err;
    copyFileSync(src, dst);
  }
}

/** `npm ci --omit=dev` from the lockfile, without the network: the production entries of package-lock.json. */
function installFromLockfile(app: string): void {
  const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean; link?: boolean }> };
  const source = join(ROOT, 'node_modules');
  for (const [path, meta] of Object.entries(lock.packages)) {
    if (!path.startsWith('node_modules/') || meta.dev) continue;
    const from = join(ROOT, path);
    // optional packages for other platforms are in the lockfile and not on disk: npm skips them too
    if (!existsSync(from)) continue;
    if (!statSync(from).isDirectory()) throw new Error(`${relative(ROOT, from)} is not a package folder`);
    placePackage(from, join(app, path));
  }
  if (!existsSync(join(app, 'node_modules', 'tsx'))) throw new Error(`no tsx in the production install from ${source}: is package-lock.json installed (npm ci)?`);
}

function run(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    child.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`${cmd} ${args.join(' ')} exited ${code}:\n${out.slice(-2000)}`))));
  });
}

/** The .dockerignore exclusions that apply inside the allowed paths (`**\/*.test.ts`). */
function ignoredSuffixes(): string[] {
  return readFileSync(join(ROOT, '.dockerignore'), 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#') && !l.startsWith('!') && l !== '*')
    .map((l) => {
      const m = /^\*\*\/\*(\.[\w.]+)$/.exec(l);
      if (!m) throw new Error(`.dockerignore pattern ${JSON.stringify(l)} is not one this check understands (**/*.ext)`);
      return m[1]!;
    });
}

export async function checkRunnerApp(opts: { keep?: boolean; npm?: boolean; log?: (line: string) => void } = {}): Promise<AppCheckReport> {
  const log = opts.log ?? (() => {});
  const instructions = parseDockerfile(readFileSync(join(ROOT, 'gpu-runner/Dockerfile'), 'utf8'));
  const final = finalStage(instructions);
  const base = mkdtempSync(join(tmpdir(), 'amdm-runner-app-'));
  const app = join(base, 'app');
  mkdirSync(app);
  const fauxqs = await startFauxqs();
  const dynamo = await startDynalite();
  let child: ReturnType<typeof spawn> | null = null;
  try {
    // 1. production install, as the deps stage does it, then its prune
    log('production install');
    for (const f of ['package.json', 'package-lock.json', '.npmrc']) copyFileSync(join(ROOT, f), join(app, f));
    if (opts.npm) await run('npm', ['ci', '--omit=dev', '--no-audit', '--no-fund'], app, { ...process.env, ONNXRUNTIME_NODE_INSTALL: 'skip' });
    else installFromLockfile(app);
    const installed = bytesOf(join(app, 'node_modules'));
    const pruneOut = await run(process.execPath, [join(ROOT, 'gpu-runner/prune-node-modules.mjs'), join(app, 'node_modules')], app, process.env);
    const { pruned } = JSON.parse(pruneOut.trim().split('\n').at(-1)!) as { pruned: string[] };
    const prunedBytes = bytesOf(join(app, 'node_modules'));

    // 2. the final stage's COPY instructions (not --from), with .dockerignore's exclusions
    const skip = ignoredSuffixes();
    let appBytes = 0;
    for (const { sources, dest } of contextCopies(final)) {
      for (const source of sources) {
        const from = join(ROOT, source);
        const to = dest.endsWith('/') || sources.length > 1 || statSync(from).isFile() && dest === './' ? join(app, dest, source.split('/').at(-1)!) : join(app, dest);
        cpSync(from, to, { recursive: true, filter: (src) => !skip.some((s) => src.endsWith(s)) });
        appBytes += bytesOf(to);
      }
    }
    const imageEnv = envOf(final);

    // 3. the stage's bucket and queues on fauxqs, the built-in models uploaded as docs/deploy.md says
    const bucket = await fauxqs.createBucket();
    const jobsDlq = await fauxqs.createQueue();
    const jobs = await fauxqs.createQueue({ deadLetterUrl: jobsDlq, maxReceives: 3 });
    const webhooks = await fauxqs.createQueue();
    const checksums = JSON.parse(readFileSync(join(ROOT, 'models/checksums.json'), 'utf8')) as Record<string, string>;
    for (const path of Object.keys(checksums)) {
      await fauxqs.s3.send(new PutObjectCommand({ Bucket: bucket, Key: `models/${path}`, Body: readFileSync(join(ROOT, 'models', path)) }));
    }
    await fauxqs.s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'models/checksums.json', Body: readFileSync(join(ROOT, 'models/checksums.json')) }));

    const links = {
      SST_RESOURCE_App: JSON.stringify({ name: 'amdm', stage: 'app-check' }),
      SST_RESOURCE_Store: JSON.stringify({ name: bucket }),
      SST_RESOURCE_JobQueue: JSON.stringify({ url: jobs }),
      SST_RESOURCE_JobDeadLetters: JSON.stringify({ url: jobsDlq }),
      SST_RESOURCE_WebhookQueue: JSON.stringify({ url: webhooks }),
      SST_RESOURCE_Counters: JSON.stringify({ name: await dynamo.createCountersTable() }),
    };
    const taskEnv = Object.fromEntries(
      runnerContainerDefinition({ image: 'app-check', environment: { ...links, PUBLIC_BASE_URL: 'https://api.amdm.test' }, secrets: {}, logGroupName: 'app-check', region: 'us-east-1' }).environment.map(
        (e) => [e.name, e.value] as const,
      ),
    );
    const cmd = JSON.parse(final.find((i) => i.keyword === 'CMD')!.args) as string[];
    if (cmd[0] !== 'node') throw new Error(`the image's CMD starts with ${cmd[0]}; this check runs node commands only`);
    const env: NodeJS.ProcessEnv = {
      // what the container has: the image's ENV, then the task definition's
      PATH: process.env.PATH,
      HOME: base,
      ...imageEnv,
      ...taskEnv,
      // this machine, not ECS: no GPU, no /var/cache, fauxqs for AWS
      ORT_PROVIDER: 'cpu',
      AMDM_MODELS_DIR: join(base, 'model-cache'),
      AMDM_LIVENESS_FILE: join(base, 'alive'),
      AWS_ENDPOINT_URL: fauxqs.endpoint,
      AWS_ENDPOINT_URL_DYNAMODB: dynamo.endpoint,
      AWS_ACCESS_KEY_ID: 'test',
      AWS_SECRET_ACCESS_KEY: 'test',
      // fauxqs's queue URLs name sqs.REGION.localhost (see the file): a preload of the check, not of the app
      NODE_OPTIONS: `--import=${FAUXQS_DNS}`,
    };

    // 4. one job through the edge, while the runner starts
    const store = new S3Store({ client: fauxqs.s3, bucket });
    const queue = new SqsQueue({ client: fauxqs.sqs, queueUrl: jobs });
    const { models } = readModelCatalog(join(ROOT, 'models/catalog.json'));
    const edge = createApp({ store, queue, catalog: async () => models, pepper: 'app-check-pepper', publicBaseUrl: 'https://api.amdm.test' });
    const key = (await createApiKey(store, { tenant: 'appcheck', pepper: 'app-check-pepper' })).key;
    const call = async (path: string, body?: unknown) =>
      (await edge.request(path, {
        method: body === undefined ? 'GET' : 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      })).json() as Promise<JobRecord>;
    const submitted = await call('/v1/jobs', { models: [{ id: 'shapes-base', role: 'base', prompt: 'a red circle' }], sampler: { steps: 4, seed: 1 } });
    if (!submitted.id) throw new Error(`the edge refused the job: ${JSON.stringify(submitted).slice(0, 300)}`);

    log(`starting ${cmd.join(' ')} in ${app}`);
    const t0 = Date.now();
    child = spawn(process.execPath, cmd.slice(1), { cwd: app, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout!.on('data', (d) => (out += d));
    child.stderr!.on('data', (d) => (out += d));
    const exited = new Promise<number | null>((r) => child!.once('exit', (code) => r(code)));
    let done: JobRecord | null = null;
    while (Date.now() - t0 < 180_000) {
      if (child.exitCode !== null) throw new Error(`the runner exited ${child.exitCode} before the job finished:\n${out.slice(-3000)}`);
      const r = await call(`/v1/jobs/${submitted.id}`);
      if (['succeeded', 'failed', 'canceled'].includes(r.status)) {
        done = r;
        break;
      }
      await new Promise((r) => setTimeout(r, 250));
    }
    const startToFirstImageMs = Date.now() - t0;
    if (!done) throw new Error(`the job did not finish within 180 s:\n${out.slice(-3000)}`);
    if (done.status !== 'succeeded') throw new Error(`the job ${done.status}: ${JSON.stringify(done.error)}\n${out.slice(-3000)}`);
    const png = await (await fetch(done.outputs[0]!.url)).arrayBuffer();
    if (Buffer.from(png).subarray(1, 4).toString() !== 'PNG') throw new Error('the output is not a PNG');

    child.kill('SIGTERM');
    const exitCode = await exited;
    child = null;
    if (exitCode !== 0) throw new Error(`the runner exited ${exitCode} after SIGTERM:\n${out.slice(-3000)}`);
    const ms = (msg: string) => {
      const line = out.split('\n').find((l) => l.includes(`"msg":"${msg}"`));
      return line ? (JSON.parse(line) as { ms?: number }).ms ?? null : null;
    };
    return {
      dir: app,
      install: opts.npm ? 'npm' : 'lockfile',
      nodeModulesBytes: { installed, pruned: prunedBytes },
      pruned,
      appBytes,
      modelSyncMs: ms('models synced'),
      modelsLoadedMs: ms('models loaded'),
      startToFirstImageMs,
      job: { id: done.id, status: done.status, outputs: done.outputs.length },
      exitCode,
    };
  } finally {
    if (child) child.kill('SIGKILL');
    await fauxqs.stop();
    await dynamo.stop();
    if (!opts.keep) rmSync(base, { recursive: true, force: true });
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const { values } = parseArgs({ options: { keep: { type: 'boolean' }, npm: { type: 'boolean' } } });
  checkRunnerApp({ keep: values.keep, npm: values.npm, log: (l) => console.error(`runner-app-check: ${l}`) }).then(
    (report) => console.log(JSON.stringify(report, null, 2)),
    (err) => {
      console.error(`runner-app-check: ${(err as Error).message}`);
      process.exit(1);
    },
  );
}


