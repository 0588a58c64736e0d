/**
 * `npm run models:catalog -- [--models DIR] [--out FILE] [--check]`: writes the catalog the
 * edge Lambda serves (shared/model-catalog.ts) from a folder of model packages.
 *
 * The models come from the engine itself (`createEngine(...).catalog()`, which reads only
 * each package's JSON), so the Lambda lists exactly what a runner with the same folder
 * serves. Defaults: --models is AMDM_MODELS_DIR or the built-in models/, --out is
 * DIR/catalog.json, beside the checksums.json that the runners' model sync verifies against.
 * --check writes nothing and exits 1 when the file is missing or differs (for CI).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { createEngine } from '../gpu-runner/engine/index.ts';
import { BUILTIN_MODELS_DIR } from '../single-node/data-dir.ts';
import { formatModelCatalog, modelsChecksumsSha256 } from '../shared/model-catalog.ts';

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
  const { values } = parseArgs({ args: argv, options: { models: { type: 'string' }, out: { type: 'string' }, check: { type: 'boolean' } } });
  const modelsDir = resolve(values.models ?? (env.AMDM_MODELS_DIR || BUILTIN_MODELS_DIR));
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
