/**
 * Grounding boxes of one model: drawn, moved and resized on a canvas with the mouse (or
 * pen, or touch), or with the keyboard; each box labelled with its phrase. Under the
 * canvas, one row per box with its phrase and its four normalized coordinates as inputs,
 * which is also what a screen reader uses. Boxes are normalized [x0, y0, x1, y1] with
 * the origin top-left, exactly what the API takes.
 */
import type { Box } from './request.ts';
import { field, h, numberInput, uid } from './dom.ts';

export interface GroundingBox {
  phrase: string;
  box: Box;
}

export interface BoxEditorOptions {
  /** the model's boxes; the editor changes this array in place */
  boxes: GroundingBox[];
  maxBoxes: number;
  /** e.g. 'models[1].grounding': the API path of this list, for error messages */
  apiField: string;
  modelId: string;
  /** width / height of the image the boxes are for */
  aspect: number;
  onChange: () => void;
  /** speak a short status through the page's live region */
  announce: (message: string) => void;
}

/** Smallest box a drag creates (a shorter drag is a click). */
const MIN_SIZE = 0.03;
const HANDLE_PX = 9;
const COLORS = ['#d4380d', '#096dd9', '#389e0d', '#c41d7f', '#d48806', '#531dab', '#08979c', '#7c8a06'];

type Drag =
  | { kind: 'draw'; start: [number, number]; index: number }
  | { kind: 'move'; index: number; grab: [number, number]; orig: Box }
  | { kind: 'resize'; index: number; corner: 0 | 1 | 2 | 3; orig: Box };

const clamp01 = (v: number): number => Math.min(1, Math.max(0, v));
const fmt = (v: number): string => v.toFixed(2);

export function colorOf(index: number): string {
  return COLORS[index % COLORS.length]!;
}

export class BoxEditor {
  readonly element: HTMLElement;
  private readonly canvas: HTMLCanvasElement;
  private readonly list: HTMLElement;
  private readonly addButton: HTMLButtonElement;
  private readonly capacity: HTMLElement;
  private selected = -1;
  private drag: Drag | null = null;

  constructor(private readonly o: BoxEditorOptions) {
    const helpId = uid('box-help');
    this.canvas = h('canvas', {
      class: 'box-canvas',
      attrs: {
        tabindex: 0,
        role: 'application',
        'aria-roledescription': 'box editor',
        'aria-label': `Grounding boxes for ${o.modelId}`,
        'aria-describedby': helpId,
      },
    });
    this.list = h('ol', { class: 'box-list' });
    this.addButton = h('button', { attrs: { type: 'button' }, on: { click: () => this.addBox() } }, 'Add box');
    this.capacity = h('p', { class: 'hint' });
    this.element = h(
      'div',
      { class: 'box-editor', attrs: { 'data-field': o.apiField } },
      h('div', { class: 'canvas-wrap' }, this.canvas),
      h(
        'p',
        { class: 'hint', id: helpId },
        'Drag on the canvas to draw a box; drag a box to move it, or a corner to resize it. ' +
          'With the keyboard: N adds a box, [ and ] select the previous or next box, arrow keys move it, ' +
          'Shift with arrow keys resizes it, Enter edits its phrase, Delete removes it.',
      ),
      this.capacity,
      this.list,
      this.addButton,
    );

    this.canvas.addEventListener('pointerdown', (e) => this.onPointerDown(e));
    this.canvas.addEventListener('pointermove', (e) => this.onPointerMove(e));
    this.canvas.addEventListener('pointerup', (e) => this.onPointerUp(e));
    this.canvas.addEventListener('pointercancel', () => this.cancelDrag());
    this.canvas.addEventListener('keydown', (e) => this.onKey(e));
    this.canvas.addEventListener('focus', () => this.draw());
    this.canvas.addEventListener('blur', () => this.draw());
    new ResizeObserver(() => this.draw()).observe(this.canvas);
    this.canvas.style.aspectRatio = String(o.aspect);
    this.syncList(true);
  }

