/**
 * `npm run models:fullsize`: the paper's models at their real sizes on this machine, with
 * random weights (docs/real-models.md, "The full-size proof"). Stages, each skipped when its
 * result is already there:
 *
 *   checkpoints  make_fullsize.py: SD1.5 (diffusers folder), InteractDiffusion (fp16
 *                variant), IP-Adapter SD1.5 + CLIP ViT-H/14, at the published configurations
 *                and key names
 *   convert      convert.py on each: sd15, interactdiffusion --share sd15,
 *                ip-adapter-sd15 --share sd15 (fp32, or --fp16)
 *   generate     `amdm generate` of the three-model AMDM job (SD1.5 base, InteractDiffusion,
 *                IP-Adapter; 10 steps, window 1-3, torch noise) at each --sizes side
 *   serve        the same job through `npm start` (AMDM_MODELS_DIR at the packages), over HTTP
 *   bench        `npm run bench:engine -- --models DIR --request JOB` (1 to 3 models)
 *
 *   npm run models:fullsize -- [--stage convert,generate] [--fp16] [--sizes 512,256]
 *       [--models 3] [--dir tools/convert/.fullsize] [--no-check | --check sd15,...] [--no-arena]
 *
 * --no-arena turns onnxruntime's CPU memory arena off for generate, serve and bench (recorded
 * apart, as fp32-noarena): three fp32 models at 512×512 fit in 24 GiB only so (17.8 GiB peak
 * measured; with the arena on the run passed 20.9 GiB and was stopped).
 *
 * --check IDS runs the converter's per-component check (torch against onnxruntime) only for
 * those packages and converts the others with --no-check: the check of the ViT-H/14 image
 * encoder is the slowest part of a conversion on two cores.
 *
 * Every step runs as a child process whose whole process tree is sampled every 0.5 s for
 * its resident size; wall time, peak RSS and what the step printed go to DIR/logs/ and
 * DIR/report.json. Nothing here enters git (the folder is gitignored). One step runs at a
 * time: a full-size fp32 model takes several GB while its sessions are built.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { encode as encodePng } from 'fast-png';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const PY = process.env.PYTHON ?? '/usr/bin/python3';
const STAGES = ['checkpoints', 'convert', 'generate', 'serve', 'bench'] as const;
type Stage = (typeof STAGES)[number];

const { values } = parseArgs({
  options: {
    stage: { type: 'string', default: STAGES.join(',') },
    dir: { type: 'string', default: join(ROOT, 'tools/convert/.fullsize') },
    fp16: { type: 'boolean', default: false },
    sizes: { type: 'string', default: '512,256' },
    models: { type: 'string', default: '3' },
    steps: { type: 'string', default: '10' },
    threads: { type: 'string' },
    'no-check': { type: 'boolean', default: false },
    'no-arena': { type: 'boolean', default: false },
    check: { type: 'string' },
    // the shared CLIP tokenizer beside the checkout (../shared), or beside a worktree's parent
    tokenizer: { type: 'string', default: [resolve(ROOT, '..', 'shared'), resolve(ROOT, '..', '..', 'shared')].map((d) => join(d, 'clip-vit-large-patch14-tokenizer')).find((d) => existsSync(d)) ?? resolve(ROOT, '..', 'shared', 'clip-vit-large-patch14-tokenizer') },
  },
});
const stages = values.stage!.split(',').map((s) => s.trim()) as Stage[];
for (const s of stages) if (!STAGES.includes(s)) usage(`--stage ${s}: allowed: ${STAGES.join(', ')}`);
const sizes = values.sizes!.split(',').map(Number);
if (!sizes.every((s) => Number.isInteger(s) && s >= 256 && s <= 1024 && s % 8 === 0)) usage(`--sizes: sides from 256 to 1024, multiples of 8 (got ${values.sizes})`);
const nModels = Number(values.models);
if (![1, 2, 3].includes(nModels)) usage(`--models: 1, 2 or 3 (got ${values.models})`);
const steps = Number(values.steps);
if (!(Number.isInteger(steps) && steps >= 4 && steps <= 100)) usage(`--steps: 4 to 100 (got ${values.steps})`);

const DIR = resolve(values.dir!);
const PKGS = join(DIR, values.fp16 ? 'models-fp16' : 'models');
const LOGS = join(DIR, 'logs');
const precision = values.fp16 ? 'fp16' : 'fp32';
/** runs with the arena off are recorded apart from those with it on */
const tag = values['no-arena'] ? `${precision}-noarena` : precision;
mkdirSync(LOGS, { recursive: true });

