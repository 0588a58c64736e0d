/**
 * Grounding (the InteractDiffusion / MIGC / GLIGEN role): objects as boxes with phrases.
 * Each phrase goes through the text encoder's pooled output; boxes, phrase embeddings and
 * a mask are laid out for up to max_objects objects, and the unconditional half keeps
 * mask 0, as InteractDiffusion does.
 */
import { z } from 'zod';
import { EngineInputError } from '../types.ts';
import type { Condition } from './condition.ts';

const Section = z
  .object({ max_objects: z.number().int().positive(), phrase_embedding: z.literal('text_encoder.pooler_output'), unconditional: z.literal('mask_zero') })
  .strict();
type Section = z.output<typeof Section>;

export const grounding: Condition<'grounding', Section> = {
  name: 'grounding',
  manifest: Section,
  sources: ['grounding.boxes', 'grounding.phrase_embeds', 'grounding.mask'],
  textEncoderOutputs: ['pooler_output'],

  checkPackage(_section, { extraInputs }) {
    if (this.sources.every((s) => extraInputs.some((e) => e.source === s))) return null;
    return { field: 'unet_inputs', message: 'a grounding model must declare inputs for grounding.boxes, grounding.phrase_embeds and grounding.mask' };
  },

  info: (section) => (section ? { max_objects: section.max_objects } : null),

  async encode(ctx, section) {
    const { model: m, spec: s, field } = ctx;
    const pkg = m.pkg;
    if (s.grounding.length > 0 && !section) throw new EngineInputError(`model "${pkg.id}" takes no grounding boxes`, `${field}.grounding`);
    if (!section) return;
    const K = section.max_objects;
    if (s.grounding.length > K) throw new EngineInputError(`model "${pkg.id}" takes at most ${K} objects`, `${field}.grounding`);
    const L = m.tokenizer.maxLength;
    const D = ctx.encoderHiddenStates.dims[2]!;
    const boxes = new Float32Array(2 * K * 4);
    const phrases = new Float32Array(2 * K * D);
    const mask = new Float32Array(2 * K);
    if (s.grounding.length > 0) {
      const pids = s.grounding.flatMap((g) => m.tokenizer.encode(g.phrase).ids);
      const pooled = (await m.textEncoder.run({ input_ids: { data: pids, dims: [s.grounding.length, L] } }, ctx.clock)).pooler_output!.data;
      s.grounding.forEach((g, j) => {
        for (const half of [0, 1]) {
          boxes.set(g.box, (half * K + j) * 4);
          phrases.set(pooled.subarray(j * D, (j + 1) * D), (half * K + j) * D);
        }
        mask[K + j] = 1; // the unconditional half keeps mask 0
      });
    }
    ctx.inputs.set('grounding.boxes', { data: boxes, dims: [2, K, 4] });
    ctx.inputs.set('grounding.phrase_embeds', { data: phrases, dims: [2, K, D] });
    ctx.inputs.set('grounding.mask', { data: mask, dims: [2, K] });
  },
};