  /** The output size changed: keep the boxes (they are normalized), redraw at the new shape. */
  setAspect(aspect: number): void {
    this.canvas.style.aspectRatio = String(aspect);
    this.draw();
  }

  // ---- geometry -----------------------------------------------------------------------

  private point(e: PointerEvent): [number, number] {
    const r = this.canvas.getBoundingClientRect();
    return [clamp01((e.clientX - r.left) / r.width), clamp01((e.clientY - r.top) / r.height)];
  }

  /** What is under the pointer: a corner of the selected box, a box (topmost first), or nothing. */
  private hit(p: [number, number]): { kind: 'corner'; index: number; corner: 0 | 1 | 2 | 3 } | { kind: 'box'; index: number } | null {
    const r = this.canvas.getBoundingClientRect();
    const tolX = HANDLE_PX / r.width;
    const tolY = HANDLE_PX / r.height;
    const boxes = this.o.boxes;
    const order = [this.selected, ...boxes.map((_, i) => boxes.length - 1 - i).filter((i) => i !== this.selected)].filter((i) => i >= 0);
    for (const i of order) {
      const [x0, y0, x1, y1] = boxes[i]!.box;
      const corners: [number, number][] = [[x0, y0], [x1, y0], [x1, y1], [x0, y1]];
      const c = corners.findIndex(([cx, cy]) => Math.abs(p[0] - cx) <= tolX && Math.abs(p[1] - cy) <= tolY);
      if (c >= 0) return { kind: 'corner', index: i, corner: c as 0 | 1 | 2 | 3 };
    }
    for (const i of order) {
      const [x0, y0, x1, y1] = boxes[i]!.box;
      if (p[0] >= x0 && p[0] <= x1 && p[1] >= y0 && p[1] <= y1) return { kind: 'box', index: i };
    }
    return null;
  }

  // ---- pointer ------------------------------------------------------------------------

  private onPointerDown(e: PointerEvent): void {
    if (e.button !== 0) return;
    e.preventDefault();
    this.canvas.focus();
    const p = this.point(e);
    const hit = this.hit(p);
    if (hit?.kind === 'corner') {
      this.selected = hit.index;
      this.drag = { kind: 'resize', index: hit.index, corner: hit.corner, orig: [...this.o.boxes[hit.index]!.box] };
    } else if (hit?.kind === 'box') {
      this.selected = hit.index;
      this.drag = { kind: 'move', index: hit.index, grab: p, orig: [...this.o.boxes[hit.index]!.box] };
    } else if (this.o.boxes.length < this.o.maxBoxes) {
      this.o.boxes.push({ phrase: '', box: [p[0], p[1], p[0], p[1]] });
      this.selected = this.o.boxes.length - 1;
      this.drag = { kind: 'draw', start: p, index: this.selected };
    } else {
      this.selected = -1;
      this.o.announce(`${this.o.modelId} takes at most ${this.o.maxBoxes} boxes`);
    }
    this.canvas.setPointerCapture(e.pointerId);
    this.draw();
  }

  private onPointerMove(e: PointerEvent): void {
    const d = this.drag;
    if (!d) {
      const hit = this.hit(this.point(e));
      this.canvas.style.cursor = hit?.kind === 'corner' ? (hit.corner % 2 === 0 ? 'nwse-resize' : 'nesw-resize') : hit?.kind === 'box' ? 'move' : 'crosshair';
      return;
    }
    const p = this.point(e);
    const g = this.o.boxes[d.index]!;
    if (d.kind === 'draw') {
      g.box = [Math.min(d.start[0], p[0]), Math.min(d.start[1], p[1]), Math.max(d.start[0], p[0]), Math.max(d.start[1], p[1])];
    } else if (d.kind === 'move') {
      const [x0, y0, x1, y1] = d.orig;
      const dx = Math.min(Math.max(p[0] - d.grab[0], -x0), 1 - x1);
      const dy = Math.min(Math.max(p[1] - d.grab[1], -y0), 1 - y1);
      g.box = [x0 + dx, y0 + dy, x1 + dx, y1 + dy];
    } else {
      const b: Box = [...d.orig];
      // corners 0..3 clockwise from top-left: which edges each one drags
      if (d.corner === 0 || d.corner === 3) b[0] = Math.min(p[0], b[2] - MIN_SIZE);
      else b[2] = Math.max(p[0], b[0] + MIN_SIZE);
      if (d.corner === 0 || d.corner === 1) b[1] = Math.min(p[1], b[3] - MIN_SIZE);
      else b[3] = Math.max(p[1], b[1] + MIN_SIZE);
      g.box = b;
    }
    this.draw();
    this.syncValues();
  }

