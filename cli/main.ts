/**
 * `amdm` subcommand dispatch. Each command lives in cli/commands/<name>.ts and exports a
 * `command: CliCommand`; add it to COMMANDS below. Exit codes: 0 ok, 1 failure at run
 * time, 2 bad usage or bad input (one clear line on stderr).
 */
import { UsageError, type CliCommand } from './command.ts';

const COMMANDS: Record<string, () => Promise<{ command: CliCommand }>> = {
  generate: () => import('./commands/generate.ts'),
  tokenize: () => import('./commands/tokenize.ts'),
  keys: () => import('./commands/keys.ts'),
  // an AWS account and stage, with the operator's credentials
  aws: () => import('./commands/aws.ts'),
  // client commands: talk to a server (AMDM_URL, AMDM_API_KEY)
  submit: () => import('./commands/submit.ts'),
  status: () => import('./commands/status.ts'),
  cancel: () => import('./commands/cancel.ts'),
  list: () => import('./commands/list.ts'),
  usage: () => import('./commands/usage.ts'),
};

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(await usage());
    return name ? 0 : 2;
  }
  const load = COMMANDS[name];
  if (!load) {
    process.stderr.write(`amdm: unknown command "${name}"; try: ${Object.keys(COMMANDS).sort().join(', ')}\n`);
    return 2;
  }
  const { command } = await load();
  // `amdm generate --help` (options after `--` are the command's own arguments)
  const own = rest.indexOf('--');
  if ((own < 0 ? rest : rest.slice(0, own)).some((a) => a === '--help' || a === '-h')) {
    process.stdout.write(`usage: amdm ${command.usage}\n`);
    return 0;
  }
  try {
    return await command.run(rest);
  } catch (err) {
    // one clear line, never a stack trace; AMDM_DEBUG=1 shows it for us
    if (process.env.AMDM_DEBUG) console.error(err);
    const usage = err instanceof UsageError || (err as Error).name === 'TypeError' && (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS');
    process.stderr.write(`amdm ${name}: ${(err as Error).message.split('\n')[0]}\n`);
    return usage ? 2 : 1;
  }
}

async function usage(): Promise<string> {
  const lines = ['usage: amdm <command> [options]', ''];
  for (const name of Object.keys(COMMANDS).sort()) {
    const { command } = await COMMANDS[name]!();
    lines.push(`  ${command.usage}`);
  }
  return lines.join('\n') + '\n';
}
