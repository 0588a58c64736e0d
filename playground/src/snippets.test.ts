/**
 * The snippets are run, not read: the curl one by bash with `curl` defined as a function
 * that prints its arguments, the fetch one as an async function with a recording fetch.
 * Both must deliver exactly the request the form built, whatever its prompts contain.
 */
import { spawnSync } from 'node:child_process';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { JobRequestInput } from '../../shared/contract/index.ts';
import { curlSnippet, fetchSnippet, prettyJson, shellQuote } from './snippets.ts';

const BASE = 'http://127.0.0.1:18790';
const NASTY = [
  "a bird's nest",
  'say "hi"',
  '$(touch /tmp/pwned) `id` ${HOME} $AMDM_API_KEY',
  'back\\slash \\\' and \\"',
  "it's '' two",
  'two\nlines\ttab',
  'ünïcödé ✓ \u2028 line separator',
  "'",
  '',
];

function request(prompt: string): JobRequestInput {
  return {
    models: [
      { id: 'shapes-base', role: 'base', prompt },
      { id: 'shapes-layout', role: 'auxiliary', prompt: 'a circle', grounding: [{ phrase: prompt || 'x', box: [0.1, 0.2, 0.5, 0.6] }] },
    ],
    sampler: { steps: 12, seed: 7 },
    outputs: { per_model: true },
  };
}

/** Run the curl snippet in bash; `curl` prints each argument NUL-terminated instead of sending. */
function runCurl(snippet: string, key: string): string[] {
  const script = `curl() { printf '%s\\0' "$@"; }\n${snippet}\n`;
  const r = spawnSync('bash', ['-c', script], { encoding: 'utf8', env: { PATH: process.env.PATH, AMDM_API_KEY: key } });
  expect(r.status, r.stderr).toBe(0);
  return r.stdout.split('\0').slice(0, -1);
}

async function runFetch(snippet: string, key: string): Promise<{ url: string; init: RequestInit; logged: unknown[] }> {
  const calls: { url: string; init: RequestInit }[] = [];
  const logged: unknown[] = [];
  const fakeFetch = async (url: string, init: RequestInit) => {
    calls.push({ url, init });
    return { status: 202, json: async () => ({ status: 'queued' }) };
  };
  const AsyncFunction = Object.getPrototypeOf(async () => {}).constructor as new (...args: string[]) => (...a: unknown[]) => Promise<void>;
  await new AsyncFunction('fetch', 'process', 'console', snippet)(fakeFetch, { env: { AMDM_API_KEY: key } }, { log: (...a: unknown[]) => logged.push(a) });
  expect(calls).toHaveLength(1);
  return { ...calls[0]!, logged };
}

describe('shellQuote', () => {
  it('makes one literal word of any text', () => {
    for (const text of NASTY) {
      const r = spawnSync('bash', ['-c', `printf '%s' ${shellQuote(text)}`], { encoding: 'utf8' });
      expect(r.stdout, JSON.stringify(text)).toBe(text);
    }
  });
});

describe('the curl snippet', () => {
  it('sends exactly the request, to this API, with the key from $AMDM_API_KEY', () => {
    for (const prompt of NASTY) {
      const req = request(prompt);
      const snippet = curlSnippet(BASE, req);
      expect(snippet).not.toContain('amdm_secret');
      const args = runCurl(snippet, 'amdm_secret_key');
      expect(args[0]).toBe('-sS');
      expect(args[1]).toBe(`${BASE}/v1/jobs`);
      const headers = args.flatMap((a, i) => (args[i - 1] === '-H' ? [a] : []));
      expect(headers).toEqual(['Authorization: Bearer amdm_secret_key', 'Content-Type: application/json', 'Prefer: wait=60']);
      const data = args[args.indexOf('--data') + 1]!;
      expect(JSON.parse(data), JSON.stringify(prompt)).toEqual(req);
    }
  });

  it('keeps a base URL with a path and odd characters in one word', () => {
    const args = runCurl(curlSnippet("https://api.example.test/amdm's/x y", request('p')), 'k');
    expect(args[1]).toBe("https://api.example.test/amdm's/x y/v1/jobs");
  });
});

describe('the fetch snippet', () => {
  it('sends exactly the request, to this API, with the key from process.env', async () => {
    for (const prompt of NASTY) {
      const req = request(prompt);
      const snippet = fetchSnippet(BASE, req);
      expect(snippet).not.toContain('amdm_secret');
      const { url, init, logged } = await runFetch(snippet, 'amdm_secret_key');
      expect(url).toBe(`${BASE}/v1/jobs`);
      expect(init.method).toBe('POST');
      expect(init.headers).toEqual({ Authorization: 'Bearer amdm_secret_key', 'Content-Type': 'application/json', Prefer: 'wait=60' });
      expect(JSON.parse(init.body as string), JSON.stringify(prompt)).toEqual(req);
      expect(logged).toEqual([[202, 'queued', undefined]]);
    }
  });
});

describe('prettyJson', () => {
  it('puts a box on one line and changes nothing else', () => {
    const text = prettyJson({ box: [0.06, 0.1, 0.44, 0.48], window: [1, 3], phrase: '[\n1,\n2\n]', e: [1e-7, -2], mixed: [1, 'a'], empty: [] });
    expect(text).toContain('"box": [0.06, 0.1, 0.44, 0.48],');
    expect(text).toContain('"window": [1, 3],');
    expect(text).toContain('"e": [1e-7, -2],');
    expect(text).toContain('"mixed": [\n    1,\n    "a"\n  ]');
  });

  it('is JSON.stringify for any value, up to white space', () => {
    fc.assert(fc.property(fc.jsonValue(), (v) => {
        expect(JSON.parse(prettyJson(v))).toEqual(JSON.parse(JSON.stringify(v)));
      }), { numRuns: 500 });
  });
});
