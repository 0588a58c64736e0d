/**
 * Which installed models are worth offering as auxiliaries. A variant of a model (its fp16
 * export, say: `shapes-base-fp16` beside `shapes-base`) is the same model in another
 * precision or format: aggregating it with its original, or offering it beside its original,
 * adds nothing but a second UNet call per step. It stays a choice for the base.
 *
 * GET /v1/models does not say which model is a variant of which, so the page infers it: a
 * model is a variant of another when its id extends the other's (`<id>-…`) and everything
 * the catalog says about what it takes and renders is the same. A declared `variant_of` in
 * the model manifest and ModelInfo would make this exact; this rule is the page's stopgap.
 */
import type { ModelInfo } from '../../shared/client/client.ts';

const capabilities = (m: ModelInfo): string => JSON.stringify([m.ecosystem, m.latent, m.sizes, m.conditions, [...m.schedulers].sort()]);

/** The model `m` is a variant of (the longest such id), or null. */
export function variantOf(m: ModelInfo, catalog: readonly ModelInfo[]): ModelInfo | null {
  let best: ModelInfo | null = null;
  for (const o of catalog) {
    if (o.id === m.id || !m.id.startsWith(`${o.id}-`) || capabilities(o) !== capabilities(m)) continue;
    if (!best || o.id.length > best.id.length) best = o;
  }
  return best;
}

/** The original a model is a variant of, followed to the end; the model itself when it is none. */
export function originalOf(m: ModelInfo, catalog: readonly ModelInfo[]): ModelInfo {
  let cur = m;
  for (let i = 0; i < catalog.length; i++) {
    const up = variantOf(cur, catalog);
    if (!up) return cur;
    cur = up;
  }
  return cur;
}

export interface AuxiliaryChoices {
  /** in catalog order: the models a user may add beside this base */
  offered: ModelInfo[];
  /** variants left out, with the reason (shown, so nothing is hidden silently) */
  left: { info: ModelInfo; reason: string }[];
}

/**
 * The auxiliary models to offer beside `baseId`: every other model except variants, of the
 * base or of another installed model. Models already chosen stay offered whatever they
 * are (a past job or an example may use one), so they can be seen and removed.
 */
export function auxiliaryChoices(baseId: string, chosen: readonly string[], catalog: readonly ModelInfo[]): AuxiliaryChoices {
  const base = catalog.find((m) => m.id === baseId);
  const offered: ModelInfo[] = [];
  const left: AuxiliaryChoices['left'] = [];
  if (!base) return { offered, left };
  const baseOriginal = originalOf(base, catalog);
  for (const m of catalog) {
    if (m.id === baseId) continue;
    if (chosen.includes(m.id)) {
      offered.push(m);
      continue;
    }
    const original = originalOf(m, catalog);
    if (original.id === baseOriginal.id) {
      left.push({ info: m, reason: `the same model as the base ${base.id} (${m.id === original.id ? `${base.id} is a variant of it` : `a variant of ${original.id}`}): aggregating it adds nothing` });
    } else if (original.id !== m.id) {
      left.push({ info: m, reason: `a variant of ${original.id}, which is offered instead` });
    } else {
      offered.push(m);
    }
  }
  return { offered, left };
}
