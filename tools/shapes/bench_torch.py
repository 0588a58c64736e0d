"""Time the PyTorch reference of AMDM (official schedule: every model, every step) on the
same models, inputs and thread count as `npm run bench:engine`; prints one JSON line.

    /usr/bin/python3 tools/shapes/bench_torch.py --models 3 --steps 50 --threads 1 [--repeats 3]
"""
import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from family import Family  # noqa: E402
from fixtures import scene_inputs  # noqa: E402
from noise import latent_noise  # noqa: E402
from reference import amdm, official_weights  # noqa: E402
from table import png_decode  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", type=int, required=True)
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--window", type=int, nargs=2, default=[1, 3])
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    fam = Family()
    inp = scene_inputs()
    kinds = ["base", "layout", "style"][: a.models]
    weights = official_weights(a.models, omega=0.5, omega1=0.47, omega2=0.5) if a.models > 1 else [1.0]
    p = [6.875, 5.625, 4.375][: a.models]
    times = []
    for r in range(a.repeats + 1):
        t0 = time.perf_counter()
        items = []
        for k in kinds:
            it = {"prompt": inp[k]["prompt"], "negative_prompt": ""}
            if k == "layout":
                it["grounding"] = inp[k]["grounding"]
            if k == "style":
                it["reference"] = png_decode(inp[k]["reference_image"]["data"])
                it["ip_scale"] = 0.8
            items.append(it)
        models = [fam.conditioned(k, [it], 7.5) for k, it in zip(kinds, items)]
        noises = [latent_noise(7, 0, m, (1, 4, 8, 8)) for m in range(a.models)]
        final, _ = amdm(models, noises, weights, p, tuple(a.window), a.steps)
        fam.decode(final[0])
        if r > 0:  # the first run warms up
            times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    print(json.dumps({"models": a.models, "steps": a.steps, "threads": a.threads,
                      "ms_per_image": times[len(times) // 2], "unet_evals": a.models * a.steps}))


if __name__ == "__main__":
    main()
