/**
 * Showing errors where they belong: each message next to the input whose `data-field`
 * the error names (or the nearest enclosing one), wired with aria-invalid and
 * aria-describedby so a screen reader reads it with the input, plus a summary at the top
 * that links to every message and takes the focus (the GOV.UK error summary pattern).
 */
import { h, uid } from './dom.ts';
import { fieldTarget } from './field-map.ts';

export interface ShownError {
  field: string;
  message: string;
}

const INPUTS = 'input, select, textarea';

export class ErrorDisplay {
  private shown: { el: HTMLElement; message: HTMLElement; described: string | null; invalid: HTMLElement[] }[] = [];

  constructor(
    private readonly root: HTMLElement,
    private readonly summary: HTMLElement,
  ) {}

  private elementFor(field: string): HTMLElement | null {
    return this.root.querySelector<HTMLElement>(`[data-field="${CSS.escape(field)}"]`);
  }

  clear(): void {
    for (const s of this.shown) {
      s.message.remove();
      if (s.described === null) s.el.removeAttribute('aria-describedby');
      else s.el.setAttribute('aria-describedby', s.described);
      for (const i of s.invalid) i.removeAttribute('aria-invalid');
      s.el.classList.remove('has-error');
    }
    this.shown = [];
    this.summary.hidden = true;
    this.summary.replaceChildren();
  }

  /** Show `errors` under `title`; focus the summary so it is read out and seen. */
  show(title: string, errors: ShownError[], detail?: string): void {
    this.clear();
    const items: HTMLElement[] = [];
    for (const e of errors) {
      const target = fieldTarget(e.field, (f) => this.elementFor(f) !== null);
      const el = target ? this.elementFor(target) : null;
      const text = target === e.field || !target ? e.message : `${e.field}: ${e.message}`;
      if (!el) {
        items.push(h('li', {}, `${e.field}: ${e.message}`));
        continue;
      }
      // a collapsed model card must open to show its error
      for (let d = el.closest('details'); d; d = d.parentElement?.closest('details') ?? null) d.open = true;
      const message = h('p', { class: 'field-error', id: uid('err') }, text);
      // inputs get the message right after their label's wrapper; groups get it first inside
      const wrap = el.matches(INPUTS) ? el.closest('.field') : null;
      if (wrap) wrap.append(message);
      else if (el.matches(INPUTS)) el.after(message);
      else {
        // a fieldset's legend must stay its first child
        const legend = el.querySelector(':scope > legend');
        if (legend) legend.after(message);
        else el.prepend(message);
      }
      const described = el.getAttribute('aria-describedby');
      el.setAttribute('aria-describedby', described ? `${message.id} ${described}` : message.id);
      // a group's own inputs are invalid with it, not those of a nested group with its own path
      const invalid = el.matches(INPUTS) ? [el] : [...el.querySelectorAll<HTMLElement>(INPUTS)].filter((i) => i.parentElement?.closest('[data-field]') === el);
      for (const i of invalid) i.setAttribute('aria-invalid', 'true');
      el.classList.add('has-error');
      this.shown.push({ el, message, described, invalid });
      const focusable = el.matches(INPUTS) ? el : (el.querySelector<HTMLElement>(INPUTS) ?? el);
      items.push(
        h('li', {}, h('a', { attrs: { href: `#${message.id}` }, on: { click: (ev) => (ev.preventDefault(), focusable.focus(), message.scrollIntoView({ block: 'center' })) } }, `${e.field}: ${e.message}`)),
      );
    }
    this.summary.replaceChildren(h('h2', {}, title));
    if (detail) this.summary.append(h('p', {}, detail));
    if (items.length > 0) this.summary.append(h('ul', {}, ...items));
    this.summary.hidden = false;
    this.summary.focus();
  }
}