function usage(msg: string): never {
  console.error(`models:fullsize: ${msg}`);
  process.exit(2);
}

interface Measured {
  code: number | null;
  ms: number;
  peakRssBytes: number;
  stdout: string;
  stderr: string;
  /** set when the step was stopped because the machine ran short of memory */
  stoppedForMemory?: string;
}

/**
 * Below this much available memory a step is stopped (SIGKILL to its process group) rather
 * than left to the kernel's OOM killer, which could pick another process on a shared
 * machine: "does not fit" is then the step's result.
 */
const MIN_AVAILABLE_BYTES = 1.5 * 2 ** 30;

function memAvailable(): number {
  const m = /MemAvailable:\s+(\d+) kB/.exec(readFileSync('/proc/meminfo', 'utf8'));
  return m ? Number(m[1]) * 1024 : Infinity;
}

/** Every process below `root` (root included), from /proc's parent links. */
function processTree(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      (children.get(ppid) ?? children.set(ppid, []).get(ppid)!).push(Number(name));
    } catch {
      // gone between readdir and read
    }
  }
  const out: number[] = [];
  const todo = [root];
  while (todo.length) {
    const p = todo.pop()!;
    out.push(p);
    todo.push(...(children.get(p) ?? []));
  }
  return out;
}

function treeRss(root: number): number {
  let bytes = 0;
  for (const pid of processTree(root)) {
    try {
      bytes += Number(readFileSync(`/proc/${pid}/statm`, 'utf8').split(' ')[1]) * 4096;
    } catch {
      // exited
    }
  }
  return bytes;
}

/**
 * Runs one step in its own process group, sampling the tree's RSS; `ready` may act on the
 * output while it runs (the serve stage submits its job once the server is up).
 */
function measured(name: string, cmd: string, args: string[], env: NodeJS.ProcessEnv, ready?: (out: string, pid: number) => void): Promise<Measured> {
  return new Promise((resolvePromise, reject) => {
    const t0 = performance.now();
    console.log(`[${name}] ${cmd} ${args.join(' ')}`);
    const child = spawn(cmd, args, { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let stdout = '';
    let stderr = '';
    let peak = 0;
    let stoppedForMemory: string | undefined;
    const sample = () => {
      if (!child.pid) return;
      peak = Math.max(peak, treeRss(child.pid));
      const available = memAvailable();
      if (available < MIN_AVAILABLE_BYTES && !stoppedForMemory) {
        stoppedForMemory = `stopped: the machine had ${gib(available)} GiB available (below ${gib(MIN_AVAILABLE_BYTES)}) with this step at ${gib(peak)} GiB`;
        console.error(`[${name}] ${stoppedForMemory}`);
        process.kill(-child.pid, 'SIGKILL');
      }
    };
    const timer = setInterval(sample, 500);
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      process.stdout.write(`[${name}] ${d.toString().replace(/\n(?=.)/g, `\n[${name}] `)}`);
      ready?.(stdout, child.pid!);
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      process.stderr.write(`[${name}] ${d.toString().replace(/\r/g, '\n').replace(/\n(?=.)/g, `\n[${name}] `)}`);
    });
    child.on('error', reject);
    child.on('close', (code) => {
      clearInterval(timer);
      const ms = performance.now() - t0;
      writeFileSync(
        join(LOGS, `${name}.log`),
        `$ ${cmd} ${args.join(' ')}\n# exit ${code}, ${(ms / 1000).toFixed(1)} s, peak RSS ${(peak / 2 ** 30).toFixed(2)} GiB${stoppedForMemory ? `; ${stoppedForMemory}` : ''}\n--- stdout\n${stdout}\n--- stderr\n${stderr}`,
      );
      resolvePromise({ code, ms, peakRssBytes: peak, stdout, stderr, ...(stoppedForMemory ? { stoppedForMemory } : {}) });
    });
  });
}

const reportPath = join(DIR, 'report.json');
const report = (existsSync(reportPath) ? JSON.parse(readFileSync(reportPath, 'utf8')) : {}) as Record<string, unknown>;
function record(key: string, value: unknown): void {
  report[key] = { ...(value as object), at: new Date().toISOString() };
  writeFileSync(reportPath, `${JSON.stringify(report, null, 2)}\n`);
}

