"""The synthetic world of the "shapes" family: scenes, captions, rendering and scoring.

A scene is 1-3 objects (shape, color, box) on a grayscale background with a style.
Objects are saturated colors and the background is gray, so a generated image can be
scored analytically: saturation separates objects from background, hue names the
color, the fill ratio of a component inside its bounding box names the shape, and the
background's structure names the style. The scorer is fixed here and validated on
ground-truth renders (see scorer_check in table.py); it is never tuned toward a method.
"""
import hashlib
import math
import numpy as np
import torch
import torch.nn.functional as F

SIZE = 32                      # image side in pixels
MAX_OBJECTS = 3
SHAPES = ["circle", "square", "triangle"]
COLORS = {                      # name -> RGB in [0, 1]; hues ~0, 55, 130, 185, 228, 280 degrees
    "red": (0.88, 0.16, 0.16),
    "yellow": (0.92, 0.82, 0.14),
    "green": (0.16, 0.72, 0.26),
    "cyan": (0.14, 0.76, 0.82),
    "blue": (0.20, 0.32, 0.92),
    "purple": (0.64, 0.24, 0.86),
}
COLOR_NAMES = list(COLORS)
STYLES = ["solid", "stripes", "dots", "gradient"]
PERIOD = 8                     # stripes and dots period in pixels
WORDS = ["a", "and", ","] + COLOR_NAMES + SHAPES


# --------------------------------------------------------------------------- scenes
def combo_key(objects, style):
    """The combination a scene belongs to: its multiset of (color, shape) and its style.
    Positions are continuous and never repeat, so the held-out split is on this key."""
    parts = sorted(f"{o['color']}-{o['shape']}" for o in objects)
    return "|".join(parts) + "/" + style


def is_held_out(objects, style):
    """About 12% of combinations are never seen in training (deterministic hash)."""
    h = hashlib.sha256(combo_key(objects, style).encode()).digest()
    return h[0] < 31


def sample_boxes(rng, n, tries=2000):
    """n non-overlapping boxes (pixel xyxy, float), at least two pixels apart; fewer
    objects get larger boxes so three still fit in 32x32."""
    min_side, max_side = 9.0, {1: 15.0, 2: 13.0, 3: 12.0}[n]
    for _ in range(tries):
        boxes = []
        for _ in range(n):
            s = rng.uniform(min_side, max_side)
            w = s * rng.uniform(0.88, 1.12)
            h = s * rng.uniform(0.88, 1.12)
            x0 = rng.uniform(1.0, SIZE - 1.0 - w)
            y0 = rng.uniform(1.0, SIZE - 1.0 - h)
            b = (x0, y0, x0 + w, y0 + h)
            if all(b[0] > o[2] + 2 or o[0] > b[2] + 2 or b[1] > o[3] + 2 or o[1] > b[3] + 2 for o in boxes):
                boxes.append(b)
            else:
                break
        if len(boxes) == n:
            return boxes
    raise RuntimeError("could not place boxes")


def sample_style_params(rng, style):
    """Background parameters; two gray levels far enough apart to be seen."""
    a = rng.uniform(0.2, 0.8)
    if style == "solid":
        return {"style": style, "a": a}
    gap = rng.uniform(0.45, 0.6) if style == "gradient" else rng.uniform(0.3, 0.5)
    b = a + gap if a + gap <= 0.85 else a - gap
    if b < 0.15:
        a, b = 0.15, 0.15 + gap
    p = {"style": style, "a": a, "b": b}
    if style == "stripes":
        p["phase"] = int(rng.integers(0, PERIOD))
    elif style == "dots":
        p["ox"], p["oy"] = int(rng.integers(0, PERIOD)), int(rng.integers(0, PERIOD))
    elif style == "gradient":
        p["axis"] = int(rng.integers(0, 2))
    return p


def sample_scene(rng, split="train", n=None, style=None):
    """A random scene; split 'train' never returns a held-out combination, 'heldout' only those."""
    while True:
        k = n or int(rng.integers(1, MAX_OBJECTS + 1))
        st = style or STYLES[int(rng.integers(0, len(STYLES)))]
        objs = [{"shape": SHAPES[int(rng.integers(0, len(SHAPES)))],
                 "color": COLOR_NAMES[int(rng.integers(0, len(COLOR_NAMES)))]} for _ in range(k)]
        if is_held_out(objs, st) == (split == "heldout"):
            break
    for o, b in zip(objs, sample_boxes(rng, k)):
        o["box"] = [v / SIZE for v in b]        # normalized xyxy
    return {"objects": objs, "background": sample_style_params(rng, st)}


def join_phrases(phrases):
    if len(phrases) == 1:
        return "a " + phrases[0]
    return ", ".join("a " + p for p in phrases[:-1]) + " and a " + phrases[-1]


def caption(scene, colors=True, rng=None):
    """'a red circle and a blue square'; the order is shuffled when rng is given so the
    word order never encodes position."""
    objs = list(scene["objects"])
    if rng is not None:
        objs = [objs[i] for i in rng.permutation(len(objs))]
    return join_phrases([(o["color"] + " " if colors else "") + o["shape"] for o in objs])


