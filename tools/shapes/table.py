"""The fine-grained control table: does aggregating models give control that no single
model has? Samples held-out combinations (never seen in training) with the PyTorch
reference of AMDM and scores every image analytically (world.score).

    /usr/bin/python3 tools/shapes/table.py [--n 200] [--threads 1] [--reuse]

Writes tools/shapes/heldout.json (the held-out set, also read by `npm run eval`),
docs/control-table.generated.md and docs/control-table.json. The "best on validation"
rows are chosen by search.py on a separate validation set of held-out combinations
(docs/control-table-search.json), never on the reported set, and the scorer is fixed in
world.py and checked on ground-truth renders first.
"""
import argparse
import base64
import io
import itertools
import json
import os
import sys
import time

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import world  # noqa: E402
from family import Family, to_uint8  # noqa: E402
from noise import latent_noise  # noqa: E402
from reference import amdm, official_weights  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
HELDOUT = os.path.join(HERE, "heldout.json")
LATENT_NORM_RATIO = 16.0 / 128.0   # ||x|| of a 4x8x8 latent vs the official 4x64x64
GUIDANCE = 7.5
IP_SCALE = 0.8
TABLE_JSON = os.path.join(REPO, "docs", "control-table.json")
METRIC_KEYS = ("iou", "color", "shape", "color_in_box", "style", "count", "all")


def config_key(cfg):
    """A row's configuration as a comparable string (tuples as lists, numbers as floats)."""
    c = {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()}
    c["clamp"] = bool(c.get("clamp", False))
    for k in ("weights", "p"):
        c[k] = [float(v) for v in c[k]]
    return json.dumps(c, sort_keys=True)


VALIDATION = 96   # the validation set of search.py (build_items(96, seed=777, first_seed=500000))