const gib = (b: number) => Math.round((b / 2 ** 30) * 100) / 100;

function folderBytes(dir: string): number {
  let n = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    n += e.isDirectory() ? folderBytes(p) : e.isFile() ? statSync(p).size : 0;
  }
  return n;
}

function must(m: Measured, what: string): void {
  if (m.code !== 0) {
    console.error(`models:fullsize: ${what} failed (exit ${m.code}); see ${LOGS}`);
    process.exit(1);
  }
}

// ---------------------------------------------------------------- checkpoints
async function checkpoints(): Promise<void> {
  const parts = [
    ['sd15', join(DIR, 'sd15', 'unet', 'diffusion_pytorch_model.safetensors')],
    ['interactdiffusion', join(DIR, 'interactdiffusion', 'unet', 'diffusion_pytorch_model.fp16.safetensors')],
    ['ip-adapter', join(DIR, 'ip-adapter', 'image_encoder', 'model.safetensors')],
  ].filter(([, f]) => !existsSync(f!));
  if (parts.length === 0) return console.log(`[checkpoints] present in ${DIR}`);
  const m = await measured('checkpoints', PY, ['tools/convert/make_fullsize.py', '--out', DIR, '--tokenizer', values.tokenizer!, '--only', ...parts.map((p) => p[0]!)], {});
  must(m, 'make_fullsize.py');
  record('checkpoints', { parts: parts.map((p) => p[0]), seconds: Math.round(m.ms / 1000), peak_rss_gib: gib(m.peakRssBytes) });
}

// ---------------------------------------------------------------- convert
const IDS = { base: 'sd15', interaction: 'interactdiffusion', ip: 'ip-adapter-sd15' } as const;

async function convert(): Promise<void> {
  mkdirSync(PKGS, { recursive: true });
  const base = join(PKGS, IDS.base);
  const checked = (id: string) => !values['no-check'] && (values.check === undefined || values.check.split(',').includes(id));
  const common = (id: string) => [...(values.fp16 ? ['--fp16'] : []), ...(checked(id) ? [] : ['--no-check'])];
  const jobs: [string, string[]][] = [
    [IDS.base, ['sd15', join(DIR, 'sd15'), '--out', base, ...common(IDS.base)]],
    [IDS.interaction, ['interactdiffusion', join(DIR, 'interactdiffusion'), '--out', join(PKGS, IDS.interaction), '--share', base, ...common(IDS.interaction)]],
    [
      IDS.ip,
      ['ip-adapter', '--base', join(DIR, 'sd15'), '--ip-adapter', join(DIR, 'ip-adapter', 'ip-adapter_sd15.bin'), '--image-encoder', join(DIR, 'ip-adapter', 'image_encoder'), '--out', join(PKGS, IDS.ip), '--share', base, ...common(IDS.ip)],
    ],
  ];
  for (const [id, args] of jobs) {
    const out = join(PKGS, id);
    if (existsSync(join(out, 'amdm.json'))) {
      console.log(`[convert] ${out} exists`);
      continue;
    }
    const m = await measured(`convert-${id}-${precision}`, PY, ['tools/convert/convert.py', ...args], { OMP_NUM_THREADS: '2' });
    must(m, `converting ${id}`);
    const info = JSON.parse(readFileSync(join(out, 'convert.json'), 'utf8')) as { components: Record<string, { max_abs_diff?: unknown }> };
    record(`convert:${id}:${precision}`, {
      seconds: Math.round(m.ms / 1000),
      peak_rss_gib: gib(m.peakRssBytes),
      package_gib: gib(folderBytes(out)),
      files: Object.fromEntries(readdirSync(out, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => [e.name, gib(folderBytes(join(out, e.name)))])),
      checked: checked(id),
      check: info.components,
    });
  }
}

// ---------------------------------------------------------------- the job
/** A 320×240 reference image (a warm gradient with a dark disc): the preprocessing resizes and crops it. */
function referencePng(): string {
  const w = 320;
  const h = 240;
  const data = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const inDisc = (x - 200) ** 2 + (y - 110) ** 2 < 60 ** 2;
      const o = (y * w + x) * 3;
      data[o] = inDisc ? 40 : 200 + Math.round((55 * x) / w);
      data[o + 1] = inDisc ? 30 : 120 + Math.round((80 * y) / h);
      data[o + 2] = inDisc ? 60 : 60;
    }
  }
  return Buffer.from(encodePng({ width: w, height: h, data, channels: 3, depth: 8 })).toString('base64');
}