# -------------------------------------------------------------------------- rendering
def _grid(ss):
    n = SIZE * ss
    c = (torch.arange(n, dtype=torch.float32) + 0.5) / ss
    return c[None, :].expand(n, n), c[:, None].expand(n, n)   # x, y in pixel units


def render(scenes, ss=2):
    """Scenes -> float tensor [B, 3, 32, 32] in [0, 1], anti-aliased by supersampling.
    Vectorized over the batch: every style and shape is drawn for every scene and the
    right one selected, which is cheaper than a Python loop per image."""
    B = len(scenes)
    X, Y = _grid(ss)
    X, Y = X[None], Y[None]                                      # [1, n, n]

    def col(key, default=0.0):
        return torch.tensor([float(sc["background"].get(key, default)) for sc in scenes])[:, None, None]

    a, b = col("a"), col("b")
    style = torch.tensor([STYLES.index(sc["background"]["style"]) for sc in scenes])[:, None, None]
    stripes = torch.where(((torch.floor(Y) + col("phase")) % PERIOD) < PERIOD / 2, b, a)
    dx = (X - col("ox")) % PERIOD - PERIOD / 2
    dy = (Y - col("oy")) % PERIOD - PERIOD / 2
    dots = torch.where(dx * dx + dy * dy <= 1.9 ** 2, b, a)
    u = torch.where(col("axis") == 0, X, Y) / SIZE
    gradient = a + (b - a) * u
    solid = a.expand_as(gradient)
    g = torch.stack([solid, stripes, dots, gradient])            # [4, B, n, n]
    g = torch.gather(g, 0, style[None].expand(1, B, *g.shape[2:]))[0]
    img = g[:, None].repeat(1, 3, 1, 1)
    for j in range(MAX_OBJECTS):
        present = torch.tensor([len(sc["objects"]) > j for sc in scenes])
        if not present.any():
            continue
        objs = [sc["objects"][j] if len(sc["objects"]) > j else {"box": [0, 0, 0, 0], "shape": "square", "color": "red"}
                for sc in scenes]
        x0, y0, x1, y1 = [torch.tensor([o["box"][i] * SIZE for o in objs])[:, None, None] for i in range(4)]
        cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
        square = (X >= x0) & (X <= x1) & (Y >= y0) & (Y <= y1)
        circle = ((X - cx) / rx.clamp(min=1e-6)) ** 2 + ((Y - cy) / ry.clamp(min=1e-6)) ** 2 <= 1.0
        frac = (Y - y0) / (y1 - y0).clamp(min=1e-6)
        triangle = (Y >= y0) & (Y <= y1) & ((X - cx).abs() <= frac * rx)
        shape = torch.tensor([SHAPES.index(o["shape"]) for o in objs])[:, None, None]
        m = torch.where(shape == 0, circle, torch.where(shape == 1, square, triangle)) & present[:, None, None]
        rgb = torch.tensor([COLORS[o["color"]] for o in objs])[:, :, None, None]   # [B, 3, 1, 1]
        img = torch.where(m[:, None], rgb.expand_as(img), img)
    return F.avg_pool2d(img, ss)


def to_model(x01):
    return x01 * 2.0 - 1.0


def from_model(x):
    return ((x + 1.0) / 2.0).clamp(0.0, 1.0)


# --------------------------------------------------------------------------- scoring
def _rgb_to_hsv(img):
    mx, mn = img.max(axis=0), img.min(axis=0)
    d = mx - mn
    r, g, b = img
    h = np.zeros_like(mx)
    nz = d > 1e-6
    rm = nz & (mx == r)
    gm = nz & (mx == g) & ~rm
    bm = nz & ~rm & ~gm
    h[rm] = ((g - b)[rm] / d[rm]) % 6
    h[gm] = (b - r)[gm] / d[gm] + 2
    h[bm] = (r - g)[bm] / d[bm] + 4
    return h * 60.0, np.where(mx > 1e-6, d / np.maximum(mx, 1e-6), 0.0), mx


_HUES = {name: _rgb_to_hsv(np.array(rgb, dtype=np.float64).reshape(3, 1, 1))[0].item()
         for name, rgb in COLORS.items()}


def hue_to_color(h):
    def dist(a, b):
        d = abs(a - b) % 360
        return min(d, 360 - d)
    return min(_HUES, key=lambda n: dist(h, _HUES[n]))


def _components(mask):
    """4-connected components of a boolean HxW mask -> list of (ys, xs) arrays."""
    H, W = mask.shape
    seen = np.zeros_like(mask, dtype=bool)
    comps = []
    for y in range(H):
        for x in range(W):
            if mask[y, x] and not seen[y, x]:
                stack, ys, xs = [(y, x)], [], []
                seen[y, x] = True
                while stack:
                    cy, cx = stack.pop()
                    ys.append(cy)
                    xs.append(cx)
                    for ny, nx in ((cy + 1, cx), (cy - 1, cx), (cy, cx + 1), (cy, cx - 1)):
                        if 0 <= ny < H and 0 <= nx < W and mask[ny, nx] and not seen[ny, nx]:
                            seen[ny, nx] = True
                            stack.append((ny, nx))
                comps.append((np.array(ys), np.array(xs)))
    return comps


