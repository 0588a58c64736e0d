/**
 * Reads a Dockerfile the way Docker does, as far as this project's checks need: instructions
 * with continuation lines joined, the comment lines right above each, and the build stage each
 * belongs to. Used by the static lint of the runner image (test/infra/dockerfile.test.ts) and
 * by the application-layer check that performs its steps without Docker
 * (tools/runner-app-check.ts), so both read the same file the same way.
 */
export interface Instruction {
  keyword: string;
  args: string;
  /** the comment lines right above it */
  comment: string[];
  /** -1 before the first FROM (global ARGs), then 0, 1, ... */
  stage: number;
}

export function parseDockerfile(text: string): Instruction[] {
  const out: Instruction[] = [];
  let comment: string[] = [];
  let pending = '';
  let stage = -1;
  for (const line of text.split('\n')) {
    const trimmed = line.trim();
    if (pending === '' && trimmed.startsWith('#')) {
      comment.push(trimmed.replace(/^#\s?/, ''));
      continue;
    }
    if (pending === '' && trimmed === '') {
      comment = [];
      continue;
    }
    pending += (pending ? ' ' : '') + trimmed.replace(/\\$/, '').trim();
    if (trimmed.endsWith('\\')) continue;
    const [, keyword = '', args = ''] = /^(\S+)\s*(.*)$/.exec(pending) ?? [];
    if (keyword.toUpperCase() === 'FROM') stage++;
    out.push({ keyword: keyword.toUpperCase(), args, comment, stage });
    pending = '';
    comment = [];
  }
  return out;
}

/** The instructions of the last stage: the image that ships. */
export function finalStage(instructions: readonly Instruction[]): Instruction[] {
  const last = Math.max(...instructions.map((i) => i.stage));
  return instructions.filter((i) => i.stage === last);
}

/** A COPY from the build context (not --from another stage): its sources and destination. */
export function contextCopies(instructions: readonly Instruction[]): { sources: string[]; dest: string }[] {
  return instructions
    .filter((i) => i.keyword === 'COPY' && !/(^|\s)--from=/.test(i.args))
    .map((i) => {
      const parts = i.args.split(/\s+/).filter((a) => !a.startsWith('--'));
      return { sources: parts.slice(0, -1), dest: parts.at(-1)! };
    });
}

/** `ENV A=1 B=2` of the given instructions, in order. */
export function envOf(instructions: readonly Instruction[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const i of instructions.filter((i) => i.keyword === 'ENV')) {
    for (const [, k, v] of i.args.matchAll(/(\w+)=("[^"]*"|\S+)/g)) env[k!] = v!.replace(/^"|"$/g, '');
  }
  return env;
}
