/**
 * Live previews in a terminal: each model's small PNG (a JobPreview frame) drawn with
 * half-block characters, two pixel rows per text row, in 24-bit or 256 colors, side by side
 * with the model's name above. Where the terminal shows no colors, `previewLine` says in one
 * line what a frame is.
 */
import { decode } from 'fast-png';
import type { JobPreview } from '../shared/client/client.ts';

export type ColorDepth = 'truecolor' | '256';

/** The lines of a frame's pictures, fitted into `columns` (each picture at most `maxSide` cells wide). */
export function renderPreview(p: JobPreview, opts: { columns: number; colors: ColorDepth; maxSide?: number }): string[] {
  const gap = 2;
  const n = p.models.length;
  if (n === 0) return [];
  const side = Math.max(4, Math.min(opts.maxSide ?? 32, Math.floor((opts.columns - gap * (n - 1)) / n)));
  const pictures = p.models.map((m) => ({ label: m.run === 'solo' ? `${m.id} (alone)` : m.id, px: fit(decodeDataUrl(m.png), side) }));
  const rows = Math.max(...pictures.map((q) => Math.ceil(q.px.height / 2)));
  const lines: string[] = [pictures.map((q) => q.label.slice(0, q.px.width).padEnd(q.px.width)).join(' '.repeat(gap))];
  for (let r = 0; r < rows; r++) {
    lines.push(
      pictures
        .map((q) => {
          let s = '';
          for (let x = 0; x < q.px.width; x++) {
            const top = q.px.at(x, 2 * r);
            const bottom = 2 * r + 1 < q.px.height ? q.px.at(x, 2 * r + 1) : top;
            s += `${fg(top, opts.colors)}${bg(bottom, opts.colors)}▀`;
          }
          return `${s}\x1b[0m`;
        })
        .join(' '.repeat(gap)),
    );
  }
  lines.push(previewCaption(p));
  return lines;
}

/** "step 4/20 aggregating, end of the window: the models just pulled together" */
export function previewCaption(p: JobPreview): string {
  const what = p.phase === 'solo' ? `running alone (${p.models.map((m) => m.id).join(', ')})` : p.phase.replace('_', ' ');
  const image = p.images > 1 ? ` image ${p.image}/${p.images}` : '';
  return `preview: step ${p.step}/${p.total} ${what}${image}${p.window_end ? ', end of the window: the models just pulled together' : ''}`;
}

/** One line for terminals without colors. */
export function previewLine(jobId: string, p: JobPreview): string {
  return `${jobId} ${previewCaption(p)} [${p.models.map((m) => `${m.id} ${m.width}×${m.height}`).join(', ')}; ${p.method}]`;
}

interface Pixels {
  width: number;
  height: number;
  at(x: number, y: number): [number, number, number];
}

function decodeDataUrl(url: string): Pixels {
  const b64 = url.slice(url.indexOf(',') + 1);
  const img = decode(Uint8Array.from(atob(b64), (c) => c.charCodeAt(0)));
  const ch = img.channels;
  const data = img.data;
  return {
    width: img.width,
    height: img.height,
    at: (x, y) => {
      const i = (y * img.width + x) * ch;
      return ch >= 3 ? [Number(data[i]), Number(data[i + 1]), Number(data[i + 2])] : [Number(data[i]), Number(data[i]), Number(data[i])];
    },
  };
}

/** Box-average down to at most `side` pixels wide and high. */
function fit(p: Pixels, side: number): Pixels {
  const f = Math.max(1, Math.ceil(Math.max(p.width, p.height) / side));
  if (f === 1) return p;
  const width = Math.floor(p.width / f);
  const height = Math.floor(p.height / f);
  return {
    width,
    height,
    at: (x, y) => {
      const sum = [0, 0, 0];
      for (let dy = 0; dy < f; dy++) for (let dx = 0; dx < f; dx++) p.at(x * f + dx, y * f + dy).forEach((v, c) => (sum[c]! += v));
      return sum.map((v) => Math.round(v / (f * f))) as [number, number, number];
    },
  };
}

const fg = (c: [number, number, number], d: ColorDepth) => (d === 'truecolor' ? `\x1b[38;2;${c[0]};${c[1]};${c[2]}m` : `\x1b[38;5;${ansi256(c)}m`);
const bg = (c: [number, number, number], d: ColorDepth) => (d === 'truecolor' ? `\x1b[48;2;${c[0]};${c[1]};${c[2]}m` : `\x1b[48;5;${ansi256(c)}m`);

/** The nearest color of xterm's 6×6×6 cube. */
function ansi256([r, g, b]: [number, number, number]): number {
  const q = (v: number) => (v < 48 ? 0 : v < 115 ? 1 : Math.min(5, Math.floor((v - 35) / 40)));
  return 16 + 36 * q(r) + 6 * q(g) + q(b);
}