function jobBody(side: number, n = nModels): Record<string, unknown> {
  const models = [
    { id: IDS.base, role: 'base', prompt: 'a person riding a horse on a beach at sunset, watercolor', negative_prompt: 'blurry' },
    {
      id: IDS.interaction,
      role: 'auxiliary',
      prompt: 'a person riding a horse',
      interactions: [{ subject: 'a person', subject_box: [0.35, 0.1, 0.65, 0.55], action: 'riding', object: 'a horse', object_box: [0.15, 0.3, 0.85, 0.95] }],
    },
    { id: IDS.ip, role: 'auxiliary', prompt: 'a person riding a horse', reference_image: { data: referencePng(), scale: 0.8 } },
  ].slice(0, n);
  return {
    models,
    aggregation: n === 3 ? { omega: 0.47, omega2: 0.5, window: [1, 3] } : n === 2 ? { omega: 0.5, window: [1, 3] } : { window: [1, 3] },
    sampler: { steps, seed: 7, width: side, height: side, noise: 'torch' },
  };
}

function jobFile(side: number): string {
  const f = join(DIR, `job-${nModels}models-${side}.json`);
  writeFileSync(f, `${JSON.stringify(jobBody(side), null, 2)}\n`);
  return f;
}

/** The CLI's last line: "wrote ...; seed S, N UNet evaluations, T ms sampling (O in onnxruntime, X outside; U in N UNet calls) after L ms loading models" */
function parseGenerateSummary(stderr: string): Record<string, number> | null {
  const m = /(\d+) UNet evaluations, (\d+) ms sampling \((\d+) in onnxruntime, (\d+) outside(?:; (\d+) in the UNet)?\) after (\d+) ms loading models/.exec(stderr);
  if (!m) return null;
  const [, evals, total, onnx, outside, unet, load] = m.map(Number);
  return { unet_evals: evals!, sampling_ms: total!, onnx_ms: onnx!, outside_onnx_ms: outside!, ...(unet ? { unet_ms: unet, ms_per_unet_eval: Math.round(unet / evals!) } : {}), load_ms: load! };
}

function officialEvals(): number {
  return nModels * steps;
}

async function generate(): Promise<void> {
  for (const side of sizes) {
    const out = join(DIR, 'out', `${tag}-${nModels}models-${side}.png`);
    mkdirSync(join(DIR, 'out'), { recursive: true });
    const threads = [...(values.threads ? ['--threads', values.threads] : []), ...(values['no-arena'] ? ['--no-arena'] : [])];
    const m = await measured(`generate-${tag}-${nModels}models-${side}`, process.execPath, ['bin/amdm.js', 'generate', jobFile(side), '--out', out, '--quiet', ...threads], { AMDM_MODELS_DIR: PKGS });
    const summary = parseGenerateSummary(m.stderr);
    record(`generate:${tag}:${nModels}models:${side}`, {
      exit: m.code,
      wall_seconds: Math.round(m.ms / 1000),
      peak_rss_gib: gib(m.peakRssBytes),
      official_unet_evals: officialEvals(),
      ...summary,
      ...(summary ? { outside_onnx_fraction: Math.round((summary.outside_onnx_ms! / summary.sampling_ms!) * 1000) / 1000 } : {}),
      ...(m.code !== 0 ? { error: m.stoppedForMemory ?? m.stderr.trim().split('\n').slice(-3).join(' | ') } : {}),
    });
    if (m.stoppedForMemory) {
      console.error(`[generate] ${side}×${side} with ${nModels} ${precision} models does not fit: ${m.stoppedForMemory}`);
      continue;
    }
    must(m, `amdm generate at ${side}`);
  }
}

