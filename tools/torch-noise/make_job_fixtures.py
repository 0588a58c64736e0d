"""Job fixtures for sampler.noise "torch": the PyTorch reference of AMDM (tools/shapes/reference.py)
on the shapes family, its initial latents and DDIM eta noise drawn by torch.randn from one
torch.Generator("cpu").manual_seed(seed) per image, in the order docs/api.md states: the
initial latents one model after another in REQUEST order, then at every step (eta > 0) one
draw per model in request order. The engine must reproduce the draws bit for bit and the
latents within the golden fixtures' tolerance (test/torch-noise-jobs.test.ts).

    /usr/bin/python3 tools/torch-noise/make_job_fixtures.py   # writes test/fixtures/torch-noise/jobs/

Needs Debian's python3-torch (1.13.1) on x86-64 with AVX2, as make_fixtures.py. Each fixture
is NAME.json (the JobSpec, with request_index per model, and a tensor index) and NAME.bin
(little-endian float32): every model's initial noise, the base latent after selected steps,
every model's final latent (official schedule: every model runs every step).
"""
import json
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tools", "shapes"))
import world  # noqa: E402
from family import Family  # noqa: E402
from fixtures import S, TensorBlob, conditioned_models, scene_inputs, write_fixture  # noqa: E402
from reference import amdm, official_weights  # noqa: E402

OUT = os.path.join(REPO, "test", "fixtures", "torch-noise", "jobs")
SEED = 1234

# name, models in REQUEST order (the base anywhere), eta, steps, window
CONFIGS = [
    ("layout-base-style", ["layout", "base", "style"], 0.0, 10, (1, 3)),
    ("base-layout-eta", ["base", "layout"], 0.5, 10, (1, 3)),
]


def main():
    torch.set_num_threads(1)
    os.makedirs(OUT, exist_ok=True)
    fam = Family(os.path.join(REPO, "models"))
    inputs = scene_inputs()
    index = []
    for name, request, eta, steps, window in CONFIGS:
        spec_order = ["base"] + [k for k in request if k != "base"]
        n = len(spec_order)
        weights = official_weights(n, omega=0.5) if n == 2 else official_weights(3, omega1=0.47, omega2=0.5)
        p = [55 / S, 45 / S] if n == 2 else [45 / S, 40 / S, 35 / S]
        models = conditioned_models(fam, inputs, spec_order, negative_prompt="")

        g = torch.Generator("cpu").manual_seed(SEED)  # image 0: seed + 0
        noises = [None] * n
        for k in request:  # request order
            noises[spec_order.index(k)] = torch.randn((1, 4, 8, 8), generator=g)
        draw_order = [spec_order.index(k) for k in request]
        record = sorted({0, window[1], steps - 1})
        final, recorded = amdm(models, noises, weights, p, window, steps, record=record, eta=eta, generator=g, draw_order=draw_order)

        blob = TensorBlob()
        blob.put_run(noises, recorded, final)

        spec = {
            "models": [{
                "id": f"shapes-{k}", "role": "base" if m == 0 else "auxiliary",
                "prompt": inputs[k]["prompt"], "negative_prompt": "", "guidance_scale": 7.5,
                "grounding": inputs[k].get("grounding", []),
                "reference_image": inputs[k].get("reference_image"),
                "weight": float(weights[m]), "p": float(p[m]), "request_index": request.index(k),
            } for m, k in enumerate(spec_order)],
            "aggregation": {"window": list(window), "clamp": False, "weights": "official"},
            "sampler": {"steps": steps, "seed": SEED, "width": world.SIZE, "height": world.SIZE, "scheduler": "ddim",
                        "eta": eta, "noise": "torch"},
            "outputs": {"images": 1, "per_model": True, "latents": False},
            "estimate": {"unet_evals": n * steps},
        }
        header = {"name": name, "generator": "tools/torch-noise/make_job_fixtures.py (PyTorch reference, official schedule, torch.Generator noise)",
                  "torch": torch.__version__, "request_order": request, "spec": spec, "recorded_steps": record, "tensors": blob.tensors}
        write_fixture(OUT, name, header, blob)
        index.append(name)
        print("fixture", name, "final base norm", float(final[0].norm()))
    with open(os.path.join(OUT, "index.json"), "w") as f:
        json.dump(index, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
