"""Fixtures that pin gpu-runner/engine/torch-generator.ts to torch's own numbers.

    /usr/bin/python3 tools/torch-noise/make_fixtures.py            # writes test/fixtures/torch-noise/
    /usr/bin/python3 tools/torch-noise/make_fixtures.py --check    # compares this torch with them
    /usr/bin/python3 tools/torch-noise/make_fixtures.py --no-sweeps  # skips the exhaustive sweeps (~2 min)

Needs Debian's python3-torch (1.13.1) on an x86-64 CPU with AVX2; --check runs under any
other torch (a 2.x wheel on PYTHONPATH, say) and prints which draws differ.

randn.json holds every draw as sha256 of its little-endian float32 bytes, plus the bit
patterns themselves (base64 of little-endian uint32) for draws of at most 1024 values and the
first and last 32 values of the larger ones. randn-seed42-1x4x64x64.f32 is one latent-sized
draw in full, so that a failing test can name the first index that differs.

The two sweeps drive torch's Box-Muller with EVERY possible float32 uniform, which proves the
transform for all inputs rather than for the ones a few seeds happen to reach. torch.set_rng_state
lets us load an MT19937 state whose next 623 outputs are words we choose (the tempering is
invertible), so each randn(16 b) call transforms b blocks of uniforms we picked:
- radius sweep: block i has u[0..7] = (8i .. 8i+7) / 2^24 and u[8..15] = 0 (theta 0, cos 1),
  so the first eight outputs are radius(u) = sqrt(-2 log(1 - u)) for all 2^24 uniforms;
- angle sweep: u[0..7] = 6601320 / 2^24 (whose radius is exactly 1.0, as the radius sweep
  shows) and u[8..15] = (8i .. 8i+7) / 2^24, so the outputs are cos and sin of 2 pi u exactly.
Each sweep is stored as the sha256 of all its outputs in order (2^21 blocks of 16 float32).
"""
import argparse
import base64
import hashlib
import json
import os
import re
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(REPO, "test", "fixtures", "torch-noise")

SEEDS = [0, 1, 42, 2**32 - 1, 0x1234_5678_9ABC_DEF0]
SHAPES = [[1, 4, 64, 64], [1, 4, 32, 32], [1, 4, 8, 8], [2, 4, 8, 8], [1], [7], [15], [16], [17], [33]]
# consecutive draws from one generator: the order a job draws its models (and the small
# path's cached second value carried across calls, untouched by the >= 16 path)
SEQUENCES = [
    {"seed": 42, "shapes": [[1, 4, 8, 8], [1, 4, 8, 8], [1, 4, 8, 8]]},
    {"seed": 7, "shapes": [[1, 4, 64, 64], [1, 4, 64, 64], [1, 4, 64, 64]]},
    {"seed": 3, "shapes": [[7], [1, 4, 8, 8], [7], [17], [1], [15]]},
]
FULL_LIMIT = 1024
EDGE = 32
UNIT_RADIUS_K = 6601320  # 1 - k / 2^24 has radius exactly 1.0 in torch's AVX2 transform
BLOCKS_PER_CALL = 38  # 38 * 16 = 608 <= 623 words drawable before the engine twists


def b64(values):
    return base64.b64encode(np.ascontiguousarray(values, dtype="<f4").tobytes()).decode()


def sha(values):
    return hashlib.sha256(np.ascontiguousarray(values, dtype="<f4").tobytes()).hexdigest()


def record(shape, values):
    r = {"shape": shape, "sha256": sha(values)}
    if values.size <= FULL_LIMIT:
        r["values"] = b64(values)
    else:
        r["head"] = b64(values[:EDGE])
        r["tail"] = b64(values[-EDGE:])
    return r


def draws():
    out = {"single": [], "sequences": []}
    for seed in SEEDS:
        for shape in SHAPES:
            g = torch.Generator("cpu").manual_seed(seed)
            v = torch.randn(shape, generator=g, dtype=torch.float32).flatten().numpy()
            out["single"].append({"seed": str(seed), **record(shape, v)})
    for seq in SEQUENCES:
        g = torch.Generator("cpu").manual_seed(seq["seed"])
        rs = [record(s, torch.randn(s, generator=g).flatten().numpy()) for s in seq["shapes"]]
        out["sequences"].append({"seed": str(seq["seed"]), "draws": rs})
    return out


