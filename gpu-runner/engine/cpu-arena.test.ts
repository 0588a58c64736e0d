/**
 * onnxruntime's CPU memory arena off (ORT_CPU_MEM_ARENA=0, `amdm generate --no-arena`): a
 * lower memory peak for full-size models, and the same images bit for bit, since only where
 * activations live changes. The runner's setting is validated like its other variables.
 */
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JobRequest, shapeJobRequest, type JobSpec } from '../../shared/contract/index.ts';
import { runnerConfigFromEnv } from '../main.ts';
import { createEngine, type AmdmEngine } from './index.ts';

const MODELS = fileURLToPath(new URL('../../models/', import.meta.url));

describe('CPU memory arena off', () => {
  let withArena: AmdmEngine;
  let without: AmdmEngine;
  beforeAll(async () => {
    withArena = await createEngine({ modelsDirs: [MODELS], intraOpNumThreads: 1 });
    without = await createEngine({ modelsDirs: [MODELS], intraOpNumThreads: 1, cpuMemArena: false });
  });
  afterAll(async () => {
    await withArena?.dispose();
    await without?.dispose();
  });

  it('makes the same PNG bytes as with the arena', async () => {
    const body = {
      models: [
        { id: 'shapes-base', role: 'base', prompt: 'a red circle and a blue square' },
        { id: 'shapes-layout', role: 'auxiliary', prompt: 'a circle', grounding: [{ phrase: 'circle', box: [0.1, 0.1, 0.5, 0.5] }] },
      ],
      aggregation: { window: [1, 3] },
      sampler: { steps: 6, seed: 5 },
    };
    const shaped = shapeJobRequest(JobRequest.parse(body), await withArena.catalog(), { randomSeed: () => 5 });
    if (!shaped.ok) throw new Error(JSON.stringify(shaped.errors));
    const spec: JobSpec = shaped.spec;
    const a = await withArena.generate(spec);
    const b = await without.generate(spec);
    expect(b.unetEvals).toBe(a.unetEvals);
    expect(Buffer.from(b.outputs[0]!.bytes).equals(Buffer.from(a.outputs[0]!.bytes))).toBe(true);
  });
});

describe('ORT_CPU_MEM_ARENA', () => {
  it('0 turns the arena off, 1 or unset leaves it on, anything else is refused naming the variable', () => {
    expect(runnerConfigFromEnv({ ORT_CPU_MEM_ARENA: '0' }).cpuMemArena).toBe(false);
    expect(runnerConfigFromEnv({ ORT_CPU_MEM_ARENA: '1' }).cpuMemArena).toBeUndefined();
    expect(runnerConfigFromEnv({}).cpuMemArena).toBeUndefined();
    expect(() => runnerConfigFromEnv({ ORT_CPU_MEM_ARENA: 'off' })).toThrow(/ORT_CPU_MEM_ARENA must be 0 or 1 \(got "off"\)/);
  });
});
