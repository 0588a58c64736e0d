/**
 * `npm run models:catalog -- [--models DIR] [--out FILE] [--check]`: writes the catalog the
 * edge Lambda serves (shared/model-catalog.ts) from a folder of model packages.
 *
 * The models come from the engine itself (`createEngine(...).catalog()`, which reads only
 * each package's JSON), so the Lambda lists exactly what a runner with the same folder
 * serves. Defaults: --models is AMDM_MODELS_DIR or the built-in models/, --out is
 * DIR/catalog.json, beside the checksums.json that the runners' model sync verifies against.
 * --check writes nothing and exits 1 when the file is missing or differs (for CI).
 * --checksums first (re)writes DIR/checksums.json, the SHA-256 of every file of the folder
 * (for packages not made by tools/shapes/export.py, e.g. converted ones, before an upload).
 */
import { createHash } from 'node:crypto';
import { createReadStream, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative, resolve, sep } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { createEngine } from '../gpu-runner/engine/index.ts';
import { BUILTIN_MODELS_DIR } from '../single-node/data-dir.ts';
import { CHECKSUMS_FILE, formatModelCatalog, modelsChecksumsSha256 } from '../shared/model-catalog.ts';

/**
 * Writes DIR/checksums.json: every file below DIR (but checksums.json and catalog.json) by
 * its path relative to DIR, with its SHA-256, streamed so a multi-GB weights file is never
 * held in memory. Returns how many files it lists.
 */
export async function writeChecksums(modelsDir: string): Promise<number> {
  const files: string[] = [];
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile() && !(dir === modelsDir && (e.name === CHECKSUMS_FILE || e.name === 'catalog.json'))) files.push(relative(modelsDir, p).split(sep).join('/'));
    }
  };
  walk(modelsDir);
  files.sort();
  const sums: Record<string, string> = {};
  for (const f of files) {
    const h = createHash('sha256');
    for await (const chunk of createReadStream(join(modelsDir, f))) h.update(chunk as Buffer);
    sums[f] = h.digest('hex');
  }
  writeFileSync(join(modelsDir, CHECKSUMS_FILE), `${JSON.stringify(sums, null, 2)}\n`);
  return files.length;
}

/** The catalog file's text for the packages in `modelsDir`. */
export async function modelCatalogText(modelsDir: string): Promise<string> {
  const engine = await createEngine({ modelsDirs: [modelsDir], provider: 'cpu' });
  try {
    const models = await engine.catalog();
    if (models.length === 0) throw new Error(`${modelsDir} holds no model packages (folders with amdm.json or model_index.json)`);
    return formatModelCatalog({ models, modelsChecksumsSha256: modelsChecksumsSha256(modelsDir) });
  } finally {
    await engine.dispose();
  }
}

export async function main(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { models: { type: 'string' }, out: { type: 'string' }, check: { type: 'boolean' }, checksums: { type: 'boolean' } } });
  const modelsDir = resolve(values.models ?? (env.AMDM_MODELS_DIR || BUILTIN_MODELS_DIR));
  if (values.checksums && values.check) throw new Error('--checksums writes checksums.json; --check writes nothing: give one of them');
  if (values.checksums) process.stderr.write(`wrote ${join(modelsDir, CHECKSUMS_FILE)}: ${await writeChecksums(modelsDir)} files\n`);
  const out = resolve(values.out ?? join(modelsDir, 'catalog.json'));
  const text = await modelCatalogText(modelsDir);
  if (values.check) {
    let current: string | null = null;
    try {
      current = readFileSync(out, 'utf8');
    } catch {
      /* reported below */
    }
    if (current !== text) {
      process.stderr.write(`${out} is ${current === null ? 'missing' : 'stale'}; run: npm run models:catalog -- --models ${modelsDir}\n`);
      return 1;
    }
    process.stderr.write(`${out} is current\n`);
    return 0;
  }
  writeFileSync(out, text);
  const count = (JSON.parse(text) as { models: unknown[] }).models.length;
  process.stderr.write(`wrote ${out}: ${count} model(s) from ${modelsDir}\n`);
  return 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err) => {
      process.stderr.write(`models:catalog: ${(err as Error).message}\n`);
      process.exit(1);
    },
  );
}
