/**
 * Static lint of gpu-runner/Dockerfile and .dockerignore. The image cannot be built here (no
 * Docker engine), so this holds it to the properties that matter in production: pinned base
 * images, a verified Node download, the CUDA install switch for onnxruntime-node, production
 * dependencies only, a non-root user, a health check, an exec-form command, and a build
 * context that contains every path the Dockerfile copies.
 */
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { describe, expect, it } from 'vitest';
import { parseDockerfile } from '../../tools/dockerfile.ts';

const root = fileURLToPath(new URL('../../', import.meta.url));
const dockerfile = readFileSync(`${root}gpu-runner/Dockerfile`, 'utf8');

const instructions = parseDockerfile(dockerfile);
const lastStage = Math.max(...instructions.map((i) => i.stage));
const final = instructions.filter((i) => i.stage === lastStage);
const globalArgs = Object.fromEntries(
  instructions
    .filter((i) => i.stage === -1 && i.keyword === 'ARG')
    .map((i) => i.args.split('=') as [string, string]),
);

describe('gpu-runner/Dockerfile', () => {
  it('starts from pinned images, never a latest or untagged one', () => {
    const stages: string[] = [];
    for (const from of instructions.filter((i) => i.keyword === 'FROM')) {
      const [ref = '', as, name] = from.args.split(/\s+/);
      const image = ref.replace(/^\$\{?(\w+)\}?$/, (_, arg: string) => globalArgs[arg] ?? `\${${arg}}`);
      if (!stages.includes(image)) {
        expect(image, `FROM ${from.args}`).toMatch(/^[\w./-]+:[\w.-]+(@sha256:[0-9a-f]{64})?$|^[\w./-]+@sha256:[0-9a-f]{64}$/);
        expect(image, `FROM ${from.args}`).not.toMatch(/:latest(@|$)/);
      }
      if (as?.toUpperCase() === 'AS' && name) stages.push(name);
    }
    expect(globalArgs.CUDA_IMAGE).toMatch(/^nvidia\/cuda:12\.\d+\.\d+-cudnn-runtime-/);
  });

  it('installs Node 22 from the official tarball and verifies its checksum', () => {
    const nodeVersion = instructions.find((i) => i.keyword === 'ARG' && i.args.startsWith('NODE_VERSION='));
    expect(nodeVersion?.args).toMatch(/^NODE_VERSION=22\.\d+\.\d+$/);
    const download = instructions.find((i) => i.keyword === 'RUN' && i.args.includes('nodejs.org/dist'));
    expect(download?.args).toMatch(/SHASUMS256\.txt/);
    expect(download?.args).toMatch(/sha256sum -c/);
    // The hash must be checked before the tarball is unpacked.
    expect(download!.args.indexOf('sha256sum -c')).toBeLessThan(download!.args.indexOf('tar -x'));
    expect(instructions.find((i) => i.keyword === 'SHELL')?.args).toContain('pipefail');
  });

  it('sets ONNXRUNTIME_NODE_INSTALL=cuda12 before npm ci, and installs production dependencies only', () => {
    const ciIndex = instructions.findIndex((i) => i.keyword === 'RUN' && /\bnpm ci\b/.test(i.args));
    expect(ciIndex).toBeGreaterThan(-1);
    const ci = instructions[ciIndex]!;
    expect(ci.args).toMatch(/--omit=dev/);
    const env = instructions.slice(0, ciIndex).filter((i) => i.keyword === 'ENV' && i.stage === ci.stage);
    expect(env.map((e) => e.args).join(' ')).toMatch(/\bONNXRUNTIME_NODE_INSTALL=cuda12\b/);
  });

  it('prunes the production install to linux-x64 right after it, with the script the app-layer check runs', () => {
    const ciIndex = instructions.findIndex((i) => i.keyword === 'RUN' && /\bnpm ci\b/.test(i.args));
    const prune = instructions.findIndex((i) => i.keyword === 'RUN' && /node prune-node-modules\.mjs node_modules/.test(i.args));
    expect(prune).toBeGreaterThan(ciIndex);
    expect(instructions[prune]!.stage).toBe(instructions[ciIndex]!.stage);
    expect(instructions.slice(ciIndex, prune).some((i) => i.keyword === 'COPY' && i.args === 'gpu-runner/prune-node-modules.mjs ./')).toBe(true);
  });

  it('has tsx among the production dependencies, since the command runs through it', () => {
    const pkg = JSON.parse(readFileSync(`${root}package.json`, 'utf8'));
    expect(pkg.dependencies).toHaveProperty('tsx');
    expect(pkg.dependencies).toHaveProperty('onnxruntime-node');
  });

  it('runs as a non-root user in the final image, set before the command', () => {
    const users = final.filter((i) => i.keyword === 'USER');
    expect(users.length).toBeGreaterThan(0);
    const user = users.at(-1)!;
    expect(user.args).not.toMatch(/^(root|0)(:|$)/);
    expect(final.indexOf(user)).toBeLessThan(final.findIndex((i) => i.keyword === 'CMD'));
  });

  it('has a HEALTHCHECK in the final image, running a script the image contains', () => {
    const health = final.filter((i) => i.keyword === 'HEALTHCHECK');
    expect(health).toHaveLength(1);
    expect(health[0]!.args).not.toMatch(/^NONE/i);
    const script = /"(gpu-runner\/[^"]+\.mjs)"/.exec(health[0]!.args)?.[1];
    expect(script).toBeDefined();
    expect(existsSync(`${root}${script}`)).toBe(true);
  });

  it('runs gpu-runner/main.ts with node --import tsx, in exec form', () => {
    const cmds = final.filter((i) => i.keyword === 'CMD');
    expect(cmds).toHaveLength(1);
    expect(JSON.parse(cmds[0]!.args)).toEqual(['node', '--import', 'tsx', 'gpu-runner/main.ts']);
    expect(existsSync(`${root}gpu-runner/main.ts`)).toBe(true);
  });

  it('copies every file gpu-runner/main.ts imports, and lists every package it imports as a production dependency', async () => {
    const copied = final
      .filter((i) => i.keyword === 'COPY' && !i.args.startsWith('--from'))
      .flatMap((i) => i.args.split(/\s+/).filter((a) => !a.startsWith('--')).slice(0, -1));
    // the runner's import graph, as node resolves it at run time (tsx transpiles, nothing is bundled)
    const result = await build({
      entryPoints: [`${root}gpu-runner/main.ts`],
      bundle: true,
      write: false,
      metafile: true,
      platform: 'node',
      format: 'esm',
      packages: 'external',
      logLevel: 'silent',
    });
    const files = Object.keys(result.metafile.inputs);
    expect(files).toContain('gpu-runner/aws/scale-in-guard.ts');
    const missing = files.filter((f) => !copied.some((c) => f === c || f.startsWith(`${c.replace(/\/$/, '')}/`)));
    expect(missing, 'imported by the runner but not copied into the image').toEqual([]);
    const packages = new Set(
      Object.values(result.metafile.inputs)
        .flatMap((input) => input.imports)
        .filter((imp) => imp.external && !imp.path.startsWith('node:'))
        .map((imp) => (imp.path.startsWith('@') ? imp.path.split('/').slice(0, 2).join('/') : imp.path.split('/')[0]!)),
    );
    const pkg = JSON.parse(readFileSync(`${root}package.json`, 'utf8'));
    expect([...packages].filter((p) => !(p in pkg.dependencies)), 'imported by the runner but not a production dependency').toEqual([]);
    expect(packages).toContain('sst');
  });

  it('says why for every instruction', () => {
    const silent = instructions.filter((i) => i.comment.length === 0);
    expect(silent.map((i) => `${i.keyword} ${i.args}`)).toEqual([]);
  });
});

describe('.dockerignore', () => {
  const ignore = readFileSync(`${root}.dockerignore`, 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));

  it('starts from nothing and lets in only what the image copies', () => {
    expect(ignore[0]).toBe('*');
    const allowed = ignore.filter((l) => l.startsWith('!')).map((l) => l.slice(1));
    for (const denied of ['node_modules', '.git', '.sst', 'data', 'models', '.env']) {
      expect(allowed).not.toContain(denied);
    }
  });

  it('lets in every path the Dockerfile copies from the context, and each exists', () => {
    const allowed = ignore.filter((l) => l.startsWith('!')).map((l) => l.slice(1));
    const sources = instructions
      .filter((i) => i.keyword === 'COPY' && !i.args.startsWith('--from'))
      .flatMap((i) => i.args.split(/\s+/).filter((a) => !a.startsWith('--')).slice(0, -1));
    expect(sources.length).toBeGreaterThan(0);
    for (const source of sources) {
      const under = allowed.some((a) => source === a || source.startsWith(`${a}/`));
      expect(under, `COPY ${source} is not in the .dockerignore allowlist`).toBe(true);
      expect(existsSync(`${root}${source}`), `COPY ${source} does not exist`).toBe(true);
    }
  });
});
