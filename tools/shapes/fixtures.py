"""Golden fixtures: the PyTorch reference of AMDM (reference.py) run on the exported
models (weights read back from the ONNX files), for fixed configurations. The TypeScript
engine must reproduce them (test/amdm-parity.test.ts).

    /usr/bin/python3 tools/shapes/fixtures.py [--out test/fixtures/amdm]

Each fixture is NAME.json (the job spec in the API's JobSpec form, token ids, and an
index of tensors) plus NAME.bin (raw little-endian float32, tensors back to back).
Stored per fixture: every model's initial noise, the base latent after selected steps,
every model's final latent (official schedule: all models run every step) and the decoded
images as floats in [0, 1] before 8-bit rounding.
"""
import argparse
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import world  # noqa: E402
from family import Family, package, to_uint8, unet_kind  # noqa: E402
from noise import latent_noise  # noqa: E402
from reference import amdm, official_weights  # noqa: E402
from table import png_b64  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
S = 128.0 / 16.0  # official p are for ||x|| ~ 128; our 4x8x8 latents have ||x|| ~ 16


def scene_inputs():
    rng = np.random.default_rng(4242)
    sc = {"objects": [{"shape": "circle", "color": "red", "box": [0.09, 0.12, 0.44, 0.47]},
                      {"shape": "square", "color": "blue", "box": [0.56, 0.5, 0.9, 0.84]}],
          "background": world.sample_style_params(rng, "stripes")}
    ref = {"objects": [{"shape": "triangle", "color": "green", "box": [0.3, 0.3, 0.65, 0.65]}], "background": sc["background"]}
    ref_png = png_b64(to_uint8(world.render([ref])[0]))
    return {
        "base": {"prompt": world.caption(sc, True), "negative_prompt": ""},
        "layout": {"prompt": world.caption(sc, False), "negative_prompt": "",
                   "grounding": [{"phrase": o["shape"], "box": o["box"]} for o in sc["objects"]]},
        "style": {"prompt": world.caption(sc, False), "negative_prompt": "",
                  "reference_image": {"data": ref_png, "scale": 0.8}},
        # the style model trained with colors gets the full caption
        "captioned_style": {"prompt": world.caption(sc, True), "negative_prompt": "",
                            "reference_image": {"data": ref_png, "scale": 0.8}},
    }


def configs():
    w2 = official_weights(2, omega=0.5)
    w3 = official_weights(3, omega1=0.47, omega2=0.5)
    wexp = [1 / np.sqrt(5), 2 / np.sqrt(5)]
    return [
        ("base-alone", ["base"], [1.0], [0.0], (1, 3), 20, False),
        ("layout-alone", ["layout"], [1.0], [0.0], (1, 3), 20, False),
        ("style-alone", ["style"], [1.0], [0.0], (1, 3), 20, False),
        ("base-layout", ["base", "layout"], w2, [55 / S, 45 / S], (1, 3), 20, False),
        ("base-layout-style", ["base", "layout", "style"], w3, [45 / S, 40 / S, 35 / S], (1, 3), 10, False),
        ("base-layout-window-1-7", ["base", "layout"], w2, [55 / S, 45 / S], (1, 7), 20, False),
        ("base-layout-p-literal", ["base", "layout"], w2, [55.0, 45.0], (1, 3), 20, False),
        ("base-layout-p-literal-clamp", ["base", "layout"], w2, [55.0, 45.0], (1, 3), 20, True),
        ("base-layout-explicit-weights", ["base", "layout"], [float(v) for v in wexp], [55 / S, 45 / S], (2, 5), 20, False),
    ]


def schedule_configs():
    """The per-step extension (off by default): the layout model as the base, unit-L2 weights
    at the window's first step and weights summing to 1 after it, and p halved after the
    first step, so both the weight and the p path of the schedule are exercised."""
    raw = [0.5, 1.0, 0.75]
    l2 = [v / float(np.sqrt(sum(r * r for r in raw))) for v in raw]
    s1 = [v / sum(raw) for v in raw]
    p0 = [45 / S, 40 / S, 35 / S]
    sched = {"weights": [l2, s1, s1, s1], "p": [p0] + [[v / 2 for v in p0]] * 3}
    # a phased schedule (docs/control-table.md): one model's latent at a time, p 0 (every
    # model takes the aggregate), the last step mixing all three; with the style model
    # trained with colors
    phased = {"weights": [[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.1, 0.45, 0.45]]}
    return [("layout-base-style-schedule", ["layout", "base", "style"], l2, p0, (1, 4), 10, False, sched),
            ("layout-base-captioned-style-phased", ["layout", "base", "captioned_style"], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0],
             (1, 4), 10, False, phased)]


