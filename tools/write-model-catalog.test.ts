import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { createEngine } from '../gpu-runner/engine/index.ts';
import { parseModelCatalog, readModelCatalog, sha256Hex } from '../shared/model-catalog.ts';
import { BUILTIN_MODELS_DIR } from '../single-node/data-dir.ts';
import { cpSync } from 'node:fs';
import { main, modelCatalogText } from './write-model-catalog.ts';

const MODELS_DIR = process.env.AMDM_MODELS_DIR || BUILTIN_MODELS_DIR;

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), 'amdm-catalog-'));
  dirs.push(d);
  return d;
};

describe('generated from model packages', () => {
  it('lists what the engine lists for the same folder, bound to its checksums.json, reproducibly', async () => {
    const text = await modelCatalogText(MODELS_DIR);
    expect(await modelCatalogText(MODELS_DIR)).toBe(text);
    const catalog = parseModelCatalog(text, 'generated');
    const engine = await createEngine({ modelsDirs: [MODELS_DIR], provider: 'cpu' });
    try {
      const fromEngine = await engine.catalog();
      expect(catalog.models).toEqual([...fromEngine].sort((a, b) => a.id.localeCompare(b.id)));
    } finally {
      await engine.dispose();
    }
    const checksums = join(MODELS_DIR, 'checksums.json');
    expect(catalog.modelsChecksumsSha256).toBe(existsSync(checksums) ? sha256Hex(readFileSync(checksums)) : null);
  });

  it('npm run models:catalog writes DIR/catalog.json; --check passes on it and fails on a changed one', async () => {
    const out = join(tmp(), 'catalog.json');
    vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      expect(await main(['--models', MODELS_DIR, '--out', out, '--check'])).toBe(1);
      expect(await main(['--models', MODELS_DIR, '--out', out])).toBe(0);
      expect(await main(['--models', MODELS_DIR, '--out', out, '--check'])).toBe(0);
      writeFileSync(out, readFileSync(out, 'utf8').replace('"schema"', '"schema" '));
      expect(await main(['--models', MODELS_DIR, '--out', out, '--check'])).toBe(1);
    } finally {
      vi.restoreAllMocks();
    }
    expect(readModelCatalog(out).models.length).toBeGreaterThan(0);
  });

  it('--checksums writes checksums.json for any package folder (the converted ones), and the catalog is bound to it', async () => {
    const dir = join(tmp(), 'models');
    cpSync(new URL('../test/fixtures/packages/', import.meta.url), dir, { recursive: true });
    vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      expect(await main(['--models', dir, '--checksums'])).toBe(0);
    } finally {
      vi.restoreAllMocks();
    }
    const sums = JSON.parse(readFileSync(join(dir, 'checksums.json'), 'utf8')) as Record<string, string>;
    expect(sums['tiny-interactdiffusion/amdm.json']).toBe(sha256Hex(readFileSync(join(dir, 'tiny-interactdiffusion/amdm.json'))));
    expect(sums['tiny-sd15/unet/model.onnx']).toBe(sha256Hex(readFileSync(join(dir, 'tiny-sd15/unet/model.onnx'))));
    expect(Object.keys(sums)).not.toContain('checksums.json');
    expect(Object.keys(sums)).not.toContain('catalog.json');
    const catalog = readModelCatalog(join(dir, 'catalog.json'));
    expect(catalog.modelsChecksumsSha256).toBe(sha256Hex(readFileSync(join(dir, 'checksums.json'))));
    expect(catalog.models.map((m) => m.id)).toEqual(['tiny-gligen', 'tiny-interactdiffusion', 'tiny-ip-adapter', 'tiny-sd15']);
  });
});
