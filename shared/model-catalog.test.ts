import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { ModelInfo } from './contract/index.ts';
import { formatModelCatalog, parseModelCatalog, readDeployableCatalog, readModelCatalog, sha256Hex } from './model-catalog.ts';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), 'amdm-catalog-'));
  dirs.push(d);
  return d;
};

const model = (id: string): ModelInfo => ({
  id,
  description: `model ${id}`,
  ecosystem: 'shapes-v1',
  latent: { channels: 4, vae_scale_factor: 4 },
  sizes: { default: [32, 32], min: 32, max: 64, multiple: 8 },
  conditions: { prompt: { max_tokens: 75 }, grounding: null, reference_image: null },
  schedulers: ['ddim', 'euler'],
});

describe('the model catalog file', () => {
  it('is deterministic: models sorted by id, the same bytes for the same models', () => {
    const a = formatModelCatalog({ models: [model('b'), model('a')], modelsChecksumsSha256: null });
    const b = formatModelCatalog({ models: [model('a'), model('b')], modelsChecksumsSha256: null });
    expect(a).toBe(b);
    expect(a.endsWith('}\n')).toBe(true);
    expect(parseModelCatalog(a, 'x').models.map((m) => m.id)).toEqual(['a', 'b']);
  });

  it('refuses malformed files, naming the file and the field', () => {
    expect(() => parseModelCatalog('{', 'cat.json')).toThrow(/cat\.json is not JSON/);
    const good = JSON.parse(formatModelCatalog({ models: [model('a')], modelsChecksumsSha256: null }));
    expect(() => parseModelCatalog(JSON.stringify({ ...good, schema: 'v0' }), 'cat.json')).toThrow(/cat\.json: field "schema"/);
    expect(() => parseModelCatalog(JSON.stringify({ ...good, models: [] }), 'cat.json')).toThrow(/field "models"/);
    expect(() => parseModelCatalog(JSON.stringify({ ...good, models: [{ ...good.models[0], sizes: null }] }), 'cat.json')).toThrow(/field "models\.0\.sizes"/);
    expect(() => parseModelCatalog(JSON.stringify({ ...good, models: [good.models[0], good.models[0]] }), 'cat.json')).toThrow(/two models have the id "a"/);
    expect(() => formatModelCatalog({ models: [model('a'), model('a')], modelsChecksumsSha256: null })).toThrow(/two models/);
    expect(() => readModelCatalog(join(tmp(), 'none.json'))).toThrow(/no model catalog at .*npm run models:catalog/);
  });

  it('a deploy refuses a catalog whose models changed since it was generated', () => {
    const dir = tmp();
    writeFileSync(join(dir, 'checksums.json'), '{"a/unet/model.onnx":"00"}\n');
    const sha = sha256Hex(readFileSync(join(dir, 'checksums.json')));
    writeFileSync(join(dir, 'catalog.json'), formatModelCatalog({ models: [model('a')], modelsChecksumsSha256: sha }));
    expect(readDeployableCatalog(join(dir, 'catalog.json')).models).toHaveLength(1);
    writeFileSync(join(dir, 'checksums.json'), '{"a/unet/model.onnx":"11"}\n');
    expect(() => readDeployableCatalog(join(dir, 'catalog.json'))).toThrow(/is stale: .*checksums\.json changed/);
  });
});
