import { afterEach, describe, expect, it, vi } from 'vitest';
import { command } from './tokenize.ts';

afterEach(() => vi.restoreAllMocks());

async function run(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  vi.spyOn(process.stdout, 'write').mockImplementation((s) => ((out += String(s)), true));
  vi.spyOn(process.stderr, 'write').mockImplementation((s) => ((err += String(s)), true));
  try {
    return { code: await command.run(args), out, err };
  } finally {
    vi.restoreAllMocks();
  }
}

describe('amdm tokenize', () => {
  it('prints the ids, and how many tokens of how many the model reads', async () => {
    const r = await run(['--model', 'shapes-base', 'a red circle and a blue square']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out)).toHaveLength(16);
    expect(r.err).toBe('7 of 14 tokens\n');
    expect((await run(['--model', 'shapes-base', '--count', 'a red circle'])).out).toBe('3/14\n');
  });

  it('a prompt over the limit: how many were kept and dropped', async () => {
    const long = 'a red circle and a blue square and a green triangle on a yellow background with a purple border';
    const r = await run(['--model', 'shapes-base', long]);
    expect(r.err).toMatch(/^warning: the prompt has (\d+) tokens but the model reads 14: the first 14 were kept, the last \d+ dropped\n$/);
    const count = await run(['--model', 'shapes-base', '--count', long]);
    expect(count.out).toMatch(/^(\d+)\/14\n$/);
    expect(Number(count.out.split('/')[0])).toBeGreaterThan(14);
  });
});
