import { describe, expect, it } from 'vitest';
import type { JobRecord } from '../../shared/client/client.ts';
import { type Output, downloadName, outputRows } from './outputs.ts';

const out = (source: string, model: string | undefined, index = 0, kind: Output['kind'] = 'image'): Output => ({
  source,
  ...(model ? { model } : {}),
  index,
  kind,
  content_type: kind === 'image' ? 'image/png' : 'application/octet-stream',
  url: `http://api.test/${source}-${model}-${index}`,
  expires_at: '2030-01-01T00:00:00Z',
});

/** A three-model job with per_model and solo, its outputs in the order the engine makes them. */
const job = (outputs: Output[]): JobRecord =>
  ({ id: 'job_x', spec: { models: [{ id: 'shapes-base' }, { id: 'shapes-layout' }, { id: 'shapes-style' }] }, outputs }) as unknown as JobRecord;

const threeModels = job([
  out('aggregated', 'shapes-base'),
  out('shapes-layout', 'shapes-layout'),
  out('shapes-style', 'shapes-style'),
  out('solo', 'shapes-base'),
  out('solo', 'shapes-layout'),
  out('solo', 'shapes-style'),
  out('aggregated', 'shapes-base', 0, 'latent'),
]);

const shown = (j: JobRecord) => outputRows(j).map(({ row, outputs }) => [row.title, outputs.map((o) => [row.label(o, j), row.caption(o, j), downloadName(j, o)])]);

describe('the result rows', () => {
  it('put each model alone beside the aggregated image, apart from its latent inside the aggregated run', () => {
    expect(shown(threeModels)).toEqual([
      ['Aggregated', [['Aggregated (base shapes-base)', 'Aggregated (base shapes-base)', 'job_x-aggregated-0.png']]],
      [
        'Each model alone',
        [
          ['shapes-base alone', 'shapes-base alone', 'job_x-solo-shapes-base-0.png'],
          ['shapes-layout alone', 'shapes-layout alone', 'job_x-solo-shapes-layout-0.png'],
          ['shapes-style alone', 'shapes-style alone', 'job_x-solo-shapes-style-0.png'],
        ],
      ],
      [
        'Each model’s own latent inside the aggregated run',
        [
          ['shapes-layout: its own latent inside the aggregated run', 'shapes-layout', 'job_x-shapes-layout-0.png'],
          ['shapes-style: its own latent inside the aggregated run', 'shapes-style', 'job_x-shapes-style-0.png'],
        ],
      ],
    ]);
  });

  it('never call a solo image "solo", nor a model inside the aggregated run "alone"', () => {
    const rows = outputRows(threeModels);
    const labels = rows.flatMap(({ row, outputs }) => outputs.flatMap((o) => [row.label(o, threeModels), row.caption(o, threeModels)]));
    expect(labels.filter((l) => /\bsolo\b/.test(l))).toEqual([]);
    const inside = rows.find((r) => r.row.title.includes('inside'))!;
    expect(inside.outputs.map((o) => inside.row.label(o, threeModels)).filter((l) => /alone/.test(l))).toEqual([]);
  });

  it('order each row by the job’s models, then by image, whatever order the outputs come in', () => {
    const twoImages = job([out('solo', 'shapes-style', 1), out('solo', 'shapes-base', 1), out('aggregated', 'shapes-base', 1), out('solo', 'shapes-style', 0), out('aggregated', 'shapes-base', 0), out('solo', 'shapes-base', 0)]);
    expect(outputRows(twoImages).map(({ outputs }) => outputs.map((o) => `${o.model}:${o.index}`))).toEqual([
      ['shapes-base:0', 'shapes-base:1'],
      ['shapes-base:0', 'shapes-base:1', 'shapes-style:0', 'shapes-style:1'],
    ]);
  });

  it('show a record stored before outputs named their model', () => {
    const old = job([out('aggregated', undefined), out('shapes-layout', undefined)]);
    expect(shown(old)).toEqual([
      ['Aggregated', [['Aggregated (base shapes-base)', 'Aggregated (base shapes-base)', 'job_x-aggregated-0.png']]],
      ['Each model’s own latent inside the aggregated run', [['shapes-layout: its own latent inside the aggregated run', 'shapes-layout', 'job_x-shapes-layout-0.png']]],
    ]);
  });
});