def shape_mask(shape, h, w):
    """The shape inscribed in an h x w pixel box, sampled at pixel centres."""
    y, x = np.mgrid[0:h, 0:w] + 0.5
    if shape == "square":
        return np.ones((h, w), dtype=bool)
    if shape == "circle":
        return ((x - w / 2) / (w / 2)) ** 2 + ((y - h / 2) / (h / 2)) ** 2 <= 1.0
    return np.abs(x - w / 2) <= (y / h) * w / 2


def classify_shape(comp):
    """The shape whose template, drawn in the component's bounding box, overlaps it best."""
    def iou(a, b):
        return (a & b).sum() / max((a | b).sum(), 1)
    return max(SHAPES, key=lambda s: iou(comp, shape_mask(s, *comp.shape)))


def detect(img):
    """img: float [3, H, W] in [0, 1] -> (objects, foreground mask). Each object: box
    (normalized xyxy of the component's pixel extent), color, shape."""
    hue, sat, val = _rgb_to_hsv(img.astype(np.float64))
    fg = (sat > 0.45) & (val > 0.3)
    objs = []
    for ys, xs in _components(fg):
        if len(ys) < 8:
            continue
        x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
        comp = np.zeros((y1 - y0, x1 - x0), dtype=bool)
        comp[ys - y0, xs - x0] = True
        shape = classify_shape(comp)
        # circular mean of hue over the component
        ang = np.deg2rad(hue[ys, xs])
        h = (np.rad2deg(math.atan2(np.sin(ang).mean(), np.cos(ang).mean())) + 360) % 360
        objs.append({"box": [x0 / img.shape[2], y0 / img.shape[1], x1 / img.shape[2], y1 / img.shape[1]],
                     "color": hue_to_color(h), "shape": shape, "area": int(len(ys))})
    return objs, fg


def classify_style(img, fg):
    """Background style from gray pixels away from objects."""
    gray = img.mean(axis=0)
    H, W = gray.shape
    near = fg.copy()
    for dy in (-1, 0, 1):                         # dilate the object mask by one pixel
        for dx in (-1, 0, 1):
            near |= np.roll(np.roll(fg, dy, 0), dx, 1)
    ok = ~near
    if ok.sum() < 0.2 * H * W:
        return "solid"  # nothing left to judge; counts as wrong for any other style
    v = gray[ok]
    if v.std() < 0.035:
        return "solid"
    yy, xx = np.nonzero(ok)
    A = np.stack([np.ones_like(xx, dtype=np.float64), xx / W, yy / H], axis=1)
    coef, *_ = np.linalg.lstsq(A, v, rcond=None)
    resid = v - A @ coef
    if 1.0 - resid.var() / max(v.var(), 1e-9) > 0.85:
        return "gradient"
    # stripes: the variation is explained by the row alone
    row_mean = np.array([gray[y][ok[y]].mean() if ok[y].any() else np.nan for y in range(H)])
    rm = row_mean[yy]
    within = v - np.where(np.isnan(rm), v.mean(), rm)
    if 1.0 - within.var() / max(v.var(), 1e-9) > 0.75:
        return "stripes"
    return "dots"


def score(img, scene):
    """img: float [3, 32, 32] in [0, 1]; scene: the requested scene. Returns metrics."""
    det, fg = detect(img)
    req = scene["objects"]
    n = len(req)

    def iou(a, b):
        ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = ix * iy
        u = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
        return inter / u if u > 0 else 0.0

    # best assignment of requested boxes to detected components (n <= 3: brute force)
    import itertools
    best, best_assign = -1.0, [None] * n
    idx = list(range(len(det))) + [None] * n
    for perm in itertools.permutations(idx, n):
        if any(p is not None and perm.count(p) > 1 for p in perm):
            continue
        s = sum(iou(r["box"], det[p]["box"]) if p is not None else 0.0 for r, p in zip(req, perm))
        if s > best:
            best, best_assign = s, list(perm)
    ious = [iou(r["box"], det[p]["box"]) if p is not None else 0.0 for r, p in zip(req, best_assign)]

    def multiset_hits(key):
        pool = [d[key] for d in det]
        hits = 0
        for r in req:
            if r[key] in pool:
                pool.remove(r[key])
                hits += 1
        return hits / n

    style = classify_style(img, fg)
    in_box = [p is not None and ious[i] >= 0.5 and det[p]["color"] == req[i]["color"]
              and det[p]["shape"] == req[i]["shape"] for i, p in enumerate(best_assign)]
    count_ok = len(det) == n
    style_ok = style == scene["background"]["style"]
    return {
        "iou": float(np.mean(ious)),
        "color": multiset_hits("color"),
        "shape": multiset_hits("shape"),
        "color_in_box": float(np.mean([p is not None and ious[i] >= 0.5 and det[p]["color"] == req[i]["color"]
                                       for i, p in enumerate(best_assign)])),
        "style": float(style_ok),
        "count": float(count_ok),
        "all": float(count_ok and style_ok and all(in_box)),
        "detected": len(det),
        "style_pred": style,
    }
