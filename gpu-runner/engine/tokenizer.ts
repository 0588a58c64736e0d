/**
 * The CLIP tokenizer, on @huggingface/tokenizers (pure JS, loads from local objects, never
 * a hub). A folder with tokenizer.json is used as is; a CLIP-format folder (vocab.json +
 * merges.txt, as SD1.5 ships and optimum exports) is turned into the equivalent
 * tokenizer.json in memory: NFC, whitespace cleanup and lower-casing, CLIP's
 * pre-tokenization regex, byte-level BPE with the `</w>` end-of-word suffix. This module
 * adds BOS/EOS, truncates to the model's max length and pads with EOS, as the SD pipelines do.
 */
import { readFile, access } from 'node:fs/promises';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';

const BOS = '<|startoftext|>';
const EOS = '<|endoftext|>';
const CLIP_SPLIT = "<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+";

export interface Encoded {
  ids: number[];
  /** true when the prompt had more tokens than fit between BOS and EOS */
  truncated: boolean;
  /** tokens the prompt produced, before truncation (without BOS/EOS) */
  tokenCount: number;
}

export class ClipTokenizer {
  private constructor(
    private readonly tok: Tokenizer,
    readonly bosId: number,
    readonly eosId: number,
    readonly maxLength: number,
  ) {}

  /** maxLength: the text encoder's sequence length (max_position_embeddings) if known. */
  static async fromDir(dir: string, maxLength?: number): Promise<ClipTokenizer> {
    const read = async (name: string): Promise<string | null> => {
      try {
        await access(join(dir, name));
      } catch {
        return null;
      }
      return readFile(join(dir, name), 'utf8');
    };
    const configText = await read('tokenizer_config.json');
    const config = configText ? (JSON.parse(configText) as Record<string, unknown>) : {};
    const tokenizerJsonText = await read('tokenizer.json');
    let json: Record<string, unknown>;
    let vocab: Record<string, number>;
    if (tokenizerJsonText) {
      json = JSON.parse(tokenizerJsonText) as Record<string, unknown>;
      vocab = (json.model as { vocab: Record<string, number> }).vocab;
    } else {
      const vocabText = await read('vocab.json');
      const mergesText = await read('merges.txt');
      if (!vocabText) throw new Error(`${join(dir, 'vocab.json')}: missing (a CLIP tokenizer needs vocab.json and merges.txt, or tokenizer.json)`);
      if (mergesText === null) throw new Error(`${join(dir, 'merges.txt')}: missing (a CLIP tokenizer needs vocab.json and merges.txt, or tokenizer.json)`);
      vocab = JSON.parse(vocabText) as Record<string, number>;
      const merges = mergesText.split('\n').filter((l, i) => l.length > 0 && !(i === 0 && l.startsWith('#version')));
      json = clipTokenizerJson(vocab, merges);
    }
    const bosId = vocab[BOS];
    const eosId = vocab[EOS];
    if (bosId === undefined || eosId === undefined) throw new Error(`${dir}: the vocabulary lacks ${BOS} or ${EOS}`);
    const configured = typeof config.model_max_length === 'number' && config.model_max_length < 1e6 ? config.model_max_length : undefined;
    const max = Math.min(maxLength ?? configured ?? 77, configured ?? Infinity);
    return new ClipTokenizer(new Tokenizer(json, config), bosId, eosId, max);
  }

  encode(text: string): Encoded {
    const body = this.tok.encode(text, { add_special_tokens: false }).ids;
    const room = this.maxLength - 2;
    const kept = body.slice(0, room);
    const ids = [this.bosId, ...kept, this.eosId];
    while (ids.length < this.maxLength) ids.push(this.eosId);
    return { ids, truncated: body.length > room, tokenCount: body.length };
  }
}

/** The tokenizer.json that HF's CLIPTokenizerFast uses, from CLIP-format vocab and merges. */
function clipTokenizerJson(vocab: Record<string, number>, merges: string[]): Record<string, unknown> {
  const special = (content: string) => ({ id: vocab[content], content, single_word: false, lstrip: false, rstrip: false, normalized: true, special: true });
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [special(BOS), special(EOS)],
    normalizer: {
      type: 'Sequence',
      normalizers: [{ type: 'NFC' }, { type: 'Replace', pattern: { Regex: '\\s+' }, content: ' ' }, { type: 'Lowercase' }],
    },
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [
        { type: 'Split', pattern: { Regex: CLIP_SPLIT }, behavior: 'Removed', invert: true },
        { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false },
      ],
    },
    post_processor: null,
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: EOS,
      continuing_subword_prefix: '',
      end_of_word_suffix: '</w>',
      fuse_unk: false,
      byte_fallback: false,
      vocab,
      merges,
    },
  };
}
