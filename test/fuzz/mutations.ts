/**
 * Malformed job bodies, derived from the zod schema: the schema is walked to learn every
 * field's kind and bounds, and fast-check arbitraries mutate valid requests field by field
 * (wrong types, out-of-range numbers, unknown fields, huge strings, deep nesting, bad
 * boxes, NaN-like values, missing required fields) or break the JSON text itself.
 */
import fc from 'fast-check';
import type { z } from 'zod';
import { JobRequest, LIMITS } from '../../shared/contract/index.ts';

export type Kind = 'object' | 'array' | 'tuple' | 'string' | 'number' | 'int' | 'boolean' | 'enum';

export interface FieldInfo {
  /** JSON path segments; '*' stands for any array index */
  path: (string | number)[];
  kind: Kind;
  optional: boolean;
  min?: number;
  max?: number;
  values?: string[];
  keys?: string[];
  length?: number;
}

type Def = Record<string, unknown> & { type: string };
const defOf = (s: unknown): Def => (s as { _zod: { def: Def } })._zod.def;

/** Every field the schema knows, with what it accepts. */
export function schemaFields(schema: z.ZodType = JobRequest): FieldInfo[] {
  const out: FieldInfo[] = [];
  const walk = (s: unknown, path: (string | number)[], optional: boolean): void => {
    let def = defOf(s);
    while (['optional', 'default', 'nullable', 'prefault', 'pipe', 'readonly'].includes(def.type)) {
      if (def.type === 'optional' || def.type === 'default' || def.type === 'prefault') optional = true;
      s = def.type === 'pipe' ? def.in : def.innerType;
      def = defOf(s);
    }
    // zod v4 exposes bounds on the instance (numbers, strings) and in the checks (arrays)
    const inst = s as { minValue?: number; maxValue?: number; isInt?: boolean; minLength?: number; maxLength?: number };
    const checks = ((def.checks as { _zod: { def: { check: string; minimum?: number; maximum?: number } } }[] | undefined) ?? []).map((c) => c._zod.def);
    const bag: Record<string, unknown> = {
      minimum: inst.minValue ?? inst.minLength ?? checks.find((c) => c.check === 'min_length')?.minimum,
      maximum: inst.maxValue ?? inst.maxLength ?? checks.find((c) => c.check === 'max_length')?.maximum,
      format: inst.isInt ? 'safeint' : undefined,
    };
    const num = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);
    switch (def.type) {
      case 'object': {
        const shape = def.shape as Record<string, unknown>;
        out.push({ path, kind: 'object', optional, keys: Object.keys(shape) });
        for (const [k, v] of Object.entries(shape)) walk(v, [...path, k], false);
        return;
      }
      case 'array':
        out.push({ path, kind: 'array', optional, ...(num(bag.minimum) !== undefined ? { min: num(bag.minimum) } : {}), ...(num(bag.maximum) !== undefined ? { max: num(bag.maximum) } : {}) });
        walk(def.element, [...path, '*'], false);
        return;
      case 'tuple': {
        const items = def.items as unknown[];
        out.push({ path, kind: 'tuple', optional, length: items.length });
        items.forEach((it, i) => walk(it, [...path, i], false));
        return;
      }
      case 'string':
        out.push({ path, kind: 'string', optional, ...(num(bag.minimum) !== undefined ? { min: num(bag.minimum) } : {}), ...(num(bag.maximum) !== undefined ? { max: num(bag.maximum) } : {}) });
        return;
      case 'number':
        out.push({ path, kind: bag.format === 'safeint' || bag.format === 'int32' ? 'int' : 'number', optional, ...(num(bag.minimum) !== undefined ? { min: num(bag.minimum) } : {}), ...(num(bag.maximum) !== undefined ? { max: num(bag.maximum) } : {}) });
        return;
      case 'boolean':
        out.push({ path, kind: 'boolean', optional });
        return;
      case 'enum':
        out.push({ path, kind: 'enum', optional, values: Object.values(def.entries as Record<string, string>) });
        return;
      default:
        return;
    }
  };
  walk(schema, [], false);
  return out;
}

