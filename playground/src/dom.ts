/** A few DOM helpers: the page builds its elements in code, with text nodes only (never innerHTML). */

type Child = Node | string | number | null | undefined | false;

export interface Props {
  class?: string;
  id?: string;
  /** attributes, set with setAttribute; `false`/undefined leaves one out, `true` sets it empty */
  attrs?: Record<string, string | number | boolean | undefined>;
  /** properties such as value, checked, disabled */
  props?: Record<string, unknown>;
  on?: Partial<{ [K in keyof HTMLElementEventMap]: (ev: HTMLElementEventMap[K]) => void }>;
}

export function h<K extends keyof HTMLElementTagNameMap>(tag: K, p: Props = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  if (p.class) el.className = p.class;
  if (p.id) el.id = p.id;
  for (const [k, v] of Object.entries(p.attrs ?? {})) {
    if (v === undefined || v === false) continue;
    el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const [k, v] of Object.entries(p.props ?? {})) (el as unknown as Record<string, unknown>)[k] = v;
  for (const [k, fn] of Object.entries(p.on ?? {})) el.addEventListener(k, fn as EventListener);
  append(el, children);
  return el;
}

export function append(el: Element, children: Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    el.append(typeof c === 'number' ? String(c) : c);
  }
}

let counter = 0;
/** A page-unique id for label/for and aria-describedby pairs. */
export const uid = (prefix: string): string => `${prefix}-${++counter}`;

export function byId<T extends HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) throw new Error(`the page has no #${id}`);
  return el as T;
}

/** A labelled input in a `.field` wrapper; the input carries the API field path it fills. */
export function field(label: string, input: HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement, opts: { hint?: string; apiField?: string; class?: string } = {}): HTMLDivElement {
  if (!input.id) input.id = uid('f');
  if (opts.apiField) input.dataset.field = opts.apiField;
  const hint = opts.hint ? h('p', { class: 'hint', id: uid('hint') }, opts.hint) : null;
  if (hint) input.setAttribute('aria-describedby', hint.id);
  return h('div', { class: `field${opts.class ? ` ${opts.class}` : ''}` }, h('label', { attrs: { for: input.id } }, label), input, hint);
}

/** `<input type=number>` with the range the API takes, for the browser's spinner and keyboard steps. */
export function numberInput(o: { min?: number; max?: number; step?: number | 'any'; placeholder?: string; value?: string; integer?: boolean }): HTMLInputElement {
  return h('input', {
    attrs: {
      type: 'number',
      inputmode: o.integer ? 'numeric' : 'decimal',
      min: o.min,
      max: o.max,
      step: o.step ?? (o.integer ? 1 : 'any'),
      placeholder: o.placeholder,
    },
    props: { value: o.value ?? '' },
  });
}

/** The text of a number input, with text the browser could not parse kept visible as invalid. */
export function numberText(input: HTMLInputElement): string {
  return input.validity.badInput ? 'not a number' : input.value;
}
