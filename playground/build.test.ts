import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { buildUiAssets, examplesJson } from './build.ts';

const dir = mkdtempSync(join(tmpdir(), 'amdm-examples-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('the presets embedded in the playground page', () => {
  it('are the example files, fewest models first, and no prompt can end their <script> element', () => {
    const sneaky = { models: [{ id: 'a', role: 'base', prompt: '</script><script>alert(1)</script><!--' }, { id: 'b', role: 'auxiliary', prompt: 'x' }] };
    writeFileSync(join(dir, 'two.json'), JSON.stringify(sneaky));
    writeFileSync(join(dir, 'one.json'), JSON.stringify({ models: [{ id: 'a', role: 'base', prompt: 'y' }] }));
    writeFileSync(join(dir, 'notes.txt'), 'not an example');
    const text = examplesJson(dir);
    expect(text).not.toMatch(/<\/?script|<!--/i);
    expect(JSON.parse(text)).toEqual([{ name: 'one', request: { models: [{ id: 'a', role: 'base', prompt: 'y' }] } }, { name: 'two', request: sneaky }]);
  });

  it('names an example that is not JSON', () => {
    writeFileSync(join(dir, 'broken.json'), '{"models": [');
    expect(() => examplesJson(dir)).toThrow(/^examples\/broken\.json: not valid JSON/);
  });

  it('are in the page the edge serves, every file of examples/', async () => {
    const page = (await buildUiAssets()).files['/']!.body;
    const m = /<script type="application\/json" id="examples">(.*?)<\/script>/s.exec(page);
    expect(m).not.toBeNull();
    expect((JSON.parse(m![1]!) as { name: string }[]).map((p) => p.name)).toEqual(['single', 'base-layout', 'base-layout-style', 'layout-caption-style']);
  });
});