/**
 * The concrete locations of a schema path in a given value ('*' expanded to real indices).
 * The last segment may be absent (an optional field can be set) unless `mustExist`.
 */
export function locate(value: unknown, path: (string | number)[], mustExist = false): (string | number)[][] {
  let found: (string | number)[][] = [[]];
  path.forEach((seg, i) => {
    const next: (string | number)[][] = [];
    for (const p of found) {
      const here = getAt(value, p);
      if (seg === '*') {
        if (Array.isArray(here)) here.forEach((_, k) => next.push([...p, k]));
      } else if (here !== null && typeof here === 'object' && !Array.isArray(here)) {
        const last = i === path.length - 1;
        if ((last && !mustExist) || getAt(value, [...p, seg]) !== undefined) next.push([...p, seg]);
      }
    }
    found = next;
  });
  return found;
}

export function getAt(value: unknown, path: (string | number)[]): unknown {
  let v = value;
  for (const seg of path) v = v === null || typeof v !== 'object' ? undefined : (v as Record<string | number, unknown>)[seg];
  return v;
}

export function setAt(value: unknown, path: (string | number)[], replacement: unknown, remove = false): unknown {
  if (path.length === 0) return replacement;
  const copy = structuredClone(value) as Record<string | number, unknown>;
  let parent: Record<string | number, unknown> = copy;
  for (const seg of path.slice(0, -1)) parent = parent[seg] as Record<string | number, unknown>;
  const last = path.at(-1)!;
  if (remove) {
    if (Array.isArray(parent)) parent.splice(last as number, 1);
    else delete parent[last];
  } else {
    parent[last] = replacement;
  }
  return copy;
}

export const fieldName = (path: (string | number)[]): string =>
  path.reduce<string>((acc, seg) => (typeof seg === 'number' ? `${acc}[${seg}]` : acc === '' ? seg : `${acc}.${seg}`), '') || 'body';

const anyOtherType = (kind: Kind): fc.Arbitrary<unknown> => {
  const pool: fc.Arbitrary<unknown>[] = [];
  if (kind !== 'string' && kind !== 'enum') pool.push(fc.string({ maxLength: 12 }));
  if (kind !== 'number' && kind !== 'int') pool.push(fc.double({ noNaN: true, noDefaultInfinity: true }), fc.integer());
  if (kind !== 'boolean') pool.push(fc.boolean());
  if (kind !== 'object') pool.push(fc.dictionary(fc.string({ maxLength: 5 }), fc.integer(), { maxKeys: 3 }));
  if (kind !== 'array' && kind !== 'tuple') pool.push(fc.array(fc.integer(), { maxLength: 3 }));
  pool.push(fc.constant(null));
  return fc.oneof(...pool);
};

/**
 * Deep nesting is spliced into the JSON text: building it as a value would overflow this
 * test's own stack in JSON.stringify long before the server's iterative JSON.parse minds.
 */
const DEEP = '__deep_nesting__';
const deepNest = fc.constant(DEEP);
const deepText = fc.tuple(fc.integer({ min: 50, max: 20_000 }), fc.boolean()).map(([depth, arrays]) => (arrays ? `${'['.repeat(depth)}1${']'.repeat(depth)}` : `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`));
const withDeep = (text: string) => (text.includes(`"${DEEP}"`) ? deepText.map((d) => text.replace(`"${DEEP}"`, d)) : fc.constant(text));

