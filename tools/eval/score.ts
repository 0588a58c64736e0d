/**
 * The shapes scorer, ported line by line from tools/shapes/world.py (detect,
 * classify_style, score) so `npm run eval` scores engine images exactly as the Python
 * control table scores reference images. test/scorer-parity.test.ts checks the two agree.
 * Fixed, and never tuned toward a method.
 */
export const SHAPES = ['circle', 'square', 'triangle'] as const;
export const COLORS: Record<string, [number, number, number]> = {
  red: [0.88, 0.16, 0.16],
  yellow: [0.92, 0.82, 0.14],
  green: [0.16, 0.72, 0.26],
  cyan: [0.14, 0.76, 0.82],
  blue: [0.2, 0.32, 0.92],
  purple: [0.64, 0.24, 0.86],
};

export interface SceneObject {
  shape: string;
  color: string;
  box: [number, number, number, number];
}
export interface Scene {
  objects: SceneObject[];
  background: { style: string };
}
export interface Detected {
  box: [number, number, number, number];
  color: string;
  shape: string;
  area: number;
}
export interface Score {
  iou: number;
  color: number;
  shape: number;
  color_in_box: number;
  style: number;
  count: number;
  all: number;
  detected: number;
  style_pred: string;
}

/** Image as float planes in [0, 1]: r, g, b each H*W, row-major. */
export interface Planes {
  width: number;
  height: number;
  r: Float64Array;
  g: Float64Array;
  b: Float64Array;
}

export function planesFromRgb(data: Uint8Array, width: number, height: number): Planes {
  const n = width * height;
  const r = new Float64Array(n), g = new Float64Array(n), b = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    r[i] = data[i * 3]! / 255;
    g[i] = data[i * 3 + 1]! / 255;
    b[i] = data[i * 3 + 2]! / 255;
  }
  return { width, height, r, g, b };
}

function hsv(r: number, g: number, b: number): [number, number, number] {
  const mx = Math.max(r, g, b);
  const mn = Math.min(r, g, b);
  const d = mx - mn;
  let h = 0;
  if (d > 1e-6) {
    if (mx === r) h = mod((g - b) / d, 6);
    else if (mx === g) h = (b - r) / d + 2;
    else h = (r - g) / d + 4;
  }
  return [h * 60, mx > 1e-6 ? d / Math.max(mx, 1e-6) : 0, mx];
}

const mod = (a: number, m: number) => a - Math.floor(a / m) * m;

const HUES: [string, number][] = Object.entries(COLORS).map(([name, [r, g, b]]) => [name, hsv(r, g, b)[0]]);

function hueToColor(h: number): string {
  const dist = (a: number, b: number) => {
    const d = mod(Math.abs(a - b), 360);
    return Math.min(d, 360 - d);
  };
  let best = HUES[0]!;
  for (const e of HUES) if (dist(h, e[1]) < dist(h, best[1])) best = e;
  return best[0];
}

function shapeMask(shape: string, h: number, w: number): Uint8Array {
  const m = new Uint8Array(h * w);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const cy = y + 0.5, cx = x + 0.5;
      let inside: boolean;
      if (shape === 'square') inside = true;
      else if (shape === 'circle') inside = ((cx - w / 2) / (w / 2)) ** 2 + ((cy - h / 2) / (h / 2)) ** 2 <= 1;
      else inside = Math.abs(cx - w / 2) <= (cy / h) * (w / 2);
      m[y * w + x] = inside ? 1 : 0;
    }
  }
  return m;
}

function classifyShape(comp: Uint8Array, h: number, w: number): string {
  let best: string = SHAPES[0];
  let bestIou = -1;
  for (const s of SHAPES) {
    const t = shapeMask(s, h, w);
    let inter = 0, uni = 0;
    for (let i = 0; i < comp.length; i++) {
      inter += comp[i]! & t[i]!;
      uni += comp[i]! | t[i]!;
    }
    const iou = inter / Math.max(uni, 1);
    if (iou > bestIou) {
      bestIou = iou;
      best = s;
    }
  }
  return best;
}

