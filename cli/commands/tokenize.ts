/**
 * `amdm tokenize (--model ID | --tokenizer DIR) "prompt"`: the ids as a JSON array on stdout,
 * and on stderr how many tokens the prompt has of how many the model reads (with --count,
 * only that, as "N/MAX" on stdout: cheap to call on every keystroke).
 */
import { parseArgs } from 'node:util';
import { ClipTokenizer, readModelPackage } from '../../gpu-runner/engine/index.ts';
import { join } from 'node:path';
import { UsageError, type CliCommand } from '../command.ts';
import { defaultModelsDir } from '../models-dir.ts';

export const command: CliCommand = {
  usage: 'tokenize (--model ID | --tokenizer DIR) "prompt" [--models DIR] [--count]   print the token ids as JSON, and the token count',
  async run(args) {
    const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { model: { type: 'string' }, tokenizer: { type: 'string' }, models: { type: 'string' }, count: { type: 'boolean' } } });
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
    const room = tok.maxLength - 2;
    if (values.count) {
      process.stdout.write(`${e.tokenCount}/${room}\n`);
      return 0;
    }
    process.stderr.write(
      e.truncated
        ? `warning: the prompt has ${e.tokenCount} tokens but the model reads ${room}: the first ${room} were kept, the last ${e.tokenCount - room} dropped\n`
        : `${e.tokenCount} of ${room} tokens\n`,
    );
    process.stdout.write(`${JSON.stringify(e.ids)}\n`);
    return 0;
  },
};