  private onPointerUp(e: PointerEvent): void {
    const d = this.drag;
    this.drag = null;
    if (this.canvas.hasPointerCapture(e.pointerId)) this.canvas.releasePointerCapture(e.pointerId);
    if (!d) return;
    if (d.kind === 'draw') {
      const [x0, y0, x1, y1] = this.o.boxes[d.index]!.box;
      if (x1 - x0 < MIN_SIZE || y1 - y0 < MIN_SIZE) {
        // a click on empty canvas: no box, and nothing selected
        this.o.boxes.splice(d.index, 1);
        this.selected = -1;
        this.syncList(false);
        this.draw();
        return;
      }
      this.syncList(false);
      this.draw();
      this.o.onChange();
      this.o.announce(`Added ${this.describe(d.index)}. Type its phrase.`);
      // the next thing to do with a new box is to say what goes in it
      this.phraseInput(d.index)?.focus();
      return;
    }
    this.o.onChange();
    this.o.announce(this.describe(d.index));
  }

  private cancelDrag(): void {
    const d = this.drag;
    this.drag = null;
    if (!d) return;
    if (d.kind === 'draw') {
      this.o.boxes.splice(d.index, 1);
      this.selected = -1;
      this.syncList(false);
    } else {
      this.o.boxes[d.index]!.box = d.orig;
      this.syncValues();
    }
    this.draw();
  }

  // ---- keyboard -----------------------------------------------------------------------

  private onKey(e: KeyboardEvent): void {
    const boxes = this.o.boxes;
    if (e.key === 'n' || e.key === 'N' || e.key === 'Insert') {
      e.preventDefault();
      this.addBox(false);
      return;
    }
    if (e.key === ']' || e.key === '[') {
      e.preventDefault();
      if (boxes.length === 0) return this.o.announce('No boxes yet. Press N to add one.');
      const step = e.key === ']' ? 1 : -1;
      this.selected = this.selected < 0 ? (step > 0 ? 0 : boxes.length - 1) : (this.selected + step + boxes.length) % boxes.length;
      this.draw();
      this.o.announce(this.describe(this.selected));
      return;
    }
    if (this.selected < 0 || this.selected >= boxes.length) return;
    const g = boxes[this.selected]!;
    if (e.key === 'Delete' || e.key === 'Backspace') {
      e.preventDefault();
      this.remove(this.selected);
      return;
    }
    if (e.key === 'Enter') {
      e.preventDefault();
      this.phraseInput(this.selected)?.focus();
      return;
    }
    const arrows: Record<string, [number, number]> = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
    const dir = arrows[e.key];
    if (!dir) return;
    e.preventDefault();
    const step = e.altKey ? 0.05 : 0.01;
    const [x0, y0, x1, y1] = g.box;
    if (e.shiftKey) {
      // resize from the bottom-right corner, never below the minimum size
      g.box = [x0, y0, clamp01(Math.max(x1 + dir[0] * step, x0 + MIN_SIZE)), clamp01(Math.max(y1 + dir[1] * step, y0 + MIN_SIZE))];
    } else {
      const dx = Math.min(Math.max(dir[0] * step, -x0), 1 - x1);
      const dy = Math.min(Math.max(dir[1] * step, -y0), 1 - y1);
      g.box = [x0 + dx, y0 + dy, x1 + dx, y1 + dy];
    }
    this.draw();
    this.syncValues();
    this.o.onChange();
    this.o.announce(this.describe(this.selected));
  }

