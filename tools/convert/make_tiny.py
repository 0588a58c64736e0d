"""Tiny converted packages of every kind, for the engine's own tests: random weights in
the published layouts, converted by convert.py (checked against torch like any model).

    /usr/bin/python3 tools/convert/make_tiny.py --out DIR [--fp32]

writes DIR/tiny-sd15, tiny-gligen, tiny-interactdiffusion, tiny-ip-adapter (the last three
share tiny-sd15's text encoder, VAE, tokenizer and scheduler), fp16 unless --fp32, about
6 MB in all (committed as test/fixtures/packages). The configurations are the smallest that keep every block type of the real
ones (two UNet levels, four VAE levels so the VAE scale factor is SD's 8, the real 30
grounding slots and 4 image tokens); the tokenizer is shapes-base's (551 tokens, 16 long).
"""
import argparse
import os
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import convert  # noqa: E402
import fixtures  # noqa: E402

MICRO_UNET = dict(fixtures.TINY_UNET, block_out_channels=[16, 32], norm_num_groups=8, attention_head_dim=4)
KINDS = ("tiny-sd15", "tiny-gligen", "tiny-interactdiffusion", "tiny-ip-adapter")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--fp32", action="store_true", help="fp32 graphs (default fp16, half the size)")
    a = ap.parse_args()
    out = os.path.abspath(a.out)
    os.makedirs(out, exist_ok=True)
    precision = [] if a.fp32 else ["--fp16"]
    with tempfile.TemporaryDirectory(prefix="amdm-tiny-") as tmp:
        sd = os.path.join(tmp, "sd")
        # the same seed everywhere: the grounding and IP bases share sd's text encoder and VAE
        fixtures.write_pipeline(sd, "sd15", seed=0, unet=MICRO_UNET)
        fixtures.write_pipeline(os.path.join(tmp, "gligen"), "gligen", seed=0, unet=MICRO_UNET)
        fixtures.write_pipeline(os.path.join(tmp, "interact"), "interactdiffusion", seed=0, unet=MICRO_UNET)
        fixtures.write_ip_adapter_set(os.path.join(tmp, "ip"), seed=0, unet=MICRO_UNET)
        base = os.path.join(out, "tiny-sd15")
        jobs = [
            ["sd15", sd, "--out", base, "--description", "Tiny random SD1.x-layout model (engine tests only)"],
            ["gligen", os.path.join(tmp, "gligen"), "--out", os.path.join(out, "tiny-gligen"), "--share", base,
             "--description", "Tiny random GLIGEN-layout model (engine tests only)"],
            ["interactdiffusion", os.path.join(tmp, "interact"), "--out", os.path.join(out, "tiny-interactdiffusion"), "--share", base,
             "--description", "Tiny random InteractDiffusion-layout model (engine tests only)"],
            ["ip-adapter", "--base", os.path.join(tmp, "ip", "base"), "--ip-adapter", os.path.join(tmp, "ip", "ip-adapter_sd15.bin"),
             "--image-encoder", os.path.join(tmp, "ip", "image_encoder"), "--out", os.path.join(out, "tiny-ip-adapter"), "--share", base,
             "--description", "Tiny random IP-Adapter-layout model (engine tests only)"],
        ]
        for job in jobs:
            if os.path.exists(job[job.index("--out") + 1]):
                shutil.rmtree(job[job.index("--out") + 1])
            code = convert.main(job + precision)
            if code:
                return code
    total = sum(os.path.getsize(os.path.join(r, f)) for k in KINDS for r, _, fs in os.walk(os.path.join(out, k)) for f in fs)
    print(f"{len(KINDS)} packages, {total / 1e6:.2f} MB in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
