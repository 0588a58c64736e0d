/**
 * What bench:edge sends: the shapes family's catalog as the edge sees it (so no engine is
 * needed) and a seeded mix of valid job bodies. Tests that drive the edge reuse them.
 */
import type { JobRequestInput, ModelInfo } from '../shared/contract/index.ts';

/** The shapes family as the catalog describes it; the bench needs no engine. */
export const CATALOG: ModelInfo[] = ['shapes-base', 'shapes-layout', 'shapes-style'].map((id) => ({
  id,
  description: '',
  ecosystem: 'shapes-v1',
  latent: { channels: 4, vae_scale_factor: 4 },
  sizes: { default: [64, 64], min: 32, max: 128, multiple: 16 },
  conditions: {
    prompt: { max_tokens: 32 },
    grounding: id === 'shapes-layout' ? { max_objects: 4 } : null,
    reference_image: id === 'shapes-style' ? { width: 32, height: 32 } : null,
  },
  schedulers: ['ddim', 'euler'],
}));

/** A real 4x4 RGB PNG (67 bytes): the style model's inline reference image. */
const TINY_PNG = 'iVBORw0KGgoAAAANSUhEUgAAAAQAAAAECAIAAAAmkwkpAAAAEElEQVR4nGM4kWIERwzEcQBCchXhIRsTawAAAABJRU5ErkJggg==';
const SUBJECTS = ['a red circle', 'two blue squares', 'a green triangle on a grid', 'an orange ring', 'three small dots', 'a purple star'];
const STYLES = ['flat colours', 'soft shadows', 'thick outlines', 'pastel', 'high contrast'];

/** mulberry32: a small seeded generator, so every run sends the same sequence of bodies. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * The n-th request body: distinct (the prompt carries n), always valid for the catalog.
 * About 55% one model, 30% base + layout with grounding, 10% base + layout + style with an
 * inline image, and on top 10% carry a webhook.
 */
export function jobBody(n: number): JobRequestInput {
  const r = seeded(n * 2654435761);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const prompt = `${pick(SUBJECTS)}, ${pick(STYLES)}, #${n}`;
  const kind = r();
  const steps = 4 + Math.floor(r() * 40);
  const size = pick([32, 48, 64, 96, 128]);
  const box = (): [number, number, number, number] => {
    const x0 = Math.round(r() * 50) / 100;
    const y0 = Math.round(r() * 50) / 100;
    return [x0, y0, x0 + 0.25 + Math.round(r() * 20) / 100, y0 + 0.25 + Math.round(r() * 20) / 100];
  };
  const body: JobRequestInput =
    kind < 0.6
      ? {
          models: [{ id: 'shapes-base', role: 'base', prompt, ...(r() < 0.3 ? { negative_prompt: 'blurry' } : {}), guidance_scale: 3 + Math.round(r() * 80) / 10 }],
          sampler: { steps, seed: n, width: size, height: size, scheduler: r() < 0.5 ? 'ddim' : 'euler' },
          outputs: { images: 1 + Math.floor(r() * 4) },
        }
      : kind < 0.9
        ? {
            models: [
              { id: 'shapes-base', role: 'base', prompt },
              { id: 'shapes-layout', role: 'auxiliary', prompt: pick(SUBJECTS), grounding: Array.from({ length: 1 + Math.floor(r() * 3) }, () => ({ phrase: pick(SUBJECTS), box: box() })) },
            ],
            aggregation: { omega: Math.round(r() * 100) / 100 },
            sampler: { steps, seed: n, width: size, height: size },
          }
        : {
            models: [
              { id: 'shapes-base', role: 'base', prompt },
              { id: 'shapes-layout', role: 'auxiliary', prompt: pick(SUBJECTS), grounding: [{ phrase: pick(SUBJECTS), box: box() }] },
              { id: 'shapes-style', role: 'auxiliary', prompt: pick(STYLES), reference_image: { data: TINY_PNG, scale: 0.6 } },
            ],
            sampler: { steps, seed: n },
            outputs: { per_model: r() < 0.5 },
          };
  if (r() < 0.1) body.webhook = { url: `https://hooks.example.com/amdm/${n}` };
  return body;
}