export function detect(img: Planes): { objects: Detected[]; fg: Uint8Array } {
  const { width: W, height: H } = img;
  const n = W * H;
  const hue = new Float64Array(n);
  const fg = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const [h, s, v] = hsv(img.r[i]!, img.g[i]!, img.b[i]!);
    hue[i] = h;
    fg[i] = s > 0.45 && v > 0.3 ? 1 : 0;
  }
  const seen = new Uint8Array(n);
  const objects: Detected[] = [];
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      if (!fg[y * W + x] || seen[y * W + x]) continue;
      const ys: number[] = [], xs: number[] = [];
      const stack: [number, number][] = [[y, x]];
      seen[y * W + x] = 1;
      while (stack.length) {
        const [cy, cx] = stack.pop()!;
        ys.push(cy);
        xs.push(cx);
        for (const [ny, nx] of [[cy + 1, cx], [cy - 1, cx], [cy, cx + 1], [cy, cx - 1]] as const) {
          if (ny >= 0 && ny < H && nx >= 0 && nx < W && fg[ny * W + nx] && !seen[ny * W + nx]) {
            seen[ny * W + nx] = 1;
            stack.push([ny, nx]);
          }
        }
      }
      if (ys.length < 8) continue;
      const x0 = Math.min(...xs), x1 = Math.max(...xs) + 1, y0 = Math.min(...ys), y1 = Math.max(...ys) + 1;
      const cw = x1 - x0, ch = y1 - y0;
      const comp = new Uint8Array(cw * ch);
      ys.forEach((yy, i) => (comp[(yy - y0) * cw + (xs[i]! - x0)] = 1));
      let sn = 0, cs = 0;
      ys.forEach((yy, i) => {
        const a = (hue[yy * W + xs[i]!]! * Math.PI) / 180;
        sn += Math.sin(a);
        cs += Math.cos(a);
      });
      const h = mod((Math.atan2(sn / ys.length, cs / ys.length) * 180) / Math.PI + 360, 360);
      objects.push({ box: [x0 / W, y0 / H, x1 / W, y1 / H], color: hueToColor(h), shape: classifyShape(comp, ch, cw), area: ys.length });
    }
  }
  return { objects, fg };
}

export function classifyStyle(img: Planes, fg: Uint8Array): string {
  const { width: W, height: H } = img;
  const n = W * H;
  const gray = new Float64Array(n);
  for (let i = 0; i < n; i++) gray[i] = (img.r[i]! + img.g[i]! + img.b[i]!) / 3;
  // one-pixel dilation with wrap-around, as np.roll does
  const ok = new Uint8Array(n);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      let near = 0;
      for (let dy = -1; dy <= 1 && !near; dy++) for (let dx = -1; dx <= 1 && !near; dx++) near = fg[mod(y - dy, H) * W + mod(x - dx, W)]!;
      ok[y * W + x] = near ? 0 : 1;
    }
  }
  const idx: number[] = [];
  for (let i = 0; i < n; i++) if (ok[i]) idx.push(i);
  if (idx.length < 0.2 * n) return 'solid';
  const v = idx.map((i) => gray[i]!);
  const mean = v.reduce((s, a) => s + a, 0) / v.length;
  const variance = v.reduce((s, a) => s + (a - mean) ** 2, 0) / v.length;
  if (Math.sqrt(variance) < 0.035) return 'solid';
  // least-squares plane g ~ c0 + c1 x/W + c2 y/H
  const rows = idx.map((i) => [1, (i % W) / W, Math.floor(i / W) / H]);
  const ata = [0, 0, 0, 0, 0, 0, 0, 0, 0];
  const atb = [0, 0, 0];
  rows.forEach((r, k) => {
    for (let a = 0; a < 3; a++) {
      atb[a]! += r[a]! * v[k]!;
      for (let b = 0; b < 3; b++) ata[a * 3 + b]! += r[a]! * r[b]!;
    }
  });
  const coef = solve3(ata, atb);
  const resid = v.map((val, k) => val - (coef[0]! + coef[1]! * rows[k]![1]! + coef[2]! * rows[k]![2]!));
  const rMean = resid.reduce((s, a) => s + a, 0) / resid.length;
  const rVar = resid.reduce((s, a) => s + (a - rMean) ** 2, 0) / resid.length;
  if (1 - rVar / Math.max(variance, 1e-9) > 0.85) return 'gradient';
  const rowMean = new Float64Array(H).fill(NaN);
  for (let y = 0; y < H; y++) {
    let s = 0, c = 0;
    for (let x = 0; x < W; x++) if (ok[y * W + x]) {
      s += gray[y * W + x]!;
      c++;
    }
    if (c) rowMean[y] = s / c;
  }
  const within = idx.map((i, k) => v[k]! - (Number.isNaN(rowMean[Math.floor(i / W)]!) ? mean : rowMean[Math.floor(i / W)]!));
  const wMean = within.reduce((s, a) => s + a, 0) / within.length;
  const wVar = within.reduce((s, a) => s + (a - wMean) ** 2, 0) / within.length;
  if (1 - wVar / Math.max(variance, 1e-9) > 0.75) return 'stripes';
  return 'dots';
}

