/**
 * `npm run eval`: the fine-grained control table of the shapes family, reproduced with
 * the TypeScript engine on the same held-out set (tools/shapes/heldout.json), the same
 * configurations (docs/control-table.json, written by tools/shapes/table.py), the same
 * seeds (the engine's noise equals the Python side's) and the same scorer (score.ts).
 * Prints the engine's numbers beside the PyTorch reference's and checks that they agree:
 * every cell within one verdict of n (1/n; a scene-level verdict flipping, e.g. from float
 * summation order, moves a mean by 1/n). Exits 1 if a row does not agree.
 *
 *   npm run eval -- [--limit N] [--threads T] [--out FILE.json] [--rows TEXT]
 *
 * --rows TEXT (repeatable): only the rows whose name contains one of the TEXTs (e.g. "base choice").
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { decode as decodePng } from 'fast-png';
import type { JobSpec, SpecModel } from '../../shared/contract/index.ts';
import { createEngine } from '../../gpu-runner/engine/index.ts';
import { planesFromRgb, score, type Scene } from './score.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const { values } = parseArgs({ options: { limit: { type: 'string' }, threads: { type: 'string', default: '1' }, out: { type: 'string' }, rows: { type: 'string', multiple: true } } });

interface Item {
  seed: number;
  scene: Scene;
  base_prompt: string;
  layout_prompt: string;
  grounding: { phrase: string; box: [number, number, number, number] }[];
  reference_png: string;
}
interface Row {
  row: string;
  config: { kinds: string[]; steps: number; weights: number[]; p: number[]; window: [number, number]; clamp?: boolean; schedule?: { weights?: number[][]; p?: number[][] } };
  [metric: string]: unknown;
}

const heldout = JSON.parse(readFileSync(`${ROOT}tools/shapes/heldout.json`, 'utf8')) as { guidance: number; ip_scale: number; items: Item[] };
const table = JSON.parse(readFileSync(`${ROOT}docs/control-table.json`, 'utf8')) as { rows: Row[] };
const items = heldout.items.slice(0, values.limit ? Number(values.limit) : undefined);
const METRICS = ['iou', 'color', 'shape', 'color_in_box', 'style', 'count', 'all'] as const;

function specFor(row: Row, it: Item): JobSpec {
  const c = row.config;
  const models: SpecModel[] = c.kinds.map((kind, k) => ({
    // kinds as tools/shapes/family.py names them: captioned_style is the package shapes-captioned-style
    id: `shapes-${kind.replaceAll('_', '-')}`,
    role: k === 0 ? 'base' : 'auxiliary',
    // the caption model and the style model trained with colors get the full caption
    prompt: kind === 'base' || kind === 'captioned_style' ? it.base_prompt : it.layout_prompt,
    negative_prompt: '',
    guidance_scale: heldout.guidance,
    grounding: kind === 'layout' ? it.grounding : [],
    reference_image: kind === 'style' || kind === 'captioned_style' ? { data: it.reference_png, scale: heldout.ip_scale } : null,
    weight: c.weights[k]!,
    p: c.p[k]!,
  }));
  return {
    models,
    aggregation: {
      window: c.window,
      clamp: c.clamp ?? false,
      weights: c.kinds.length === 1 ? 'single' : c.schedule ? 'schedule' : 'explicit',
      ...(c.schedule ? { schedule: c.schedule } : {}),
    },
    sampler: { steps: c.steps, seed: it.seed, width: 32, height: 32, scheduler: 'ddim', eta: 0 },
    outputs: { images: 1, per_model: false, latents: false },
    estimate: { unet_evals: 0 },
  };
}

const engine = await createEngine({ modelsDirs: [`${ROOT}models`], intraOpNumThreads: Number(values.threads) });
const t0 = performance.now();
const results: Record<string, unknown>[] = [];
console.log(`${items.length} held-out combinations; engine vs PyTorch reference (docs/control-table.json)`);
console.log(`| row | ${METRICS.join(' | ')} |`);
console.log(`| --- |${' --- |'.repeat(METRICS.length)}`);
const rows = table.rows.filter((r) => !values.rows || values.rows.some((text) => r.row.includes(text)));
if (rows.length === 0) throw new Error(`no row of docs/control-table.json contains ${values.rows?.map((t) => `"${t}"`).join(' or ')}`);
// the reference's numbers are over the whole held-out set: compare only when scoring all of it
const compare = items.length === heldout.items.length;
const tolerance = 1 / items.length + 1e-9;
const disagree: string[] = [];
for (const row of rows) {
  const sums = Object.fromEntries(METRICS.map((m) => [m, 0])) as Record<(typeof METRICS)[number], number>;
  for (const it of items) {
    const res = await engine.generate(specFor(row, it));
    const png = decodePng(res.outputs[0]!.bytes);
    const s = score(planesFromRgb(png.data as Uint8Array, png.width, png.height), it.scene);
    for (const m of METRICS) sums[m] += s[m];
  }
  const means = Object.fromEntries(METRICS.map((m) => [m, sums[m] / items.length]));
  const diff = Math.max(...METRICS.map((m) => Math.abs((means[m] as number) - (row[m] as number))));
  results.push({ row: row.row, ...means, max_abs_diff_vs_reference: diff });
  const cell = (m: string) => `${(means[m] as number).toFixed(3)} (ref ${(row[m] as number).toFixed(3)})`;
  console.log(`| ${row.row} | ${METRICS.map(cell).join(' | ')} |${compare ? ` max diff ${diff.toFixed(4)}` : ''}`);
  if (compare && diff > tolerance) disagree.push(`${row.row}: max diff ${diff.toFixed(4)} > 1/${items.length}`);
}
await engine.dispose();
console.log(`done in ${((performance.now() - t0) / 60000).toFixed(1)} min`);
if (values.out) writeFileSync(values.out, JSON.stringify({ n: items.length, rows: results }, null, 2));
if (!compare) console.log(`(a subset of ${items.length}: not compared with the reference's means over ${heldout.items.length})`);
else if (disagree.length > 0) {
  console.error(`engine and reference disagree on ${disagree.length} row(s):\n  ${disagree.join('\n  ')}`);
  process.exitCode = 1;
} else console.log(`engine and reference agree on all ${rows.length} rows (every cell within 1/${items.length})`);
