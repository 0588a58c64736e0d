/**
 * Zod issues -> field errors named by JSON path ("models[1].grounding[0].box"). Pure zod,
 * no HTTP: the edge turns them into RFC 9457 problems, the CLI into one line about a
 * request file, and both name a field the same way the playground maps back to its input.
 */
import { z } from 'zod';

/** One field-level problem; `field` is a JSON path such as "models[1].grounding[0].box". */
export const FieldError = z.object({ field: z.string(), message: z.string() });
export type FieldError = z.output<typeof FieldError>;

/** ['models', 1, 'grounding', 0, 'box'] -> 'models[1].grounding[0].box' */
export function fieldPath(path: readonly PropertyKey[], root = 'body'): string {
  let out = '';
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`;
    else out += out === '' ? String(p) : `.${String(p)}`;
  }
  return out === '' ? root : out;
}

/**
 * Zod issues -> field errors. Unknown keys are reported one per key, with the keys that
 * are allowed at that place when the schema is given, and they come first: a misspelt
 * field ("promt") also leaves the real one missing, and zod reports the missing one first
 * ("prompt: expected string, received undefined"), which points away from the typo. Clients
 * that show one line (the CLI, describeProblem) show the first error.
 */
export function zodFieldErrors(issues: readonly z.core.$ZodIssue[], schema?: z.ZodType, root = 'body'): FieldError[] {
  const unknown: FieldError[] = [];
  const out: FieldError[] = [];
  for (const issue of issues) {
    if (issue.code === 'unrecognized_keys') {
      const allowed = schema ? allowedKeysAt(schema, issue.path) : null;
      for (const key of issue.keys) {
        unknown.push({
          field: fieldPath([...issue.path, key], root),
          message: `unknown field "${key}"${allowed ? `; allowed: ${allowed.join(', ')}` : ''}`,
        });
      }
    } else {
      out.push({ field: fieldPath(issue.path, root), message: issue.message });
    }
  }
  return [...unknown, ...out];
}

/** Walk a zod v4 schema along a path to the object there, and return its keys. */
export function allowedKeysAt(schema: z.ZodType, path: readonly PropertyKey[]): string[] | null {
  let s: unknown = schema;
  const unwrap = (x: unknown): unknown => {
    for (let i = 0; i < 16; i++) {
      const def = (x as { _zod?: { def?: Record<string, unknown> } })?._zod?.def;
      if (!def) return x;
      if (def.type === 'optional' || def.type === 'default' || def.type === 'nullable' || def.type === 'prefault' || def.type === 'readonly' || def.type === 'catch') {
        x = def.innerType;
      } else if (def.type === 'pipe') {
        x = def.in;
      } else {
        return x;
      }
    }
    return x;
  };
  s = unwrap(s);
  for (const p of path) {
    const def = (s as { _zod: { def: Record<string, unknown> } })._zod.def;
    if (def.type === 'object' && typeof p === 'string') s = (def.shape as Record<string, unknown>)[p];
    else if (def.type === 'array') s = def.element;
    else if (def.type === 'tuple' && typeof p === 'number') s = (def.items as unknown[])[p];
    else return null;
    if (!s) return null;
    s = unwrap(s);
  }
  const def = (s as { _zod: { def: Record<string, unknown> } })._zod.def;
  return def.type === 'object' ? Object.keys(def.shape as object) : null;
}