// ---------------------------------------------------------------- serve
async function serve(): Promise<void> {
  const side = sizes[sizes.length - 1]!;
  const body = jobBody(side);
  const dataDir = join(DIR, 'data');
  const port = 18000 + Math.floor(Math.random() * 2000);
  let submitted = false;
  let outcome: Record<string, unknown> = {};
  const env = {
    AMDM_MODELS_DIR: PKGS,
    DATA_DIR: dataDir,
    PORT: String(port),
    AMDM_START_TIMEOUT_SECONDS: '0',
    ...(values.threads ? { ORT_INTRA_OP_THREADS: values.threads } : {}),
    ...(values['no-arena'] ? { ORT_CPU_MEM_ARENA: '0' } : {}),
  };
  const m = await measured(`serve-${tag}-${nModels}models-${side}`, 'npm', ['start'], env, (out, pid) => {
    if (submitted || !out.includes('AMDM API is running')) return;
    submitted = true;
    void (async () => {
      const url = `http://127.0.0.1:${port}`;
      try {
        const key = readFileSync(join(dataDir, 'local-api-key'), 'utf8').trim();
        const auth = { authorization: `Bearer ${key}` };
        const t0 = performance.now();
        const res = await fetch(`${url}/v1/jobs`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify(body) });
        let job = (await res.json()) as { id: string; status: string; outputs?: { url: string }[]; error?: unknown; usage?: unknown };
        if (res.status !== 202 && res.status !== 201 && res.status !== 200) throw new Error(`POST /v1/jobs: ${res.status} ${JSON.stringify(job)}`);
        console.log(`[serve] job ${job.id} accepted (${res.status})`);
        while (!['succeeded', 'failed', 'canceled'].includes(job.status)) {
          await new Promise((r) => setTimeout(r, 5000));
          job = (await (await fetch(`${url}/v1/jobs/${job.id}`, { headers: auth })).json()) as typeof job;
        }
        const seconds = (performance.now() - t0) / 1000;
        let pngBytes = 0;
        if (job.status === 'succeeded' && job.outputs?.[0]) {
          const png = new Uint8Array(await (await fetch(job.outputs[0].url)).arrayBuffer());
          writeFileSync(join(DIR, 'out', `serve-${tag}-${nModels}models-${side}.png`), png);
          pngBytes = png.length;
        }
        outcome = { job: job.id, status: job.status, submit_to_finish_seconds: Math.round(seconds), png_bytes: pngBytes, ...(job.error ? { error: job.error } : {}) };
        console.log(`[serve] job ${job.id} ${job.status} after ${seconds.toFixed(0)} s`);
      } catch (err) {
        outcome = { error: (err as Error).message };
      } finally {
        process.kill(-pid, 'SIGINT'); // drain and exit: the group this script started
      }
    })();
  });
  const line = m.stdout.split('\n').find((l) => l.includes('"succeeded"') || l.includes('"msg":"succeeded"'));
  const loaded = m.stdout.split('\n').find((l) => l.includes('models loaded'));
  record(`serve:${tag}:${nModels}models:${side}`, {
    ...outcome,
    ...(m.stoppedForMemory ? { error: m.stoppedForMemory } : {}),
    wall_seconds: Math.round(m.ms / 1000),
    peak_rss_gib: gib(m.peakRssBytes),
    ...(loaded ? { models_loaded: JSON.parse(loaded) } : {}),
    ...(line ? { runner: JSON.parse(line) } : {}),
  });
  if (outcome.status !== 'succeeded') usage(`the job through npm start did not succeed: ${JSON.stringify(outcome)}`);
}

// ---------------------------------------------------------------- bench
async function bench(): Promise<void> {
  const side = sizes[sizes.length - 1]!;
  const m = await measured(
    `bench-${tag}-${nModels}models-${side}`,
    'npm',
    ['run', 'bench:engine', '--', '--models', PKGS, '--request', jobFile(side), '--steps', String(steps), '--repeats', '1', '--warmup', '0', '--no-torch', '--no-previews', '--threads', values.threads ?? '2', ...(values['no-arena'] ? ['--no-arena'] : [])],
    {},
  );
  if (m.stoppedForMemory) {
    record(`bench:${tag}:${nModels}models:${side}`, { error: m.stoppedForMemory, peak_rss_gib: gib(m.peakRssBytes) });
    return;
  }
  must(m, 'bench:engine');
  const last = m.stdout.trim().split('\n').at(-1)!;
  record(`bench:${tag}:${nModels}models:${side}`, { wall_seconds: Math.round(m.ms / 1000), peak_rss_gib: gib(m.peakRssBytes), table: m.stdout.split('\n').filter((l) => /^\d+ \d+ \|/.test(l)), last: JSON.parse(last) });
}

for (const s of STAGES) {
  if (!stages.includes(s)) continue;
  if (s === 'checkpoints') await checkpoints();
  if (s === 'convert') await convert();
  if (s === 'generate') await generate();
  if (s === 'serve') await serve();
  if (s === 'bench') await bench();
}
console.log(`report: ${reportPath}`);
