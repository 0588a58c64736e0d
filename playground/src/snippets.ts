/**
 * The job the form describes, as a command to paste: curl for a shell, fetch() for Node.
 * Both read the key from $AMDM_API_KEY and never contain it, so a snippet can be copied
 * into a ticket or seen in a screenshot. Pure, so the quoting is tested by running the
 * snippets (playground/src/snippets.test.ts).
 */
import type { JobRequestInput } from '../../shared/contract/index.ts';

/** How long the snippets ask the API to hold the answer for the finished job (Prefer: wait). */
export const SNIPPET_WAIT_SECONDS = 60;

/**
 * One POSIX shell word: single quotes keep everything literal ($, `, \, newlines) except
 * a single quote itself, which closes the quotes, is escaped, and reopens them.
 */
export function shellQuote(text: string): string {
  return `'${text.replaceAll("'", `'\\''`)}'`;
}

/**
 * JSON.stringify(value, null, 2) with arrays of numbers on one line ("box": [0.06, 0.1,
 * 0.44, 0.48]), so a request reads like the examples. Only arrays broken over lines are
 * joined, and a JSON string cannot hold a raw line break, so no string is touched.
 */
export function prettyJson(value: unknown): string {
  const num = String.raw`-?\d[\d.eE+-]*`;
  return JSON.stringify(value, null, 2).replace(new RegExp(String.raw`\[\n\s*(${num}(?:,\n\s*${num})*)\n\s*\]`, 'g'), (_, items: string) => `[${items.split(/,\n\s*/).join(', ')}]`);
}

export function curlSnippet(baseUrl: string, request: JobRequestInput): string {
  return [
    `curl -sS ${shellQuote(`${baseUrl}/v1/jobs`)}`,
    // double quotes: the shell expands the variable, and the key never appears here
    `-H "Authorization: Bearer $AMDM_API_KEY"`,
    `-H ${shellQuote('Content-Type: application/json')}`,
    `-H ${shellQuote(`Prefer: wait=${SNIPPET_WAIT_SECONDS}`)}`,
    `--data ${shellQuote(prettyJson(request))}`,
  ].join(' \\\n  ');
}

export function fetchSnippet(baseUrl: string, request: JobRequestInput): string {
  // JSON text is a JavaScript expression, and JSON.stringify of a string is a JS string literal
  const body = prettyJson(request).replaceAll('\n', '\n  ');
  return [
    '// Node 18 or later, as an ES module (node job.mjs), with AMDM_API_KEY set',
    `const res = await fetch(${JSON.stringify(`${baseUrl}/v1/jobs`)}, {`,
    "  method: 'POST',",
    '  headers: {',
    '    Authorization: `Bearer ${process.env.AMDM_API_KEY}`,',
    "    'Content-Type': 'application/json',",
    `    Prefer: 'wait=${SNIPPET_WAIT_SECONDS}',`,
    '  },',
    `  body: JSON.stringify(${body}),`,
    '});',
    'const job = await res.json();',
    "console.log(res.status, job.status, job.outputs?.map((o) => o.url) ?? job.errors ?? job.detail);",
  ].join('\n');
}