  // ---- list ---------------------------------------------------------------------------

  private addBox(focusPhrase = true): void {
    if (this.o.boxes.length >= this.o.maxBoxes) {
      this.o.announce(`${this.o.modelId} takes at most ${this.o.maxBoxes} boxes`);
      return;
    }
    // a new box steps down and right from the last one, so boxes added in a row do not hide each other
    const k = this.o.boxes.length;
    const off = (k % 4) * 0.1;
    this.o.boxes.push({ phrase: '', box: [0.1 + off, 0.1 + off, 0.5 + off, 0.5 + off] });
    this.selected = k;
    this.syncList(false);
    this.draw();
    this.o.onChange();
    this.o.announce(`Added ${this.describe(k)}.`);
    if (focusPhrase) this.phraseInput(k)?.focus();
  }

  private remove(index: number): void {
    const what = this.describe(index);
    this.o.boxes.splice(index, 1);
    this.selected = Math.min(this.selected, this.o.boxes.length - 1);
    this.syncList(false);
    this.draw();
    this.o.onChange();
    this.o.announce(`Removed ${what}.`);
  }

  private describe(i: number): string {
    const g = this.o.boxes[i];
    if (!g) return 'no box';
    const [x0, y0, x1, y1] = g.box;
    return `box ${i + 1}${g.phrase ? ` "${g.phrase}"` : ''}, from ${fmt(x0)}, ${fmt(y0)} to ${fmt(x1)}, ${fmt(y1)}`;
  }

  private phraseInput(i: number): HTMLInputElement | null {
    return this.list.querySelector<HTMLInputElement>(`[data-field="${this.o.apiField}[${i}].phrase"]`);
  }

  /** Rebuild the rows (the count changed) or, with `force`, build them the first time. */
  private syncList(force: boolean): void {
    if (!force && this.list.children.length === this.o.boxes.length) return this.syncValues();
    this.list.replaceChildren(
      ...this.o.boxes.map((g, i) => {
        const base = `${this.o.apiField}[${i}]`;
        const phrase = h('input', {
          attrs: { type: 'text', maxlength: 200, autocomplete: 'off', placeholder: 'what goes in this box' },
          props: { value: g.phrase },
          on: {
            input: () => {
              g.phrase = phrase.value;
              this.draw();
              this.o.onChange();
            },
            focus: () => {
              this.selected = i;
              this.draw();
            },
          },
        });
        const coords = (['left (x0)', 'top (y0)', 'right (x1)', 'bottom (y1)'] as const).map((label, k) => {
          const input = numberInput({ min: 0, max: 1, step: 0.01, value: fmt(g.box[k]!) });
          input.dataset.coord = String(k);
          input.addEventListener('input', () => {
            const v = Number(input.value);
            if (input.value === '' || !Number.isFinite(v)) return;
            g.box[k] = v;
            this.draw();
            this.o.onChange();
          });
          input.addEventListener('focus', () => {
            this.selected = i;
            this.draw();
          });
          return field(label, input, { class: 'coord' });
        });
        return h(
          'li',
          { attrs: { 'data-field': base } },
          h(
            'fieldset',
            { class: 'box-row' },
            h('legend', {}, h('span', { class: 'swatch', attrs: { 'aria-hidden': 'true' } }), `Box ${i + 1}`),
            field('Phrase', phrase, { apiField: `${base}.phrase` }),
            h('div', { class: 'coords', attrs: { 'data-field': `${base}.box`, role: 'group', 'aria-label': `Box ${i + 1} coordinates, 0 to 1` } }, ...coords),
            h('button', { class: 'link-button', attrs: { type: 'button' }, on: { click: () => this.remove(i) } }, `Remove box ${i + 1}`),
          ),
        );
      }),
    );
    this.list.querySelectorAll<HTMLElement>('.swatch').forEach((s, i) => (s.style.background = colorOf(i)));
    this.syncCapacity();
  }

