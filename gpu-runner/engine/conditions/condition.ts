/**
 * A conditioning input by type. Every model takes the text condition (text.ts); the others
 * are optional, one module each, keyed by one name that is at once the request field
 * (SpecModel), the model's amdm.json section, its ModelInfo.conditions entry and the prefix
 * of the `unet_inputs[].source` values it fills ("grounding.boxes"). A model takes such a
 * condition when its manifest has the section. A new conditioning type is a module
 * implementing this, one line in the registry (index.ts), and its contract fields.
 */
import type { z } from 'zod';
import type { ModelInfo, SpecModel } from '../../../shared/contract/index.ts';
import type { Feed, OnnxModel, OrtClock } from '../onnx.ts';
import type { ClipTokenizer } from '../tokenizer.ts';

/** encoder_hidden_states and the like: float data the modules slice and join */
export interface FloatFeed extends Feed {
  data: Float32Array;
}

/**
 * What the conditions read of a loaded model (LoadedModel has it). Named here rather than
 * imported: the model package reads the registry, and the loaded model the package, so an
 * import of LoadedModel would close a cycle.
 */
export interface ConditionModel {
  readonly pkg: { readonly id: string; readonly conditions: Readonly<Record<string, unknown>> };
  readonly tokenizer: ClipTokenizer;
  readonly textEncoder: OnnxModel;
  readonly imageEncoder: OnnxModel | null;
  readonly imageProj: OnnxModel | null;
}

/** What a condition module reads and writes while one model's conditions are encoded. */
export interface ConditionContext {
  readonly model: ConditionModel;
  readonly spec: SpecModel;
  /** JSON path of this model in the job spec ("models[1]"), for errors */
  readonly field: string;
  /** the reference image's bytes when the spec names it by store key (GenerateOptions.referenceImages) */
  readonly referenceImage: Uint8Array | null;
  readonly clock: OrtClock;
  /** the job's number of sampling steps */
  readonly steps: number;
  /**
   * encoder_hidden_states [2, L, D], the unconditional half first: the text module's output,
   * replaced by a condition that adds tokens to it
   */
  encoderHiddenStates: FloatFeed;
  /** UNet inputs by manifest source; the pipeline feeds each to the unet_inputs entry that names its source */
  readonly inputs: Map<string, Feed>;
  /** UNet inputs that change from step to step, by source: the feed at step index i (0-based) */
  readonly stepInputs: Map<string, (step: number) => Feed>;
}

/** The optional conditions, named by the contract: every ModelInfo.conditions entry but the prompt. */
export type ConditionName = Exclude<keyof ModelInfo['conditions'], 'prompt'>;

export interface Condition<Name extends ConditionName, Section> {
  readonly name: Name;
  /** the amdm.json section that says a model takes this condition */
  readonly manifest: z.ZodType<Section>;
  /** the `unet_inputs[].source` values it fills */
  readonly sources: readonly `${Name}.${string}`[];
  /** text encoder outputs it reads besides last_hidden_state, checked when the sessions are built */
  readonly textEncoderOutputs: readonly string[];
  /** what a manifest with this section must also have: the manifest field at fault and why, or null */
  checkPackage(section: Section, pkg: { extraInputs: readonly { source: string }[]; components: Readonly<Record<string, string | undefined>> }): { field: string; message: string } | null;
  /** its entry in GET /v1/models; section is undefined when the model does not take it (null) */
  info(section: Section | undefined): NonNullable<ModelInfo['conditions'][Name]> | null;
  /** checks the spec's condition against the model, runs its encoders and sets its inputs */
  encode(ctx: ConditionContext, section: Section | undefined): Promise<void>;
}
