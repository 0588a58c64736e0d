/**
 * The condition registry: one module per optional conditioning type, for exactly the
 * entries of the contract's ModelInfo.conditions (its type asks for one per name), in the
 * order they are encoded. Model packages read their manifest sections and `unet_inputs`
 * sources from here, the catalog their entries, and the pipeline encodes through
 * encodeConditions.
 */
import type { SpecModel } from '../../../shared/contract/index.ts';
import type { Feed, OrtClock } from '../onnx.ts';
import type { Condition, ConditionContext, ConditionModel, ConditionName, FloatFeed } from './condition.ts';
import { grounding } from './grounding.ts';
import { interactions } from './interactions.ts';
import { referenceImage } from './reference-image.ts';
import { scheduledSampling } from './scheduled-sampling.ts';
import { encodeText } from './text.ts';

export type { Condition, ConditionContext, ConditionModel, ConditionName, FloatFeed } from './condition.ts';

// `any`: each module's section was checked by its own schema when the package was read
export const CONDITIONS: { readonly [N in ConditionName]: Condition<N, any> } = {
  grounding,
  interactions,
  reference_image: referenceImage,
  scheduled_sampling: scheduledSampling,
};

/** The conditions in encoding order (a condition that adds tokens sees those added before it). */
export const CONDITION_LIST = Object.values(CONDITIONS);

/** Every `unet_inputs[].source` a manifest may name. */
export const CONDITION_SOURCES = CONDITION_LIST.flatMap((c) => c.sources) as [string, ...string[]];

/** The text encoder outputs a package's conditions read. */
export function textEncoderOutputs(conditions: Readonly<Record<string, unknown>>): string[] {
  return ['last_hidden_state', ...CONDITION_LIST.filter((c) => c.name in conditions).flatMap((c) => c.textEncoderOutputs)];
}

/**
 * Text first, then every optional condition: encoder_hidden_states, the UNet inputs by
 * source, and those that change with the step index.
 */
export async function encodeConditions(
  model: ConditionModel,
  spec: SpecModel,
  field: string,
  referenceImage: Uint8Array | null,
  steps: number,
  clock: OrtClock,
): Promise<{ encoderHiddenStates: FloatFeed; inputs: Map<string, Feed>; stepInputs: Map<string, (step: number) => Feed> }> {
  const ctx: ConditionContext = {
    model,
    spec,
    field,
    referenceImage,
    clock,
    steps,
    encoderHiddenStates: await encodeText(model, spec, clock),
    inputs: new Map(),
    stepInputs: new Map(),
  };
  for (const c of CONDITION_LIST) await c.encode(ctx, model.pkg.conditions[c.name]);
  return ctx;
}
