/**
 * Interactions (the InteractDiffusion role): subject-action-object triplets, each with a
 * subject box and an object box. Every phrase goes through the text encoder's pooled
 * output (each distinct phrase once); boxes, the three phrase embeddings and a mask are laid
 * out for up to max_interactions rows, the same rows in both CFG halves, and the
 * unconditional half keeps mask 0, as InteractDiffusion's pipeline does. Unused rows are
 * zeros. The action's region is not an input: the graph derives it from the two boxes.
 */
import { z } from 'zod';
import { EngineInputError } from '../types.ts';
import type { Condition } from './condition.ts';

const Section = z
  .object({ max_interactions: z.number().int().positive(), phrase_embedding: z.literal('text_encoder.pooler_output'), unconditional: z.literal('mask_zero') })
  .strict();
type Section = z.output<typeof Section>;

const ROLES = ['subject', 'object', 'action'] as const;

export const interactions: Condition<'interactions', Section> = {
  name: 'interactions',
  manifest: Section,
  sources: [
    'interactions.subject_boxes',
    'interactions.object_boxes',
    'interactions.subject_phrase_embeds',
    'interactions.object_phrase_embeds',
    'interactions.action_phrase_embeds',
    'interactions.mask',
  ],
  textEncoderOutputs: ['pooler_output'],

  checkPackage(_section, { extraInputs }) {
    const missing = this.sources.filter((s) => !extraInputs.some((e) => e.source === s));
    if (missing.length === 0) return null;
    return { field: 'unet_inputs', message: `an interactions model must declare inputs for ${this.sources.join(', ')}; missing: ${missing.join(', ')}` };
  },

  info: (section) => (section ? { max_interactions: section.max_interactions } : null),

  async encode(ctx, section) {
    const { model: m, spec: s, field } = ctx;
    const pkg = m.pkg;
    const given = s.interactions ?? [];
    if (given.length > 0 && !section) throw new EngineInputError(`model "${pkg.id}" takes no interactions`, `${field}.interactions`);
    if (!section) return;
    const K = section.max_interactions;
    if (given.length > K) throw new EngineInputError(`model "${pkg.id}" takes at most ${K} interactions`, `${field}.interactions`);
    const D = ctx.encoderHiddenStates.dims[2]!;
    const subjectBoxes = new Float32Array(2 * K * 4);
    const objectBoxes = new Float32Array(2 * K * 4);
    const embeds = { subject: new Float32Array(2 * K * D), object: new Float32Array(2 * K * D), action: new Float32Array(2 * K * D) };
    const mask = new Float32Array(2 * K);
    if (given.length > 0) {
      // a phrase's pooled output does not depend on the other phrases of the batch
      const phrases = [...new Set(given.flatMap((g) => ROLES.map((r) => g[r])))];
      const L = m.tokenizer.maxLength;
      const ids = phrases.flatMap((p) => m.tokenizer.encode(p).ids);
      const pooled = (await m.textEncoder.run({ input_ids: { data: ids, dims: [phrases.length, L] } }, ctx.clock)).pooler_output!.data;
      const row = (p: string) => pooled.subarray(phrases.indexOf(p) * D, (phrases.indexOf(p) + 1) * D);
      given.forEach((g, j) => {
        for (const half of [0, 1]) {
          subjectBoxes.set(g.subject_box, (half * K + j) * 4);
          objectBoxes.set(g.object_box, (half * K + j) * 4);
          for (const r of ROLES) embeds[r].set(row(g[r]), (half * K + j) * D);
        }
        mask[K + j] = 1; // the unconditional half keeps mask 0
      });
    }
    ctx.inputs.set('interactions.subject_boxes', { data: subjectBoxes, dims: [2, K, 4] });
    ctx.inputs.set('interactions.object_boxes', { data: objectBoxes, dims: [2, K, 4] });
    ctx.inputs.set('interactions.subject_phrase_embeds', { data: embeds.subject, dims: [2, K, D] });
    ctx.inputs.set('interactions.object_phrase_embeds', { data: embeds.object, dims: [2, K, D] });
    ctx.inputs.set('interactions.action_phrase_embeds', { data: embeds.action, dims: [2, K, D] });
    ctx.inputs.set('interactions.mask', { data: mask, dims: [2, K] });
  },
};