  /** Coordinates typed or dragged: update the inputs nobody is typing in. */
  private syncValues(): void {
    this.list.querySelectorAll<HTMLInputElement>('input[data-coord]').forEach((input) => {
      const row = input.closest('li')!;
      const i = Array.prototype.indexOf.call(this.list.children, row);
      const v = this.o.boxes[i]?.box[Number(input.dataset.coord)];
      if (v !== undefined && document.activeElement !== input) input.value = fmt(v);
    });
    this.syncCapacity();
  }

  private syncCapacity(): void {
    const n = this.o.boxes.length;
    const max = this.o.maxBoxes;
    this.addButton.disabled = n >= max;
    this.capacity.textContent = `${n} of at most ${max} boxes.`;
  }

  // ---- drawing ------------------------------------------------------------------------

  draw(): void {
    const c = this.canvas;
    const rect = c.getBoundingClientRect();
    if (rect.width === 0) return;
    const dpr = window.devicePixelRatio || 1;
    const w = Math.round(rect.width * dpr);
    const hh = Math.round(rect.height * dpr);
    if (c.width !== w || c.height !== hh) {
      c.width = w;
      c.height = hh;
    }
    const ctx = c.getContext('2d');
    if (!ctx) return;
    const style = getComputedStyle(c);
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    const W = rect.width;
    const H = rect.height;
    ctx.clearRect(0, 0, W, H);
    ctx.fillStyle = style.getPropertyValue('--canvas-bg') || '#fafafa';
    ctx.fillRect(0, 0, W, H);
    // quarter lines help to place boxes by eye
    ctx.strokeStyle = style.getPropertyValue('--canvas-grid') || '#ddd';
    ctx.lineWidth = 1;
    for (const f of [0.25, 0.5, 0.75]) {
      ctx.beginPath();
      ctx.moveTo(Math.round(f * W) + 0.5, 0);
      ctx.lineTo(Math.round(f * W) + 0.5, H);
      ctx.moveTo(0, Math.round(f * H) + 0.5);
      ctx.lineTo(W, Math.round(f * H) + 0.5);
      ctx.stroke();
    }
    ctx.font = '600 12px system-ui, sans-serif';
    ctx.textBaseline = 'top';
    this.o.boxes.forEach((g, i) => {
      const [x0, y0, x1, y1] = g.box;
      const color = colorOf(i);
      const x = x0 * W;
      const y = y0 * H;
      const bw = (x1 - x0) * W;
      const bh = (y1 - y0) * H;
      ctx.fillStyle = `${color}22`;
      ctx.fillRect(x, y, bw, bh);
      ctx.strokeStyle = color;
      ctx.lineWidth = i === this.selected ? 3 : 2;
      ctx.setLineDash(g.phrase ? [] : [5, 4]);
      ctx.strokeRect(x, y, bw, bh);
      ctx.setLineDash([]);
      const label = g.phrase || `box ${i + 1} (no phrase)`;
      const tw = Math.min(ctx.measureText(label).width + 8, Math.max(bw, 40));
      ctx.fillStyle = color;
      ctx.fillRect(x, y, tw, 17);
      ctx.fillStyle = '#fff';
      ctx.save();
      ctx.beginPath();
      ctx.rect(x, y, tw, 17);
      ctx.clip();
      ctx.fillText(label, x + 4, y + 3);
      ctx.restore();
      if (i === this.selected) {
        for (const [cx, cy] of [[x, y], [x + bw, y], [x + bw, y + bh], [x, y + bh]] as const) {
          ctx.fillStyle = '#fff';
          ctx.fillRect(cx - 4, cy - 4, 8, 8);
          ctx.strokeStyle = color;
          ctx.lineWidth = 2;
          ctx.strokeRect(cx - 4, cy - 4, 8, 8);
        }
      }
    });
    if (this.o.boxes.length === 0) {
      ctx.fillStyle = style.getPropertyValue('--muted') || '#666';
      ctx.textAlign = 'center';
      ctx.fillText(document.activeElement === c ? 'Press N to add a box' : 'Drag to draw a box', W / 2, H / 2 - 6);
      ctx.textAlign = 'start';
    }
  }
}
