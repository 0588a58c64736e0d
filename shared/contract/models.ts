/**
 * What the platform knows about an installed model without loading its ONNX files: the
 * public face of a model package (GET /v1/models) and the facts request shaping needs.
 * The engine derives a ModelInfo from a package folder (manifest + configs); the edge gets
 * a list of them from its composition root (read from disk locally, bundled on Lambda).
 */
import { z } from 'zod';
import { LIMITS } from './job-request.ts';
import { SCHEDULER_NAMES } from './schedulers.ts';

export const ModelInfo = z
  .object({
    id: z.string(),
    description: z.string().default(''),
    /** models can be aggregated only within one ecosystem (latent space, VAE, schedule) */
    ecosystem: z.string(),
    latent: z.object({
      channels: z.number().int().positive(),
      /** pixels per latent cell (8 for SD1.5, 4 for the shapes family) */
      vae_scale_factor: z.number().int().positive(),
    }),
    sizes: z.object({
      default: z.tuple([z.number().int(), z.number().int()]),
      min: z.number().int().positive(),
      max: z.number().int().positive(),
      /** width and height are rounded to a multiple of this */
      multiple: z.number().int().positive(),
      /**
       * the sides (pixels) the model was trained at; outside them it still renders, with
       * repeated or broken objects, and jobs get a `size_untrained` warning
       */
      trained: z.object({ min: z.number().int().positive(), max: z.number().int().positive() }).optional(),
    }),
    conditions: z.object({
      prompt: z.object({ max_tokens: z.number().int().positive() }),
      grounding: z.object({ max_objects: z.number().int().positive() }).nullable().default(null),
      /** subject-action-object triplets with boxes (InteractDiffusion); absent in catalogs written before it existed */
      interactions: z.object({ max_interactions: z.number().int().positive() }).nullable().optional(),
      reference_image: z.object({ width: z.number().int(), height: z.number().int() }).nullable().default(null),
      /**
       * the model's grounding layers run for the first floor(beta × steps) steps (its default
       * beta; a request may give its own, models[].scheduled_sampling.beta); absent or null
       * for a model without grounding layers
       */
      scheduled_sampling: z.object({ beta: z.number().min(0).max(1) }).nullable().optional(),
    }),
    schedulers: z.array(z.enum(SCHEDULER_NAMES)).default([...SCHEDULER_NAMES]),
  })
  .meta({ id: 'ModelInfo' });

export type ModelInfo = z.output<typeof ModelInfo>;

export const ModelList = z.object({ object: z.literal('list'), data: z.array(ModelInfo) }).meta({ id: 'ModelList' });
export type ModelList = z.output<typeof ModelList>;

/** POST /v1/models/{id}/tokens: count a prompt's tokens the way the model will. */
export const TokenCountBody = z
  .object({ text: z.string().max(LIMITS.maxPromptChars) })
  .strict()
  .meta({ id: 'TokenCountBody' });
export type TokenCountBody = z.output<typeof TokenCountBody>;

export const TokenCount = z
  .object({
    object: z.literal('token_count'),
    model: z.string(),
    /** the text's tokens, before any cut */
    tokens: z.number().int(),
    /** how many the model reads; a longer prompt is cut there (the job gets a prompt_truncated warning) */
    max_tokens: z.number().int(),
    truncated: z.boolean(),
  })
  .meta({ id: 'TokenCount' });
export type TokenCount = z.output<typeof TokenCount>;
