/**
 * Token counts of prompts for the installed models, without onnxruntime: the model packages'
 * tokenizers only (model-package.ts reads JSON, tokenizer.ts is pure JS), so a single node's
 * edge can answer "how many tokens is this prompt" on its own event loop, e.g. while someone
 * types in the playground. Tokenizers load on first use and stay.
 */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { isModelPackage, readModelPackage } from './model-package.ts';
import { ClipTokenizer } from './tokenizer.ts';

export interface TokenCount {
  /** the prompt's tokens, before any cut */
  tokens: number;
  /** how many the model reads */
  maxTokens: number;
}

/** `count(modelId, text)`: null for a model that is not installed. */
export function tokenCounter(modelsDirs: readonly string[]): (modelId: string, text: string) => Promise<TokenCount | null> {
  let packages: Promise<Map<string, { tokenizerDir: string; maxLength: number | undefined }>> | null = null;
  const tokenizers = new Map<string, Promise<ClipTokenizer>>();
  const scan = () =>
    (packages ??= (async () => {
      const found = new Map<string, { tokenizerDir: string; maxLength: number | undefined }>();
      for (const root of modelsDirs) {
        for (const e of await readdir(root, { withFileTypes: true })) {
          const dir = join(root, e.name);
          if (!e.isDirectory() || !(await isModelPackage(dir))) continue;
          const pkg = await readModelPackage(dir);
          if (pkg.components.tokenizer) found.set(pkg.id, { tokenizerDir: pkg.components.tokenizer, maxLength: pkg.text.maxLength });
        }
      }
      return found;
    })());
  return async (modelId, text) => {
    const pkg = (await scan()).get(modelId);
    if (!pkg) return null;
    let tok = tokenizers.get(modelId);
    if (!tok) {
      tok = ClipTokenizer.fromDir(pkg.tokenizerDir, pkg.maxLength);
      tok.catch(() => tokenizers.delete(modelId));
      tokenizers.set(modelId, tok);
    }
    const t = await tok;
    return { tokens: t.encode(text).tokenCount, maxTokens: t.maxLength - 2 };
  };
}