def untemper(y):
    """Inverse of MT19937's output tempering, on a uint32 numpy array."""
    y = y.astype(np.uint64)
    y ^= y >> np.uint64(18)
    y ^= (y << np.uint64(15)) & np.uint64(0xEFC60000)
    t = y
    for _ in range(4):  # y ^= (y << 7) & mask, undone 7 bits at a time
        t = y ^ ((t << np.uint64(7)) & np.uint64(0x9D2C5680))
    y = t & np.uint64(0xFFFFFFFF)
    t = y
    for _ in range(2):  # y ^= y >> 11
        t = y ^ (t >> np.uint64(11))
    return t & np.uint64(0xFFFFFFFF)


def sweep(block_uniforms):
    """sha256 of torch's outputs for 2^21 blocks whose uniform numerators block_uniforms(i) gives."""
    g = torch.Generator("cpu").manual_seed(0)
    state = g.get_state().numpy().copy()
    assert state.size == 5056, f"unexpected CPU generator state size {state.size}"
    left = state[8:12].view("<i4")
    nxt = state[16:24].view("<u8")
    words = state[24:24 + 624 * 8].view("<u8")
    blocks = 1 << 21
    first = np.arange(blocks, dtype=np.int64)
    all_words = untemper(block_uniforms(first).astype(np.uint32).reshape(-1)).reshape(blocks, 16)
    h = hashlib.sha256()
    for start in range(0, blocks, BLOCKS_PER_CALL):
        chunk = all_words[start:start + BLOCKS_PER_CALL].reshape(-1)
        words[:chunk.size] = chunk
        left[0] = 624
        nxt[0] = 0
        g.set_state(torch.from_numpy(state))
        h.update(torch.randn(chunk.size, generator=g).numpy().astype("<f4").tobytes())
    return h.hexdigest()


def radius_blocks(i):
    k = (i[:, None] * 8 + np.arange(8)[None, :])
    return np.concatenate([k, np.zeros_like(k)], axis=1)


def angle_blocks(i):
    k = (i[:, None] * 8 + np.arange(8)[None, :])
    return np.concatenate([np.full_like(k, UNIT_RADIUS_K), k], axis=1)


def capability():
    if hasattr(torch.backends, "cpu") and hasattr(torch.backends.cpu, "get_cpu_capability"):
        return torch.backends.cpu.get_cpu_capability()
    return torch.__config__.show().split("CPU capability usage:")[1].split("\n")[0].strip()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=OUT)
    ap.add_argument("--check", action="store_true", help="compare this torch with the committed fixtures")
    ap.add_argument("--no-sweeps", action="store_true")
    args = ap.parse_args()
    cap = capability()
    if cap not in ("AVX2", "AVX512"):
        sys.exit(f"torch runs its {cap} kernels here; the fixtures pin the AVX2 Box-Muller (needs an AVX2 CPU)")
    data = {"torch": torch.__version__, "capability": cap, **draws()}
    if not args.no_sweeps:
        data["sweeps"] = {"radius": sweep(radius_blocks), "angle": sweep(angle_blocks), "unitRadiusK": UNIT_RADIUS_K}
    big = torch.randn([1, 4, 64, 64], generator=torch.Generator("cpu").manual_seed(42)).flatten().numpy()
    path = os.path.join(args.out, "randn.json")
    if args.check:
        with open(path) as f:
            ref = json.load(f)
        bad = 0
        for name in ("single", "sequences"):
            for a, b in zip(ref[name], data[name]):
                if a != b:
                    bad += 1
                    print("differs:", name, a.get("seed"), a.get("shape", [d["shape"] for d in a.get("draws", [])]))
        for k, v in data.get("sweeps", {}).items():
            if ref["sweeps"][k] != v:
                bad += 1
                print("differs: sweep", k)
        with open(os.path.join(args.out, "randn-seed42-1x4x64x64.f32"), "rb") as f:
            if f.read() != big.astype("<f4").tobytes():
                bad += 1
                print("differs: randn-seed42-1x4x64x64.f32")
        print(f"torch {torch.__version__} ({cap}): {'identical to' if bad == 0 else f'{bad} differences from'} fixtures made with torch {ref['torch']} ({ref['capability']})")
        sys.exit(1 if bad else 0)
    os.makedirs(args.out, exist_ok=True)
    with open(path, "w") as f:
        # shapes on one line each, so a diff shows which draw moved
        f.write(re.sub(r"\[\n\s+([0-9,\n ]+?)\n\s+\]", lambda m: "[" + " ".join(m.group(1).split()) + "]", json.dumps(data, indent=1)) + "\n")
    big.astype("<f4").tofile(os.path.join(args.out, "randn-seed42-1x4x64x64.f32"))
    print(f"wrote {path} with torch {torch.__version__} ({cap})")


if __name__ == "__main__":
    main()
