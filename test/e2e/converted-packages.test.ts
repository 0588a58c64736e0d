/**
 * The converter's packages behind the whole stack, once per adapter set: AMDM_MODELS_DIR at
 * test/fixtures/packages (tiny random-weight packages written by tools/convert/make_tiny.py;
 * on 'aws' uploaded to the bucket and synced into the runner's cache as a deploy does, the
 * shared components found through their relative paths). A three-model AMDM job (SD1.x base,
 * InteractDiffusion with an interaction, IP-Adapter with an inline reference image, torch
 * noise) goes through POST /v1/jobs and finishes; a bad triplet, more than 30 interactions and an
 * IP scale out of range are refused naming their fields.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { decode } from 'fast-png';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JobRecord, ModelInfo } from '../../shared/contract/index.ts';
import { ADAPTER_SETS, startStack, until, type AdapterSet, type Stack } from './harness.ts';

const PACKAGES = fileURLToPath(new URL('../fixtures/packages/', import.meta.url));
const REFERENCE = readFileSync(new URL('../fixtures/clip-preprocess/downscale-448x336-rgba.png', import.meta.url)).toString('base64');

const body = () => ({
  models: [
    { id: 'tiny-sd15', role: 'base', prompt: 'a person riding a horse on a beach' },
    {
      id: 'tiny-interactdiffusion',
      role: 'auxiliary',
      prompt: 'a person riding a horse',
      interactions: [{ subject: 'a person', subject_box: [0.35, 0.1, 0.65, 0.55], action: 'riding', object: 'a horse', object_box: [0.15, 0.3, 0.85, 0.95] }],
      scheduled_sampling: { beta: 0.4 },
    },
    { id: 'tiny-ip-adapter', role: 'auxiliary', prompt: 'a person riding a horse', reference_image: { data: REFERENCE, scale: 0.6 } },
  ],
  aggregation: { omega: 0.47, omega2: 0.5, window: [1, 3] },
  sampler: { steps: 8, seed: 7, noise: 'torch' },
});

describe.each(ADAPTER_SETS.map((set) => [set] as [AdapterSet]))('converted packages end to end on the %s adapters', (adapterSet) => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ adapters: adapterSet, modelsDir: PACKAGES });
  }, 180_000);
  afterAll(async () => {
    await stack?.close();
  });

  it('GET /v1/models shows what each converted model takes', async () => {
    const models = ((await (await stack.api('/v1/models')).json()) as { data: ModelInfo[] }).data;
    const conditions = Object.fromEntries(models.map((m) => [m.id, m.conditions]));
    expect(models.every((m) => m.ecosystem === 'sd15')).toBe(true);
    expect(conditions['tiny-interactdiffusion']).toMatchObject({ interactions: { max_interactions: 30 }, scheduled_sampling: { beta: 1 } });
    expect(conditions['tiny-gligen']).toMatchObject({ grounding: { max_objects: 30 }, scheduled_sampling: { beta: 0.3 } });
    expect(conditions['tiny-ip-adapter']).toMatchObject({ reference_image: { width: 32, height: 32 } });
  });

  it('a three-model AMDM job goes through the API and finishes', async () => {
    const res = await stack.api('/v1/jobs', { body: body() });
    expect(res.status).toBe(202);
    const accepted = (await res.json()) as JobRecord;
    const done = await until(async () => {
      const r = (await (await stack.api(`/v1/jobs/${accepted.id}`)).json()) as JobRecord;
      return ['succeeded', 'failed', 'canceled'].includes(r.status) ? r : null;
    }, 'the job to finish', 120_000, 50);
    expect(done.status, JSON.stringify(done.error)).toBe('succeeded');
    expect(done.spec.sampler).toMatchObject({ noise: 'torch', width: 64, height: 64 });
    expect(done.spec.models.map((m) => [m.id, m.scheduled_sampling ?? null, m.interactions?.length ?? null])).toEqual([
      ['tiny-sd15', null, null],
      ['tiny-interactdiffusion', { beta: 0.4 }, 1],
      ['tiny-ip-adapter', null, null],
    ]);
    expect(done.usage).toMatchObject({ unet_evals: done.spec.estimate.unet_evals });
    const out = done.outputs.find((o) => o.source === 'aggregated' && o.kind === 'image')!;
    const png = decode(new Uint8Array(await (await fetch(out.url)).arrayBuffer()));
    expect([png.width, png.height]).toEqual([64, 64]);
  });

  it('a triplet without its object box is refused, naming the field', async () => {
    const b = body();
    delete (b.models[1]!.interactions![0] as Record<string, unknown>).object_box;
    const res = await stack.api('/v1/jobs', { body: b });
    expect(res.status).toBe(422);
    expect(res.headers.get('content-type')).toBe('application/problem+json');
    const problem = (await res.json()) as { errors: { field: string }[] };
    expect(problem.errors.map((e) => e.field)).toContain('models[1].interactions[0].object_box');
  });

  it('more than 30 interactions and an IP scale out of range are refused, naming the fields and the limits', async () => {
    const b = body();
    b.models[1]!.interactions = Array.from({ length: 31 }, () => b.models[1]!.interactions![0]!);
    b.models[2]!.reference_image!.scale = 2.5;
    const res = await stack.api('/v1/jobs', { body: b });
    expect(res.status).toBe(422);
    expect(res.headers.get('content-type')).toBe('application/problem+json');
    const problem = (await res.json()) as { errors: { field: string; message: string }[] };
    expect(problem.errors).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ field: 'models[1].interactions', message: expect.stringMatching(/at most 30/) }),
        expect.objectContaining({ field: 'models[2].reference_image.scale', message: expect.stringMatching(/<=2/) }),
      ]),
    );
  });
});