def png_b64(img_u8):
    buf = io.BytesIO()
    Image.fromarray(img_u8).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def png_decode(b64):
    return np.array(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB"))


def build_items(n, seed, first_seed):
    """Held-out scenes with their prompts, grounding and a style reference that shares
    only the background (its objects are drawn afresh)."""
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        sc = world.sample_scene(rng, split="heldout")
        ref = {"objects": world.sample_scene(rng)["objects"], "background": sc["background"]}
        ref_u8 = to_uint8(world.render([ref])[0])
        items.append({
            "seed": first_seed + i,
            "scene": sc,
            "base_prompt": world.caption(sc, True),
            "layout_prompt": world.caption(sc, False),
            "grounding": [{"phrase": o["shape"], "box": o["box"]} for o in sc["objects"]],
            "reference_png": png_b64(ref_u8),
        })
    return items


def model_items(kind, items):
    out = []
    for it in items:
        if kind == "base":
            out.append({"prompt": it["base_prompt"]})
        elif kind == "layout":
            out.append({"prompt": it["layout_prompt"], "grounding": it["grounding"]})
        else:   # style gets the caption without colors; captioned_style, trained with them, the full caption
            prompt = it["base_prompt"] if kind == "captioned_style" else it["layout_prompt"]
            out.append({"prompt": prompt, "reference": png_decode(it["reference_png"]), "ip_scale": IP_SCALE})
    return out


def run(fam, items, kinds, steps, weights, p, window, clamp=False, schedule=None):
    """Batched reference AMDM over all items; returns uint8 images of the base model. The
    auxiliaries stop after the window (the base image is bit-identical, see reference.amdm)."""
    models = [fam.conditioned(k, model_items(k, items), GUIDANCE) for k in kinds]
    noises = [torch.cat([latent_noise(it["seed"], 0, m, (1, 4, 8, 8)) for it in items]) for m in range(len(kinds))]
    final, _ = amdm(models, noises, weights, p, tuple(window), steps, clamp=clamp, schedule=schedule,
                    base_only_after_window=True)
    imgs = fam.decode(final[0])
    return [to_uint8(im) for im in imgs]


def score_images(images, items):
    keys = ["iou", "color", "shape", "color_in_box", "style", "count", "all"]
    acc = {k: [] for k in keys}
    for img, it in zip(images, items):
        s = world.score(img.astype(np.float64).transpose(2, 0, 1) / 255.0, it["scene"])
        for k in keys:
            acc[k].append(s[k])
    return {k: float(np.mean(v)) for k, v in acc.items()}


def row_configs():
    s = LATENT_NORM_RATIO
    w2 = official_weights(2, omega=0.5)
    w3 = official_weights(3, omega1=0.47, omega2=0.5)
    return [
        ("base alone", dict(kinds=["base"], steps=20, weights=[1.0], p=[0.0], window=(1, 3))),
        ("layout alone", dict(kinds=["layout"], steps=20, weights=[1.0], p=[0.0], window=(1, 3))),
        ("style alone", dict(kinds=["style"], steps=20, weights=[1.0], p=[0.0], window=(1, 3))),
        ("captioned style alone (style model trained with colors, full caption)",
         dict(kinds=["captioned_style"], steps=20, weights=[1.0], p=[0.0], window=(1, 3))),
        ("AMDM base+layout, official (ω 0.5, 20 steps, window 1–3, p 55/45 literal)",
         dict(kinds=["base", "layout"], steps=20, weights=w2, p=[55.0, 45.0], window=(1, 3))),
        ("AMDM base+layout, official with p scaled to our latent norm (p 6.9/5.6)",
         dict(kinds=["base", "layout"], steps=20, weights=w2, p=[55.0 * s, 45.0 * s], window=(1, 3))),
        ("AMDM base+layout+style, official (ω1 0.47, ω2 0.5, 10 steps, window 1–3, p 45/40/35 literal)",
         dict(kinds=["base", "layout", "style"], steps=10, weights=w3, p=[45.0, 40.0, 35.0], window=(1, 3))),
        ("AMDM base+layout+style, official with p scaled (p 5.6/5.0/4.4)",
         dict(kinds=["base", "layout", "style"], steps=10, weights=w3, p=[45.0 * s, 40.0 * s, 35.0 * s], window=(1, 3))),
        ("window ablation base+layout: early steps 1–3 (p scaled)",
         dict(kinds=["base", "layout"], steps=20, weights=w2, p=[55.0 * s, 45.0 * s], window=(1, 3))),
        ("window ablation base+layout: late steps 15–17 (p scaled)",
         dict(kinds=["base", "layout"], steps=20, weights=w2, p=[55.0 * s, 45.0 * s], window=(15, 17))),
        ("window ablation base+layout: every step 1–19 (p scaled)",
         dict(kinds=["base", "layout"], steps=20, weights=w2, p=[55.0 * s, 45.0 * s], window=(1, 19))),
        # the best settings of the first grid (ω, p scale, window; caption base only)
        ("AMDM base+layout, best on validation, first grid (ω 0.5, p × 1/8, window 1–8, 20 steps)",
         dict(kinds=["base", "layout"], steps=20, weights=w2, p=[55.0 * 0.125, 45.0 * 0.125], window=(1, 8))),
        ("AMDM base+layout+style, best on validation, first grid (ω1 0.47, ω2 0.5, p × 1/16, window 1–3, 10 steps)",
         dict(kinds=["base", "layout", "style"], steps=10, weights=w3, p=[45.0 / 16, 40.0 / 16, 35.0 / 16], window=(1, 3))),
    ]


NAMES = {"base": "caption", "layout": "layout", "style": "style", "captioned_style": "captioned style"}


def frac(v):
    """1/16 rather than 0.0625 for the p scales of the grid."""
    for d in (1, 2, 4, 8, 16, 32):
        if abs(v * d - round(v * d)) < 1e-9:
            return f"{round(v * d)}/{d}" if d > 1 else f"{round(v * d)}"
    return f"{v:g}"


def describe(st):
    """A setting of the validation grid (search.py) in words."""
    kinds, prm = st["kinds"], st["params"]
    who = f"{NAMES[kinds[0]]} base + " + " + ".join(NAMES[k] for k in kinds[1:])
    parts = []
    if prm.get("norm") == "phased":
        names = {"S": "style", "C": "caption", "M": "caption+style", "L": "all three",
                 "K": "caption+style 2:1", "Q": "caption+style 1:2"}
        runs = [(c, len(list(g))) for c, g in itertools.groupby(prm["phases"])]
        parts.append("phased weights " + " → ".join(names[c] + (f" ×{k}" if k > 1 else "") for c, k in runs))
    elif "omega" in prm:
        om = prm["omega"]
        parts.append(f"ω {om}" if not isinstance(om, list) else f"ω1 {om[0]}, ω2 {om[1]}")
    else:
        ratio = ":".join(f"{v:g}" for v in prm["raw"])
        parts.append(f"weights {ratio} " + {"l2": "(unit L2)", "sum": "(sum 1)", "l2-then-sum": "(unit L2, then sum 1)"}[prm["norm"]])
    p = f"p × {frac(prm['p_scale'])}" if prm["p_scale"] else "p 0 (every model takes the aggregate)"
    if prm.get("p_factors"):
        p += " (× " + "/".join(f"{v:g}" for v in prm["p_factors"]) + " per model)"
    parts.append(p + (", clamp" if st["clamp"] else ""))
    parts.append(f"window {st['window'][0]}–{st['window'][1]}, {st['steps']} steps")
    return who, ", ".join(parts)


def chosen_rows():
    """The rows chosen on the validation grid (docs/control-table-search.json, written by
    search.py) with the keys fixed there: per base choice (two models: the better of its two
    pairs; three models) the most whole scenes right (then color in box); for the target,
    the same among settings meeting the floors (if none does, the most whole scenes right)."""
    import search
    with open(search.OUT) as f:
        grid = json.load(f)["results"]
    rows = []
    # per base model: the best of its two-model pairs, and its three-model order
    groups = [[k for k in search.ORDERS2 if k[0] == base] for base in ("base", "layout", "style")] + [[k] for k in search.ORDERS3]
    for kinds_group in groups:
        cands = [r for r in grid if r["stage"] == "base-choice" and r["setting"]["kinds"] in kinds_group]
        if cands:
            r = max(cands, key=lambda r: search.row_key(r["metrics"]))
            who, how = describe(r["setting"])
            rows.append((f"base choice: {who}, best on validation ({how})", r))
    first = [r for r in grid if r["stage"] in ("base-choice", "target")]
    official = [r for r in first if r["setting"]["params"].get("norm", "l2") == "l2" and "schedule" not in r["setting"]]
    extended = [r for r in first if r not in official]
    phased = [r for r in grid if r["stage"] == "phased"]
    captioned = [r for r in grid if r["stage"] == "captioned-style"]
    for label, cands in (("official algorithm (API weights and p)", official), ("with the weight-normalisation extension", extended),
                         ("with the phased weight schedule (extension)", phased),
                         ("better auxiliary, official algorithm", [r for r in captioned if "schedule" not in r["setting"]]),
                         ("better auxiliary, with the phased weight schedule (extension)", [r for r in captioned if "schedule" in r["setting"]])):
        if cands:
            r = max(cands, key=lambda r: search.target_key(r["metrics"]))
            who, how = describe(r["setting"])
            rows.append((f"target, {label}: {who}, best on validation ({how})", r))
    return [(name, {k: r["setting"][k] for k in ("kinds", "steps", "weights", "p", "window", "clamp", "schedule") if k in r["setting"]},
             r["metrics"]) for name, r in rows]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reuse", action="store_true",
                    help="carry over the rows of docs/control-table.json whose configuration is unchanged "
                         "(the reference is deterministic) instead of sampling them again")
    a = ap.parse_args()
    previous = {}
    if a.reuse and os.path.exists(TABLE_JSON):
        with open(TABLE_JSON) as f:
            old = json.load(f)
        previous = {config_key(r["config"]): r for r in old["rows"]}
    torch.set_num_threads(a.threads)
    t0 = time.time()
    items = build_items(a.n, seed=20261126, first_seed=1000)
    with open(HELDOUT, "w") as f:
        json.dump({"note": "held-out combinations for the control table (tools/shapes/table.py)",
                   "guidance": GUIDANCE, "ip_scale": IP_SCALE, "items": items}, f)
        f.write("\n")
    fam = Family()

    # 0. the scorer on ground truth and on VAE reconstructions (the ceiling of any model)
    gt = [to_uint8(im) for im in world.render([it["scene"] for it in items])]
    checks = {"ground truth renders": score_images(gt, items)}
    with torch.no_grad():
        x = world.to_model(world.render([it["scene"] for it in items]))
        mean, _ = fam.vae_encoder(x)
        rec = [to_uint8(im) for im in world.from_model(fam.vae_decoder(mean))]
    checks["VAE reconstructions"] = score_images(rec, items)

    rows = []
    scorer_cases = []
    carried = 0

    def carry(name, cfg, extra=None):
        """The previous run's numbers for an unchanged configuration, marked as carried over."""
        r = previous.get(config_key(cfg))
        if r is None:
            return False
        rows.append({"row": name, **{k: r[k] for k in METRIC_KEYS}, "seconds": r.get("seconds"),
                     "carried_over": True, "config": r["config"], **(extra or {})})
        print(f"{name}: carried over", flush=True)
        return True

    for name, cfg in row_configs():
        if carry(name, cfg):
            carried += 1
            continue
        ts = time.time()
        images = run(fam, items, **cfg)
        m = score_images(images, items)
        if len(scorer_cases) < 60 and name in ("base alone", "layout alone", "style alone"):
            # generated images with the Python scorer's verdicts, for the TypeScript port's parity test
            for img, it in list(zip(images, items))[:20]:
                scorer_cases.append({"png": png_b64(img), "scene": it["scene"],
                                     "score": world.score(img.astype(np.float64).transpose(2, 0, 1) / 255.0, it["scene"])})
        rows.append({"row": name, **m, "seconds": round(time.time() - ts, 1),
                     "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()}})
        print(f"{name}: {m}", flush=True)
    for name, cfg, val_metrics in chosen_rows():
        if carry(name, cfg, {"validation": {k: val_metrics[k] for k in METRIC_KEYS}}):
            carried += 1
            continue
        same = next((r for r in rows if config_key(r["config"]) == config_key(cfg)), None)
        if same is not None:   # two selections chose the same setting: sample it once
            rows.append({"row": name, **{k: same[k] for k in METRIC_KEYS}, "seconds": 0.0, "same_as": same["row"],
                         "config": cfg, "validation": {k: val_metrics[k] for k in METRIC_KEYS}})
            continue
        ts = time.time()
        m = score_images(run(fam, items, **cfg), items)
        rows.append({"row": name, **m, "seconds": round(time.time() - ts, 1), "config": cfg,
                     "validation": {k: val_metrics[k] for k in m}})
        print(f"{name}: {m}", flush=True)
    seconds = time.time() - t0
    if len(scorer_cases) == 60:   # only when the single-model rows were sampled in this run
        os.makedirs(os.path.join(REPO, "test", "fixtures", "scorer"), exist_ok=True)
        with open(os.path.join(REPO, "test", "fixtures", "scorer", "cases.json"), "w") as f:
            json.dump(scorer_cases, f)
            f.write("\n")

    with open(TABLE_JSON, "w") as f:
        json.dump({"n": a.n, "validation": VALIDATION, "seconds": round(seconds, 1), "checks": checks, "rows": rows}, f, indent=2)
    cols = [("iou", "box IoU"), ("color", "color"), ("shape", "shape"), ("color_in_box", "color in box"),
            ("style", "style"), ("count", "count"), ("all", "all correct")]
    lines = ["| row | " + " | ".join(c[1] for c in cols) + " |", "| --- |" + " --- |" * len(cols)]
    for name, m in list(checks.items()):
        lines.append(f"| scorer check: {name} | " + " | ".join(f"{m[k]:.3f}" for k, _ in cols) + " |")
    for r in rows:
        lines.append(f"| {r['row']} | " + " | ".join(f"{r[k]:.3f}" for k, _ in cols) + " |")
    with open(os.path.join(REPO, "docs", "control-table.generated.md"), "w") as f:
        f.write("\n".join(lines) + "\n\n")
        f.write(f"{a.n} held-out combinations; rows chosen on the {VALIDATION} validation combinations of "
                f"docs/control-table-search.json; {seconds / 60:.1f} min wall time "
                f"(`/usr/bin/python3 tools/shapes/table.py --n {a.n} --threads {a.threads}{' --reuse' if a.reuse else ''}`"
                f"{f', {carried} unchanged rows carried over from the previous run' if carried else ''}).\n")
    print(f"done in {seconds:.0f}s")


if __name__ == "__main__":
    main()
