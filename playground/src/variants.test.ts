import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ModelInfo } from '../../shared/contract/index.ts';
import { auxiliaryChoices, originalOf, variantOf } from './variants.ts';

/** The catalog the built-in models publish (GET /v1/models answers with these). */
const CATALOG = (JSON.parse(readFileSync(new URL('../../models/catalog.json', import.meta.url), 'utf8')) as { models: unknown[] }).models.map((m) => ModelInfo.parse(m));
const byId = (id: string) => CATALOG.find((m) => m.id === id)!;
const ids = (ms: { id: string }[]) => ms.map((m) => m.id);

describe('model variants', () => {
  it('knows the fp16 export of shapes-base as its variant, and nothing else as one', () => {
    expect(variantOf(byId('shapes-base-fp16'), CATALOG)?.id).toBe('shapes-base');
    for (const id of ['shapes-base', 'shapes-layout', 'shapes-style']) expect(variantOf(byId(id), CATALOG), id).toBeNull();
    expect(originalOf(byId('shapes-base-fp16'), CATALOG).id).toBe('shapes-base');
  });

  it('an id that merely extends another is no variant when the model takes something else', () => {
    const layoutPlus = { ...byId('shapes-layout'), id: 'shapes-base-layout' };
    expect(variantOf(layoutPlus, [...CATALOG, layoutPlus])).toBeNull();
    // nor is a model whose id only shares a prefix without the separator
    const based = { ...byId('shapes-base'), id: 'shapes-baseline' };
    expect(variantOf(based, [...CATALOG, based])).toBeNull();
  });

  it('offers no variant as an auxiliary, and says why', () => {
    const a = auxiliaryChoices('shapes-base', [], CATALOG);
    // shapes-captioned-style takes what shapes-style takes but is no variant of it: its id does not extend shapes-style's
    expect(ids(a.offered)).toEqual(['shapes-captioned-style', 'shapes-layout', 'shapes-style']);
    expect(a.left.map((l) => [l.info.id, l.reason])).toEqual([['shapes-base-fp16', expect.stringMatching(/same model as the base shapes-base \(a variant of shapes-base\)/)]]);

    // with the fp16 copy as the base, its original is the same model
    const b = auxiliaryChoices('shapes-base-fp16', [], CATALOG);
    expect(ids(b.offered)).toEqual(['shapes-captioned-style', 'shapes-layout', 'shapes-style']);
    expect(b.left.map((l) => l.info.id)).toEqual(['shapes-base']);
    expect(b.left[0]!.reason).toMatch(/shapes-base-fp16 is a variant of it/);

    // with another base, the original is offered and its copy is not
    const c = auxiliaryChoices('shapes-layout', [], CATALOG);
    expect(ids(c.offered)).toEqual(['shapes-base', 'shapes-captioned-style', 'shapes-style']);
    expect(c.left.map((l) => [l.info.id, l.reason])).toEqual([['shapes-base-fp16', 'a variant of shapes-base, which is offered instead']]);
  });

  it('keeps a variant a job already uses, so it can be seen and removed', () => {
    expect(ids(auxiliaryChoices('shapes-base', ['shapes-base-fp16'], CATALOG).offered)).toEqual(['shapes-base-fp16', 'shapes-captioned-style', 'shapes-layout', 'shapes-style']);
  });

  it('offers nothing for an unknown base', () => {
    expect(auxiliaryChoices('nope', [], CATALOG)).toEqual({ offered: [], left: [] });
  });
});
