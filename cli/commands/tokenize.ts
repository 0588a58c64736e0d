/** `amdm tokenize (--model ID | --tokenizer DIR) "prompt"`: the ids as a JSON array on stdout. */
import { parseArgs } from 'node:util';
import { ClipTokenizer, readModelPackage } from '../../gpu-runner/engine/index.ts';
import { join } from 'node:path';
import { UsageError, type CliCommand } from '../command.ts';
import { defaultModelsDir } from '../models-dir.ts';

export const command: CliCommand = {
  usage: 'tokenize (--model ID | --tokenizer DIR) "prompt" [--models DIR]   print the token ids as JSON',
  async run(args) {
    const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { model: { type: 'string' }, tokenizer: { type: 'string' }, models: { type: 'string' } } });
    if ((values.model === undefined) === (values.tokenizer === undefined)) throw new UsageError('give exactly one of --model ID or --tokenizer DIR');
    if (positionals.length !== 1) throw new UsageError('give the prompt as one argument (quote it)');
    let tok: ClipTokenizer;
    if (values.tokenizer !== undefined) {
      tok = await ClipTokenizer.fromDir(values.tokenizer);
    } else {
      const pkg = await readModelPackage(join(values.models ?? defaultModelsDir(), values.model!)).catch((err: Error) => {
        throw new UsageError(`model "${values.model}": ${err.message}`);
      });
      tok = await ClipTokenizer.fromDir(pkg.components.tokenizer!, pkg.text.maxLength);
    }
    const e = tok.encode(positionals[0]!);
    if (e.truncated) process.stderr.write(`warning: the prompt has ${e.tokenCount} tokens; only the first ${tok.maxLength - 2} fit, the rest were dropped\n`);
    process.stdout.write(`${JSON.stringify(e.ids)}\n`);
    return 0;
  },
};
