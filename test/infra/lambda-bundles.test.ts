/**
 * The two Lambda handlers bundle the way `sst deploy` bundles them (esbuild, ESM, Node 22):
 * the handler file exists, the export the stack names is there, and nothing in the import graph
 * needs what a Lambda does not have: native addons (better-sqlite3, onnxruntime-node), the
 * model packages, or the sst package's index (which patches console on ECS); the links are
 * read through sst/resource only.
 */
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { describe, expect, it } from 'vitest';
import { EDGE_HANDLER } from '../../infra/edge.ts';
import { WEBHOOK_HANDLER } from '../../infra/webhooks.ts';

const root = fileURLToPath(new URL('../../', import.meta.url));

async function bundle(handler: string) {
  const [file, exported] = handler.split('.') as [string, string];
  const result = await build({
    entryPoints: [`${root}${file}.ts`],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node22',
    write: false,
    metafile: true,
    logLevel: 'silent',
    // the runtime provides the AWS SDK; everything else must be in the bundle
    external: ['@aws-sdk/*'],
  });
  return { exported, inputs: Object.keys(result.metafile.outputs).flatMap((o) => Object.keys(result.metafile.outputs[o]!.inputs)), exports: Object.values(result.metafile.outputs).flatMap((o) => o.exports) };
}

describe.each([
  ['edge', EDGE_HANDLER],
  ['webhooks', WEBHOOK_HANDLER],
])('the %s Lambda bundle', (_name, handler) => {
  it(`bundles ${handler} with the named export and no native or engine code`, async () => {
    const { exported, inputs, exports } = await bundle(handler);
    expect(exports).toContain(exported);
    const forbidden = inputs.filter((f) => /node_modules\/(better-sqlite3|onnxruntime-node|@huggingface)\//.test(f) || /gpu-runner\/engine\//.test(f) || /gpu-runner\/sampler-thread/.test(f));
    expect(forbidden).toEqual([]);
    expect(inputs.some((f) => /node_modules\/sst\/dist\/resource\//.test(f))).toBe(true);
    expect(inputs.filter((f) => /node_modules\/sst\/dist\/index\.js$/.test(f))).toEqual([]);
  });
});
