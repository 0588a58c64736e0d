/**
 * Showing errors and warnings where they belong: each message next to the input whose
 * `data-field` it names (or the nearest enclosing one), wired with aria-describedby so a
 * screen reader reads it with the input, plus a summary that links to every message.
 *
 * Errors (a refused request) mark their inputs aria-invalid and their summary at the top
 * takes the focus (the GOV.UK error summary pattern). Warnings (a job that runs, but not
 * exactly as asked: a size rounded, a prompt cut) use the same field paths, but they only
 * mark the input, in the warning colour, and their list sits with the job's progress.
 */
import { h, uid } from './dom.ts';
import { fieldTarget } from './field-map.ts';

export interface ShownError {
  field: string;
  message: string;
}

const INPUTS = 'input, select, textarea';

type Kind = 'error' | 'warning';

interface Mark {
  el: HTMLElement;
  message: HTMLElement;
  invalid: HTMLElement[];
}

/** aria-describedby is a list of ids: add or remove one without disturbing the others' */
function describedBy(el: HTMLElement, id: string, add: boolean): void {
  const ids = (el.getAttribute('aria-describedby') ?? '').split(/\s+/).filter((t) => t !== '' && t !== id);
  if (add) ids.unshift(id);
  if (ids.length > 0) el.setAttribute('aria-describedby', ids.join(' '));
  else el.removeAttribute('aria-describedby');
}

/** Messages of one kind shown at their fields inside `root`. */
class FieldMessages {
  private marks: Mark[] = [];

  constructor(
    private readonly root: HTMLElement,
    private readonly kind: Kind,
  ) {}

  private elementFor(field: string): HTMLElement | null {
    return this.root.querySelector<HTMLElement>(`[data-field="${CSS.escape(field)}"]`);
  }

  clear(): void {
    for (const m of this.marks) {
      m.message.remove();
      describedBy(m.el, m.message.id, false);
      for (const i of m.invalid) i.removeAttribute('aria-invalid');
      // another message of this kind may still be on the same element
      if (!this.marks.some((o) => o !== m && o.el === m.el && o.message.isConnected)) m.el.classList.remove(`has-${this.kind}`);
    }
    this.marks = [];
  }

  /**
   * Put each message at its field, the i-th with the id `ids[i]`; returns the summary items,
   * linked to the messages placed. The links find their message when followed, so after
   * `place` puts the same messages back (the inputs were rebuilt) they still lead to them.
   */
  show(items: readonly ShownError[], opts: { openCards: boolean; ids: readonly string[] }): HTMLElement[] {
    this.place(items, opts);
    return items.map((e, i) => {
      const id = opts.ids[i]!;
      if (!this.marks.some((m) => m.message.id === id)) return h('li', {}, `${e.field}: ${e.message}`);
      const follow = (ev: MouseEvent) => {
        ev.preventDefault();
        const m = this.marks.find((k) => k.message.id === id);
        if (!m) return;
        openCardsAround(m.el);
        (m.el.matches(INPUTS) ? m.el : (m.el.querySelector<HTMLElement>(INPUTS) ?? m.el)).focus();
        m.message.scrollIntoView({ block: 'center' });
      };
      return h('li', {}, h('a', { attrs: { href: `#${id}` }, on: { click: follow } }, `${e.field}: ${e.message}`));
    });
  }

  /** The messages at their fields only (see show). */
  place(items: readonly ShownError[], opts: { openCards: boolean; ids: readonly string[] }): void {
    this.clear();
    items.forEach((e, i) => {
      const target = fieldTarget(e.field, (f) => this.elementFor(f) !== null);
      const el = target ? this.elementFor(target) : null;
      if (!el) return;
      // a collapsed model card must open to show an error; a warning opens it when followed
      if (opts.openCards) openCardsAround(el);
      const text = target === e.field ? e.message : `${e.field}: ${e.message}`;
      const message = h('p', { class: `field-${this.kind}`, id: opts.ids[i]! }, text);
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
      describedBy(el, message.id, true);
      // a group's own inputs are invalid with it, not those of a nested group with its own path
      const invalid = this.kind !== 'error' ? [] : el.matches(INPUTS) ? [el] : [...el.querySelectorAll<HTMLElement>(INPUTS)].filter((i) => i.parentElement?.closest('[data-field]') === el);
      for (const i of invalid) i.setAttribute('aria-invalid', 'true');
      el.classList.add(`has-${this.kind}`);
      this.marks.push({ el, message, invalid });
    });
  }
}

function openCardsAround(el: HTMLElement): void {
  for (let d = el.closest('details'); d; d = d.parentElement?.closest('details') ?? null) d.open = true;
}

export class ErrorDisplay {
  private readonly messages: FieldMessages;

  constructor(
    root: HTMLElement,
    private readonly summary: HTMLElement,
  ) {
    this.messages = new FieldMessages(root, 'error');
  }

  clear(): void {
    this.messages.clear();
    this.summary.hidden = true;
    this.summary.replaceChildren();
  }

  /** Show `errors` under `title`; focus the summary so it is read out and seen. */
  show(title: string, errors: ShownError[], detail?: string): void {
    const items = this.messages.show(errors, { openCards: true, ids: errors.map(() => uid('err')) });
    this.summary.replaceChildren(h('h2', {}, title));
    if (detail) this.summary.append(h('p', {}, detail));
    if (items.length > 0) this.summary.append(h('ul', {}, ...items));
    this.summary.hidden = false;
    this.summary.focus();
  }
}

/**
 * A job's warnings: at their fields and listed in `list` (a role=status element, so a
 * changed list is read out without taking the focus). Shown again only when they change,
 * since every update of a running job carries them.
 */
export class WarningDisplay {
  private readonly messages: FieldMessages;
  private shown: readonly ShownError[] = [];
  private ids: string[] = [];

  constructor(
    root: HTMLElement,
    private readonly list: HTMLElement,
  ) {
    this.messages = new FieldMessages(root, 'warning');
  }

  clear(): void {
    this.messages.clear();
    this.list.hidden = true;
    this.list.replaceChildren();
    this.shown = [];
    this.ids = [];
  }

  show(warnings: readonly ShownError[]): void {
    const same = warnings.length === this.shown.length && warnings.every((w, i) => w.field === this.shown[i]!.field && w.message === this.shown[i]!.message);
    if (same) return;
    if (warnings.length === 0) {
      this.clear();
      return;
    }
    this.shown = warnings;
    this.ids = warnings.map(() => uid('warn'));
    const items = this.messages.show(warnings, { openCards: false, ids: this.ids });
    this.list.replaceChildren(
      h('h3', {}, warnings.length === 1 ? 'Warning' : `${warnings.length} warnings`),
      h('p', { class: 'hint' }, 'The job runs, but not exactly as asked:'),
      h('ul', {}, ...items),
    );
    this.list.hidden = false;
  }

  /** The inputs were rebuilt (the model cards re-render): put the messages back at them, the list untouched. */
  replace(): void {
    if (this.shown.length > 0) this.messages.place(this.shown, { openCards: false, ids: this.ids });
  }
}