def conditioned_models(fam, inputs, kinds, negative_prompt=None):
    """Each kind's model conditioned on its scene inputs (the layout model's boxes, the style
    model's reference image), guidance 7.5; negative_prompt overrides the scene's when given."""
    items = []
    for k in kinds:
        neg = inputs[k]["negative_prompt"] if negative_prompt is None else negative_prompt
        it = {"prompt": inputs[k]["prompt"], "negative_prompt": neg}
        if k == "layout":
            it["grounding"] = inputs[k]["grounding"]
        if unet_kind(k) == "style":
            from table import png_decode
            it["reference"] = png_decode(inputs[k]["reference_image"]["data"])
            it["ip_scale"] = inputs[k]["reference_image"]["scale"]
        items.append(it)
    return [fam.conditioned(k, [it], 7.5) for k, it in zip(kinds, items)]


class TensorBlob:
    """Tensors as little-endian float32 laid end to end, with their offsets and shapes: the
    .bin and the "tensors" map of a fixture."""

    def __init__(self):
        self.tensors, self.parts, self.offset = {}, [], 0

    def put(self, key, t):
        arr = t.detach().numpy().astype("<f4").reshape(-1)
        self.tensors[key] = {"offset": self.offset, "shape": list(t.shape)}
        self.parts.append(arr.tobytes())
        self.offset += arr.nbytes

    def put_run(self, noises, recorded, final):
        """One AMDM run: every model's initial noise, the base latent after each recorded
        step, every model's final latent (batch entry 0 of each)."""
        for m, n in enumerate(noises):
            self.put(f"noise/{m}", n[0])
        for i in sorted(recorded):
            self.put(f"base_after_step/{i}", recorded[i][0])
        for m, f in enumerate(final):
            self.put(f"final/{m}", f[0])


def write_fixture(out, name, header, blob):
    with open(os.path.join(out, name + ".json"), "w") as f:
        json.dump(header, f, indent=1)
        f.write("\n")
    with open(os.path.join(out, name + ".bin"), "wb") as f:
        f.write(b"".join(blob.parts))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(REPO, "test", "fixtures", "amdm"))
    ap.add_argument("--models", default=os.path.join(REPO, "models"))
    ap.add_argument("--only", nargs="*", help="write only these fixtures (and add them to index.json), leaving the others untouched")
    a = ap.parse_args()
    torch.set_num_threads(1)
    os.makedirs(a.out, exist_ok=True)
    fam = Family(a.models)
    inputs = scene_inputs()
    seed = 20261126
    index = []
    for name, kinds, weights, p, window, steps, clamp, *rest in configs() + schedule_configs():
        schedule = rest[0] if rest else None
        if a.only is not None and name not in a.only:
            continue
        models = conditioned_models(fam, inputs, kinds)
        noises = [latent_noise(seed, 0, m, (1, 4, 8, 8)) for m in range(len(kinds))]
        record = sorted({0, window[1], steps - 1})
        final, recorded = amdm(models, noises, weights, p, window, steps, clamp=clamp, record=record, schedule=schedule)
        images = [fam.decode(f)[0] for f in final]

        blob = TensorBlob()
        blob.put_run(noises, recorded, final)
        for m, im in enumerate(images):
            blob.put(f"image/{m}", im)

        spec = {
            "models": [{
                "id": package(k), "role": "base" if m == 0 else "auxiliary",
                "prompt": inputs[k]["prompt"], "negative_prompt": inputs[k]["negative_prompt"], "guidance_scale": 7.5,
                "grounding": inputs[k].get("grounding", []),
                "reference_image": inputs[k].get("reference_image"),
                "weight": float(weights[m]), "p": float(p[m]),
            } for m, k in enumerate(kinds)],
            "aggregation": {"window": list(window), "clamp": clamp,
                            "weights": "single" if len(kinds) == 1 else ("explicit" if name.endswith("explicit-weights")
                                                                          else "schedule" if schedule else "official"),
                            **({"schedule": schedule} if schedule else {})},
            "sampler": {"steps": steps, "seed": seed, "width": world.SIZE, "height": world.SIZE, "scheduler": "ddim", "eta": 0.0},
            "outputs": {"images": 1, "per_model": True, "latents": False},
            "estimate": {"unet_evals": len(kinds) * steps},
        }
        tokens = {}
        for k in kinds:
            tokens[inputs[k]["prompt"]] = fam.tokenizer.encode(inputs[k]["prompt"])
            for g in inputs[k].get("grounding", []):
                tokens[g["phrase"]] = fam.tokenizer.encode(g["phrase"])
        tokens[""] = fam.tokenizer.encode("")
        header = {"name": name, "generator": "tools/shapes/fixtures.py (PyTorch reference, official schedule)",
                  "spec": spec, "tokens": tokens, "recorded_steps": record, "tensors": blob.tensors,
                  "image_u8_sum": [int(to_uint8(im).astype(np.int64).sum()) for im in images]}
        write_fixture(a.out, name, header, blob)
        index.append(name)
        print("fixture", name, "final base norm", float(final[0].norm()))
    path = os.path.join(a.out, "index.json")
    if a.only is not None and os.path.exists(path):
        with open(path) as f:
            existing = json.load(f)
        index = existing + [n for n in index if n not in existing]
    with open(path, "w") as f:
        json.dump(index, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