/** Values that must be refused for a field of this kind and bounds. */
function badValue(f: FieldInfo): fc.Arbitrary<unknown> {
  const options: fc.Arbitrary<unknown>[] = [anyOtherType(f.kind), anyOtherType(f.kind), fc.constantFrom('NaN', 'Infinity', '-Infinity', '1e999', '', ' ')];
  if (f.kind === 'number' || f.kind === 'int') {
    if (f.min !== undefined) options.push(fc.double({ max: f.min, maxExcluded: true, noNaN: true, noDefaultInfinity: true, min: -1e300 }));
    if (f.max !== undefined) options.push(fc.double({ min: f.max, minExcluded: true, noNaN: true, noDefaultInfinity: true, max: 1e300 }));
    if (f.kind === 'int') options.push(fc.double({ min: -1e6, max: 1e6, noNaN: true }).filter((x) => !Number.isInteger(x)));
    options.push(fc.constantFrom(1e308, -1e308, Number.MAX_SAFE_INTEGER + 2, 5e-324));
  }
  if (f.kind === 'string' && f.max !== undefined) options.push(fc.integer({ min: f.max + 1, max: f.max + 3000 }).map((n) => 'x'.repeat(n)));
  if (f.kind === 'string' && f.min !== undefined && f.min > 0) options.push(fc.constant(''));
  if (f.kind === 'enum') options.push(fc.string({ minLength: 1, maxLength: 10 }).filter((s) => !f.values!.includes(s)));
  if (f.kind === 'tuple') {
    options.push(fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 8 }).filter((a) => a.length !== f.length));
    // boxes: outside [0, 1], or inverted
    options.push(fc.tuple(fc.double({ min: -5, max: 5, noNaN: true }), fc.double({ min: -5, max: 5, noNaN: true }), fc.double({ min: -5, max: 5, noNaN: true }), fc.double({ min: -5, max: 5, noNaN: true })).filter((b) => b.some((x) => x < 0 || x > 1) || !(b[0] < b[2] && b[1] < b[3])));
  }
  if (f.kind === 'array' && f.max !== undefined) options.push(fc.constant(Array.from({ length: f.max + 1 }, () => ({}))));
  if (f.kind === 'array' && f.min !== undefined && f.min > 0) options.push(fc.constant([]));
  // deep nesting is costly to build and parse: in about 1 of 20 field mutations
  return fc.oneof({ weight: 19, arbitrary: fc.oneof(...options) }, { weight: 1, arbitrary: deepNest });
}

export interface Mutant {
  /** the request body text */
  text: string;
  /** what was done, for failure messages */
  what: string;
  /** the field a response should name (null when the whole body is broken) */
  field: string | null;
}

