/**
 * The text condition every model takes: the negative prompt and the prompt through the
 * tokenizer and the text encoder, stacked as encoder_hidden_states [2, L, D] with the
 * unconditional half first, so guidance runs both halves in one batched UNet call.
 */
import type { SpecModel } from '../../../shared/contract/index.ts';
import type { OrtClock } from '../onnx.ts';
import type { ConditionModel, FloatFeed } from './condition.ts';

export async function encodeText(m: ConditionModel, s: SpecModel, clock: OrtClock): Promise<FloatFeed> {
  const ids = [...m.tokenizer.encode(s.negative_prompt).ids, ...m.tokenizer.encode(s.prompt).ids];
  const L = m.tokenizer.maxLength;
  const text = await m.textEncoder.run({ input_ids: { data: ids, dims: [2, L] } }, clock);
  const hidden = text.last_hidden_state!;
  return { data: hidden.data, dims: [2, L, hidden.dims[2]!] };
}
