/**
 * Scheduled sampling (GLIGEN, InteractDiffusion): the grounding layers run for the first
 * floor(beta × S) of the S sampling steps and are off after, as diffusers' pipelines do
 * (`num_grounding_steps = int(beta * len(timesteps))`; on at step index i iff i < that).
 * The package's UNet takes a `fuser_gate` of [1] while on and [0] after (the same value for
 * both CFG halves): gate 0 makes every fuser exactly the identity, so one graph serves both
 * phases. beta is the job's (models[].scheduled_sampling.beta, which shaping fills from the
 * manifest's default); with AMDM the step index is the job's, the same for every model.
 */
import { z } from 'zod';
import { EngineInputError } from '../types.ts';
import type { Condition } from './condition.ts';

const Section = z.object({ beta: z.number().min(0).max(1) }).strict();
type Section = z.output<typeof Section>;

/** How many of `steps` steps the grounding layers run: Python's int(beta * steps). */
export function groundingSteps(beta: number, steps: number): number {
  return Math.trunc(beta * steps);
}

const ON = { data: [1], dims: [1] };
const OFF = { data: [0], dims: [1] };

export const scheduledSampling: Condition<'scheduled_sampling', Section> = {
  name: 'scheduled_sampling',
  manifest: Section,
  sources: ['scheduled_sampling.gate'],
  textEncoderOutputs: [],

  checkPackage(_section, { extraInputs }) {
    if (extraInputs.some((e) => e.source === 'scheduled_sampling.gate')) return null;
    // without the gate the beta would be ignored and the fusers run at every step
    return { field: 'unet_inputs', message: 'a model with scheduled_sampling must declare a UNet input with source scheduled_sampling.gate' };
  },

  info: (section) => (section ? { beta: section.beta } : null),

  async encode(ctx, section) {
    const { model: m, spec: s, field } = ctx;
    if (s.scheduled_sampling && !section) throw new EngineInputError(`model "${m.pkg.id}" has no scheduled sampling`, `${field}.scheduled_sampling`);
    if (!section) return;
    const on = groundingSteps(s.scheduled_sampling?.beta ?? section.beta, ctx.steps);
    ctx.stepInputs.set('scheduled_sampling.gate', (i) => (i < on ? ON : OFF));
  },
};
