/**
 * A reference image (the IP-Adapter role): the image through the image encoder and the
 * projection to a few tokens appended to the text tokens of encoder_hidden_states; the
 * unconditional half gets the projection of a zero embedding, as IP-Adapter does, and the
 * request's scale weights the image tokens.
 *
 * The image reaches the encoder as the manifest's `preprocess` says: CLIP's (resize the
 * shorter side, bicubic, center crop, rescale, mean/std; clip-preprocess.ts), which the
 * published image encoders were trained on; without it, as the shapes family's encoder
 * was trained: resized to width × height and mapped to [-1, 1].
 */
import { z } from 'zod';
import { clipPreprocess } from '../clip-preprocess.ts';
import { decodeImage, resizeRgb, rgbToModel } from '../image.ts';
import { EngineInputError } from '../types.ts';
import type { Condition } from './condition.ts';

const Section = z
  .object({
    width: z.number().int().positive(),
    height: z.number().int().positive(),
    tokens: z.number().int().positive(),
    append_to: z.literal('encoder_hidden_states'),
    unconditional: z.literal('zero_embedding'),
    preprocess: z
      .object({
        resize: z.literal('shortest_edge'),
        interpolation: z.literal('bicubic'),
        crop: z.literal('center'),
        rescale: z.number().positive(),
        mean: z.tuple([z.number(), z.number(), z.number()]),
        std: z.tuple([z.number().positive(), z.number().positive(), z.number().positive()]),
      })
      .strict()
      .optional(),
  })
  .strict();
type Section = z.output<typeof Section>;

export const referenceImage: Condition<'reference_image', Section> = {
  name: 'reference_image',
  manifest: Section,
  sources: ['reference_image.scale'],
  textEncoderOutputs: [],

  checkPackage(_section, { components }) {
    if (components.image_encoder && components.image_proj) return null;
    return { field: 'components', message: 'a reference-image model needs image_encoder and image_proj components' };
  },

  info: (section) => (section ? { width: section.width, height: section.height } : null),

  async encode(ctx, section) {
    const { model: m, spec: s, field } = ctx;
    const pkg = m.pkg;
    if (s.reference_image && !section) throw new EngineInputError(`model "${pkg.id}" takes no reference image`, `${field}.reference_image`);
    if (!section) return;
    const ref = s.reference_image;
    if (!ref) throw new EngineInputError(`model "${pkg.id}" needs a reference image`, `${field}.reference_image`);
    const bytes = ctx.referenceImage ?? (ref.data !== undefined ? base64Bytes(ref.data) : null);
    if (!bytes) throw new EngineInputError(`the reference image of model "${pkg.id}" was not provided`, `${field}.reference_image`);
    const pre = section.preprocess;
    const pixels = pre
      ? clipPreprocess(decodeImage(bytes, `${field}.reference_image`, { alpha: 'drop' }), { width: section.width, height: section.height, rescale: pre.rescale, mean: pre.mean, std: pre.std })
      : rgbToModel(resizeRgb(decodeImage(bytes, `${field}.reference_image`), section.width, section.height));
    const emb = (await m.imageEncoder!.run({ pixel_values: { data: pixels, dims: [1, 3, section.height, section.width] } }, ctx.clock)).image_embeds!;
    const E = emb.dims[1]!;
    // the unconditional half is the projection of a zero embedding
    const both = new Float32Array(2 * E);
    both.set(emb.data, E);
    const tok = (await m.imageProj!.run({ image_embeds: { data: both, dims: [2, E] } }, ctx.clock)).image_prompt_embeds!;
    const T = tok.dims[1]!;
    const hidden = ctx.encoderHiddenStates;
    const L = hidden.dims[1]!;
    const D = hidden.dims[2]!;
    const joined = new Float32Array(2 * (L + T) * D);
    for (const half of [0, 1]) {
      joined.set(hidden.data.subarray(half * L * D, (half + 1) * L * D), half * (L + T) * D);
      joined.set(tok.data.subarray(half * T * D, (half + 1) * T * D), half * (L + T) * D + L * D);
    }
    ctx.encoderHiddenStates = { data: joined, dims: [2, L + T, D] };
    ctx.inputs.set('reference_image.scale', { data: [ref.scale], dims: [1] });
  },
};

function base64Bytes(b64: string): Uint8Array {
  return new Uint8Array(Buffer.from(b64, 'base64'));
}