function solve3(m: number[], b: number[]): number[] {
  const a = [[m[0]!, m[1]!, m[2]!, b[0]!], [m[3]!, m[4]!, m[5]!, b[1]!], [m[6]!, m[7]!, m[8]!, b[2]!]];
  for (let c = 0; c < 3; c++) {
    let p = c;
    for (let r = c + 1; r < 3; r++) if (Math.abs(a[r]![c]!) > Math.abs(a[p]![c]!)) p = r;
    [a[c], a[p]] = [a[p]!, a[c]!];
    for (let r = 0; r < 3; r++) {
      if (r === c) continue;
      const f = a[r]![c]! / a[c]![c]!;
      for (let k = c; k < 4; k++) a[r]![k]! -= f * a[c]![k]!;
    }
  }
  return [a[0]![3]! / a[0]![0]!, a[1]![3]! / a[1]![1]!, a[2]![3]! / a[2]![2]!];
}

function iou(a: readonly number[], b: readonly number[]): number {
  const ix = Math.max(0, Math.min(a[2]!, b[2]!) - Math.max(a[0]!, b[0]!));
  const iy = Math.max(0, Math.min(a[3]!, b[3]!) - Math.max(a[1]!, b[1]!));
  const inter = ix * iy;
  const u = (a[2]! - a[0]!) * (a[3]! - a[1]!) + (b[2]! - b[0]!) * (b[3]! - b[1]!) - inter;
  return u > 0 ? inter / u : 0;
}

/** permutations of length n drawn from idx (with repetition of null allowed), in itertools order */
function* permutations<T>(pool: T[], n: number): Generator<T[]> {
  if (n === 0) {
    yield [];
    return;
  }
  for (let i = 0; i < pool.length; i++) {
    const rest = [...pool.slice(0, i), ...pool.slice(i + 1)];
    for (const p of permutations(rest, n - 1)) yield [pool[i]!, ...p];
  }
}

export function score(img: Planes, scene: Scene): Score {
  const { objects: det, fg } = detect(img);
  const req = scene.objects;
  const n = req.length;
  const pool: (number | null)[] = [...det.map((_, i) => i), ...Array<null>(n).fill(null)];
  let best = -1;
  let assign: (number | null)[] = Array<null>(n).fill(null);
  for (const perm of permutations(pool, n)) {
    if (perm.some((p, i) => p !== null && perm.indexOf(p) !== i)) continue;
    const s = perm.reduce<number>((acc, p, i) => acc + (p !== null ? iou(req[i]!.box, det[p]!.box) : 0), 0);
    if (s > best) {
      best = s;
      assign = perm;
    }
  }
  const ious = assign.map((p, i) => (p !== null ? iou(req[i]!.box, det[p]!.box) : 0));
  const hits = (key: 'color' | 'shape') => {
    const left = det.map((d) => d[key]);
    let h = 0;
    for (const r of req) {
      const at = left.indexOf(r[key]);
      if (at >= 0) {
        left.splice(at, 1);
        h++;
      }
    }
    return h / n;
  };
  const style = classifyStyle(img, fg);
  const inBox = assign.map((p, i) => p !== null && ious[i]! >= 0.5 && det[p]!.color === req[i]!.color && det[p]!.shape === req[i]!.shape);
  const colorInBox = assign.map((p, i) => p !== null && ious[i]! >= 0.5 && det[p]!.color === req[i]!.color);
  const countOk = det.length === n;
  const styleOk = style === scene.background.style;
  return {
    iou: ious.reduce((s, v) => s + v, 0) / n,
    color: hits('color'),
    shape: hits('shape'),
    color_in_box: colorInBox.filter(Boolean).length / n,
    style: styleOk ? 1 : 0,
    count: countOk ? 1 : 0,
    all: countOk && styleOk && inBox.every(Boolean) ? 1 : 0,
    detected: det.length,
    style_pred: style,
  };
}
