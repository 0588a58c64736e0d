"""Where the aggregated trajectory sits, and when each model settles what it controls:
the measurements behind docs/control-table.md's analysis. Runs on the 96 validation
combinations (the held-out set is kept for the reported rows).

    /usr/bin/python3 tools/shapes/analysis.py [--threads 1]

1. Hand-off curves: one model runs alone to step i, another finishes from its latent
   (a window that ends at step i with all the weight on the first model and p = 0). The
   score of the finished images says from which step on the finisher keeps what the first
   model had placed or painted.
2. Trajectories of AMDM runs, per step (means over the samples):
   - the base latent regressed on the models' solo latents at the same step
     (x ≈ a_0·solo_0 + a_1·solo_1 + ..., per sample least squares): how much of each model's
     own trajectory the aggregated one carries;
   - ||xbar - mu_k|| / p_k and how often it is below 1 (the pull overshoots mu_k);
   - ||xbar|| and the base latent's norm over the base model's solo norm at that step;
   - the cosine between the models' DDIM steps y_k (independent at step 1, the spherical
     argument's premise; correlated once the pull has merged them).
Writes docs/control-table-analysis.json.
"""
import argparse
import json
import math
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from family import Family, to_uint8  # noqa: E402
from noise import latent_noise  # noqa: E402
from reference import DDIMSchedule, amdm, official_weights  # noqa: E402
from search import P2, P3, VAL_FIRST_SEED, VAL_N, VAL_SEED  # noqa: E402
from table import GUIDANCE, build_items, model_items, score_images  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(REPO, "docs", "control-table-analysis.json")
METRICS = ["iou", "color", "color_in_box", "style", "count", "all"]


def norms(x):
    return x.flatten(1).norm(dim=1)


class Lab:
    def __init__(self, fam, items):
        self.fam, self.items, self.cache = fam, items, {}

    def model(self, kind):
        if kind not in self.cache:
            self.cache[kind] = self.fam.conditioned(kind, model_items(kind, self.items), GUIDANCE)
        return self.cache[kind]

    def noise(self, m):
        return torch.cat([latent_noise(it["seed"], 0, m, (1, 4, 8, 8)) for it in self.items])

    def score(self, latent):
        m = score_images([to_uint8(im) for im in self.fam.decode(latent)], self.items)
        return {k: round(m[k], 4) for k in METRICS}

    def solo(self, kind, noise_index, steps):
        """Latents after every step of one model alone."""
        _, rec = amdm([self.model(kind)], [self.noise(noise_index)], [1.0], [0.0], (1, 1), steps, record=range(steps))
        return rec

    def finish(self, kind, x, start, steps):
        """Model `kind` alone from latent x (the one entering step `start`) to the end."""
        sched = DDIMSchedule()
        timesteps, ratio = sched.timesteps(steps)
        m = self.model(kind)
        for t in timesteps[start:]:
            x = sched.step(m.eps(x, t), t, x, ratio)[0]
        return x

    def handoff(self, first, finisher, steps):
        rec = self.solo(first, 0, steps)
        timesteps, _ = DDIMSchedule().timesteps(steps)
        out = []
        for i in range(steps):
            x = rec[i] if i == steps - 1 else self.finish(finisher, rec[i], i + 1, steps)
            out.append({"step": i, "t": timesteps[i], **self.score(x)})
            print(f"  handoff {first}->{finisher} after step {i}: {out[-1]}", flush=True)
        return out

    def trajectory(self, kinds, steps, weights, p, window):
        solos = [self.solo(k, m, steps) for m, k in enumerate(kinds)]
        rows = []
        prev = {"x": None}

        def observe(i, t, eps, y, xbar, mus, x):
            r = {"step": i, "t": t}
            base = x[0]
            S = torch.stack([solos[k][i].flatten(1) for k in range(len(kinds))], dim=2)      # [B, D, N]
            coef = torch.linalg.lstsq(S, base.flatten(1)[:, :, None]).solution[:, :, 0]      # [B, N]
            r["coef"] = [round(float(c), 3) for c in coef.mean(0)]
            r["base_norm_over_solo"] = round(float((norms(base) / norms(solos[0][i])).mean()), 3)
            if xbar is not None:
                r["xbar_norm_over_solo"] = round(float((norms(xbar) / norms(solos[0][i])).mean()), 3)
                yn = [y_k.flatten(1) / norms(y_k)[:, None] for y_k in y]
                r["cos_y"] = [round(float((yn[0] * yn[k]).sum(1).mean()), 3) for k in range(1, len(kinds))]
            if mus is not None:
                ratios = [norms(xbar - mu) / p[k] for k, mu in enumerate(mus)]
                r["dist_over_p"] = [round(float(q.mean()), 2) for q in ratios]
                r["overshoot"] = [round(float((q < 1).float().mean()), 3) for q in ratios]
            rows.append(r)
            prev["x"] = x

        noises = [self.noise(m) for m in range(len(kinds))]
        final, _ = amdm([self.model(k) for k in kinds], noises, weights, p, window, steps,
                        base_only_after_window=True, observe=observe)
        return {"kinds": kinds, "steps": steps, "weights": [round(w, 4) for w in weights],
                "p": [round(v, 3) for v in p], "window": list(window), "per_step": rows, "final": self.score(final[0])}


def trajectories():
    w2 = official_weights(2, omega=0.5)
    w3 = official_weights(3, omega1=0.47, omega2=0.5)
    s8, s16 = 1 / 8, 1 / 16
    sum1 = [w / sum(w2) for w in w2]
    return [
        ("caption base + layout, 20 steps, p scaled, early window 1-3", ["base", "layout"], 20, w2, [v * s8 for v in P2], (1, 3)),
        ("caption base + layout, 20 steps, p scaled, late window 15-17", ["base", "layout"], 20, w2, [v * s8 for v in P2], (15, 17)),
        ("layout base + caption + style, 10 steps, p x 1/16, window 1-3", ["layout", "base", "style"], 10, w3, [v * s16 for v in P3], (1, 3)),
        ("caption base + layout, 50 steps, p x 1/16, window 1-7, unit-L2 weights", ["base", "layout"], 50, w2, [v * s16 for v in P2], (1, 7)),
        ("caption base + layout, 50 steps, p x 1/16, window 1-7, weights summing to 1", ["base", "layout"], 50, sum1, [v * s16 for v in P2], (1, 7)),
    ]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=OUT)
    ap.add_argument("--limit", type=int, default=VAL_N, help="first N validation combinations (smoke runs)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    t0 = time.time()
    lab = Lab(Family(), build_items(VAL_N, seed=VAL_SEED, first_seed=VAL_FIRST_SEED)[:a.limit])
    out = {"validation": a.limit, "handoff": {}, "trajectories": []}
    for first, finisher, steps in [("layout", "base", 20), ("base", "layout", 20), ("style", "layout", 20),
                                   ("style", "base", 20), ("base", "layout", 10), ("style", "layout", 10)]:
        out["handoff"][f"{first}->{finisher}@{steps}"] = lab.handoff(first, finisher, steps)
    for name, kinds, steps, w, p, window in trajectories():
        r = lab.trajectory(kinds, steps, w, p, window)
        r["name"] = name
        out["trajectories"].append(r)
        print(name, r["final"], flush=True)
        for row in r["per_step"]:
            print("   ", row, flush=True)
    out["seconds"] = round(time.time() - t0, 1)
    with open(a.out, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print(f"done in {out['seconds']} s")


if __name__ == "__main__":
    main()
