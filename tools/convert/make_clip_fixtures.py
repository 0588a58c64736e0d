"""Fixtures that pin the engine's CLIP image preprocessing (gpu-runner/engine/clip-preprocess.ts)
to Pillow's numbers, following transformers' CLIPImageProcessor step by step:

    /usr/bin/python3 tools/convert/make_clip_fixtures.py    # writes test/fixtures/clip-preprocess/

Needs Pillow and numpy only (Debian's python3-pil, python3-numpy). transformers is not
needed: its slow CLIPImageProcessor (the one IP-Adapter's reference code creates) does
exactly this: convert("RGB"); resize so the shortest edge is 224 and the other
int(224 * long / short), PIL.Image.resize(..., BICUBIC) with no reducing_gap; center crop
at ((h - 224) // 2, (w - 224) // 2); image.astype(float64) * (1/255) cast to float32; then
(image - mean) / std in float32 with mean and std as float32 arrays; channels first.

For each case it writes the input PNG (made here, deterministic), the 8-bit crop after
steps 1-2 as a PNG, and in index.json the sha256 of the float32 [3, 224, 224] result and
its first 16 values (as float32 bit patterns).
"""
import hashlib
import json
import os

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(os.path.dirname(os.path.dirname(HERE)), "test", "fixtures", "clip-preprocess")
SIZE = 224
MEAN = [0.48145466, 0.4578275, 0.40821073]
STD = [0.26862954, 0.26130258, 0.27577711]
RESCALE = 1 / 255


def scene(w, h, seed, mode):
    """Smooth gradients, a disc, stripes and sparse speckles: every filter tap matters."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 127 + 120 * np.sin(x / 17.0 + y / 41.0)
    g = 255 * x / max(w - 1, 1)
    b = np.where(((x - w * 0.6) ** 2 + (y - h * 0.4) ** 2) < (min(w, h) * 0.25) ** 2, 30, 220)
    b = np.where((x.astype(int) // 7) % 2 == 0, b, 255 - b)
    rgb = np.stack([r, g, b], axis=-1) + np.where(rng.random((h, w, 1)) < 0.02, rng.normal(0, 60, (h, w, 3)), 0)
    rgb = np.clip(np.round(rgb), 0, 255).astype(np.uint8)
    if mode == "L":
        return Image.fromarray(rgb[:, :, 0], "L")
    if mode == "RGBA":
        a = np.clip(255 * y / max(h - 1, 1), 0, 255).astype(np.uint8)
        return Image.fromarray(np.dstack([rgb, a]), "RGBA")
    return Image.fromarray(rgb, "RGB")


CASES = [
    ("landscape-upscale-300x200-rgb", 300, 200, 1, "RGB"),
    ("downscale-448x336-rgba", 448, 336, 2, "RGBA"),
    ("tall-123x517-gray", 123, 517, 3, "L"),
    ("no-resize-224x300-rgb", 224, 300, 4, "RGB"),
    ("downscale-720x240-rgb", 720, 240, 5, "RGB"),
]


def preprocess(img):
    img = img.convert("RGB")
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = SIZE, int(SIZE * long / short)
    size = (new_short, new_long) if w <= h else (new_long, new_short)  # PIL: (width, height)
    arr = np.array(img.resize(size, resample=Image.BICUBIC))
    hh, ww = arr.shape[:2]
    top, left = (hh - SIZE) // 2, (ww - SIZE) // 2
    crop = arr[top:top + SIZE, left:left + SIZE]
    x = (crop.astype(np.float64) * RESCALE).astype(np.float32)
    x = (x - np.array(MEAN, dtype=np.float32)) / np.array(STD, dtype=np.float32)
    return crop, np.ascontiguousarray(x.transpose(2, 0, 1), dtype="<f4")


def main():
    os.makedirs(OUT, exist_ok=True)
    index = {"generator": "tools/convert/make_clip_fixtures.py", "pillow": Image.__version__, "numpy": np.__version__,
             "size": SIZE, "mean": MEAN, "std": STD, "rescale": RESCALE, "cases": []}
    for name, w, h, seed, mode in CASES:
        img = scene(w, h, seed, mode)
        img.save(os.path.join(OUT, f"{name}.png"), optimize=True)
        crop, x = preprocess(Image.open(os.path.join(OUT, f"{name}.png")))
        Image.fromarray(crop, "RGB").save(os.path.join(OUT, f"{name}.crop.png"), optimize=True)
        index["cases"].append({"name": name, "mode": mode, "width": w, "height": h,
                               "sha256": hashlib.sha256(x.tobytes()).hexdigest(),
                               "head": x.reshape(-1)[:16].view("<u4").tolist()})
        print(name, x.shape, float(x.mean()))
    with open(os.path.join(OUT, "index.json"), "w") as f:
        json.dump(index, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
