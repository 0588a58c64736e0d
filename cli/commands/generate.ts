/**
 * `amdm generate REQUEST.json --out OUT.png`: one local generation with the engine, no
 * server. REQUEST.json is exactly the job body of POST /v1/jobs; it is shaped by the same
 * function the edge uses, so a local run and an API run of one request agree byte for byte.
 */
import { writeFile } from 'node:fs/promises';
import { randomInt } from 'node:crypto';
import { parseArgs } from 'node:util';
import cliProgress from 'cli-progress';
import { shapeJobRequest } from '../../shared/contract/index.ts';
import { createEngine, EngineInputError } from '../../gpu-runner/engine/index.ts';
import { describeWarning } from '../api-client.ts';
import { UsageError, type CliCommand } from '../command.ts';
import { defaultModelsDir } from '../models-dir.ts';
import { readRequestFile } from '../request-file.ts';

export const command: CliCommand = {
  usage: 'generate REQUEST.json --out OUT.png [--models DIR] [--threads N] [--no-arena] [--quiet]   run one job locally (no server)',
  async run(args) {
    const { values, positionals } = parseArgs({
      args,
      allowPositionals: true,
      options: { out: { type: 'string', short: 'o' }, models: { type: 'string' }, threads: { type: 'string' }, 'no-arena': { type: 'boolean' }, quiet: { type: 'boolean', short: 'q' } },
    });
    if (positionals.length !== 1) throw new UsageError('give exactly one REQUEST.json');
    if (!values.out) throw new UsageError('--out OUT.png is required');
    if (!values.out.endsWith('.png')) throw new UsageError(`--out must name a .png file (got "${values.out}")`);
    const threads = values.threads === undefined ? undefined : Number(values.threads);
    if (threads !== undefined && !(Number.isInteger(threads) && threads > 0)) throw new UsageError(`--threads must be a positive integer (got "${values.threads}")`);
    const file = positionals[0]!;
    const request = await readRequestFile(file);

    const engine = await createEngine({ modelsDirs: [values.models ?? defaultModelsDir()], intraOpNumThreads: threads, ...(values['no-arena'] ? { cpuMemArena: false } : {}), log: (m) => process.stderr.write(`${m}\n`) });
    try {
      const shaped = shapeJobRequest(request, await engine.catalog(), { randomSeed: () => randomInt(0, 2 ** 32) });
      if (!shaped.ok) {
        const e = shaped.errors[0]!;
        throw new UsageError(`${file}: ${e.field}: ${e.message}${shaped.errors.length > 1 ? ` (and ${shaped.errors.length - 1} more)` : ''}`);
      }
      const spec = shaped.spec;
      const warn = (w: Parameters<typeof describeWarning>[0]) => {
        // above the bar, which redraws its own line
        process.stderr.write(`${process.stderr.isTTY ? '\r\x1b[K' : ''}${describeWarning(w)}\n`);
      };
      for (const w of spec.warnings ?? []) warn(w);
      const bar = values.quiet
        ? null
        : new cliProgress.SingleBar(
            { format: 'image {image}/{images} [{bar}] step {value}/{total} {phase}', stream: process.stderr, hideCursor: true, clearOnComplete: false },
            cliProgress.Presets.shades_classic,
          );
      bar?.start(spec.sampler.steps, 0, { image: 1, images: spec.outputs.images, phase: 'starting' });
      let result;
      try {
        result = await engine.generate(spec, {
          onProgress: (p) => bar?.update(p.step, { image: p.image, images: p.images, phase: p.phase === 'solo' ? `${p.model} alone` : p.phase.replace('_', ' ') }),
          onWarning: warn,
        });
      } catch (err) {
        if (err instanceof EngineInputError) throw new UsageError(`${file}: ${err.field ?? 'request'}: ${err.message}`);
        throw err;
      } finally {
        bar?.stop();
      }
      const written: string[] = [];
      for (const o of result.outputs) {
        // OUT.png, OUT.shapes-layout.png (its trajectory in the aggregated run), OUT.solo-shapes-layout.png (alone)
        const suffix = (o.source === 'aggregated' ? '' : o.source === 'solo' ? `.solo-${o.model}` : `.${o.source}`) + (o.index > 0 ? `-${o.index}` : '');
        const path = o.kind === 'image' ? values.out.replace(/\.png$/, `${suffix}.png`) : values.out.replace(/\.png$/, `${suffix}.latent.f32`);
        await writeFile(path, o.bytes);
        written.push(path);
      }
      const t = result.timings;
      process.stderr.write(
        `wrote ${written.join(', ')}; seed ${spec.sampler.seed}, ${result.unetEvals} UNet evaluations, ` +
          `${t.totalMs.toFixed(0)} ms sampling (${t.onnxMs.toFixed(0)} in onnxruntime, ${t.outsideOnnxMs.toFixed(0)} outside${t.unetMs !== undefined ? `; ${t.unetMs.toFixed(0)} in the UNet` : ''}) after ${t.loadMs.toFixed(0)} ms loading models\n`,
      );
      return 0;
    } finally {
      await engine.dispose();
    }
  },
};