/** Mutations of a valid request: each one makes it invalid (or at least suspicious). */
export function mutants(valid: fc.Arbitrary<object>): fc.Arbitrary<Mutant> {
  const fields = schemaFields();
  const objects = fields.filter((f) => f.kind === 'object');
  const required = fields.filter((f) => !f.optional && f.path.length > 0);
  const pick = <T>(arr: T[]) => fc.integer({ min: 0, max: arr.length - 1 }).map((i) => arr[i]!);

  const replaceField = fc.tuple(valid, pick(fields), fc.nat()).chain(([req, f, n]) => {
    const spots = locate(req, f.path);
    if (spots.length === 0) return fc.constant(null);
    const spot = spots[n % spots.length]!;
    return badValue(f).chain((bad) =>
      withDeep(JSON.stringify(setAt(req, spot, bad))).map((text): Mutant => ({ text, what: `${fieldName(spot)} := ${(JSON.stringify(bad) ?? 'undefined').slice(0, 80)}`, field: fieldName(spot) })),
    );
  });

  const unknownField = fc.tuple(valid, pick(objects), fc.nat(), fc.string({ minLength: 1, maxLength: 20 }), fc.jsonValue({ maxDepth: 2 })).map(([req, f, n, key, value]) => {
    const spots = locate(req, f.path, true);
    if (spots.length === 0 || f.keys!.includes(key)) return null;
    const spot = spots[n % spots.length]!;
    return { text: JSON.stringify(setAt(req, [...spot, key], value)), what: `unknown field ${fieldName([...spot, key])}`, field: fieldName([...spot, key]) } satisfies Mutant;
  });

  const missingField = fc.tuple(valid, pick(required), fc.nat()).map(([req, f, n]) => {
    const spots = locate(req, f.path, true);
    if (spots.length === 0) return null;
    const spot = spots[n % spots.length]!;
    return { text: JSON.stringify(setAt(req, spot, undefined, true)), what: `without ${fieldName(spot)}`, field: fieldName(spot) } satisfies Mutant;
  });

  const brokenText = fc.tuple(valid, fc.nat(), fc.constantFrom('truncate', 'nan', 'garbage', 'trailing', 'bom', 'empty')).map(([req, n, how]): Mutant => {
    const text = JSON.stringify(req);
    const body =
      how === 'truncate'
        ? text.slice(0, n % text.length)
        : how === 'nan'
          ? text.replace(/"steps":\d+|"seed":\d+|"images":\d+/, '"steps":NaN').replace(/}$/, ',"x":NaN}')
          : how === 'garbage'
            ? `${text.slice(0, n % text.length)}\u0000\uffff${text.slice(n % text.length)}`
            : how === 'trailing'
              ? `${text},`
              : how === 'bom'
                ? `\ufeff${text}x`
                : '';
    return { text: body, what: `JSON text: ${how}`, field: null };
  });

  const wholeBody = fc
    .oneof(fc.jsonValue({ maxDepth: 3 }).filter((v) => v === null || typeof v !== 'object' || Array.isArray(v)), deepNest)
    .chain((v) => withDeep(JSON.stringify(v)).map((text): Mutant => ({ text, what: `body := ${text.slice(0, 60)}`, field: null })));

  return fc.oneof(
    { weight: 6, arbitrary: replaceField },
    { weight: 2, arbitrary: unknownField },
    { weight: 2, arbitrary: missingField },
    { weight: 2, arbitrary: brokenText },
    { weight: 1, arbitrary: wholeBody },
  ).filter((m): m is Mutant => m !== null);
}

/** Valid requests over the shapes family's three models (see the fuzz tests' catalog). */
export const validRequests: fc.Arbitrary<object> = fc
  .record({
    steps: fc.integer({ min: 4, max: 50 }),
    seed: fc.option(fc.integer({ min: 0, max: LIMITS.maxSeed }), { nil: undefined }),
    layout: fc.boolean(),
    style: fc.boolean(),
    prompt: fc.string({ minLength: 0, maxLength: 40 }),
    boxes: fc.array(fc.tuple(fc.double({ min: 0, max: 0.45, noNaN: true }), fc.double({ min: 0, max: 0.45, noNaN: true }), fc.double({ min: 0.55, max: 1, noNaN: true }), fc.double({ min: 0.55, max: 1, noNaN: true })), { minLength: 1, maxLength: 4 }),
    images: fc.integer({ min: 1, max: LIMITS.maxImages }),
    webhook: fc.boolean(),
  })
  .map((r) => {
    const models: object[] = [{ id: 'shapes-base', role: 'base', prompt: r.prompt }];
    if (r.layout) models.push({ id: 'shapes-layout', role: 'auxiliary', prompt: r.prompt, grounding: r.boxes.map((box, i) => ({ phrase: `object ${i}`, box })) });
    if (r.style) models.push({ id: 'shapes-style', role: 'auxiliary', prompt: r.prompt, reference_image: { data: TINY_PNG_BASE64, scale: 0.5 } });
    return {
      models,
      sampler: { steps: r.steps, ...(r.seed !== undefined ? { seed: r.seed } : {}) },
      outputs: { images: r.images },
      ...(r.webhook ? { webhook: { url: 'https://hooks.test/amdm' } } : {}),
    };
  });

/** A 1x1 PNG. */
export const TINY_PNG_BASE64 = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYPgPAAEDAQAIicLsAAAAAElFTkSuQmCC';
