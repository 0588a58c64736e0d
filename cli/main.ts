/**
 * `amdm` subcommand dispatch. Each command lives in cli/commands/<name>.ts and exports a
 * `command: CliCommand`; add it to COMMANDS below. Exit codes: 0 ok, 1 failure at run
 * time, 2 bad usage or bad input (one clear line on stderr).
 */
import type { CliCommand } from './command.ts';

const COMMANDS: Record<string, () => Promise<{ command: CliCommand }>> = {
  keys: () => import('./commands/keys.ts'),
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
  return command.run(rest);
}

async function usage(): Promise<string> {
  const lines = ['usage: amdm <command> [options]', ''];
  for (const name of Object.keys(COMMANDS).sort()) {
    const { command } = await COMMANDS[name]!();
    lines.push(`  ${command.usage}`);
  }
  return lines.join('\n') + '\n';
}
