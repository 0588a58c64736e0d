"""Random-weight checkpoints at the paper's models' REAL configurations and published key
names, for proving the converter at full size without downloading anything:

    /usr/bin/python3 tools/convert/make_fullsize.py [--out tools/convert/.fullsize] [--only NAME ...]

    sd15/               diffusers SD1.5 pipeline: UNet 860M, CLIP ViT-L/14 text, VAE (fp32 safetensors)
    sd15.safetensors    the same weights as one single file in the LDM / A1111 layout
    interactdiffusion/  InteractDiffusion v1.x diffusers layout: gated UNet (1.07B) + interaction
                        position net, stored as the fp16 variant (diffusion_pytorch_model.fp16.safetensors)
                        as the published repo does; the text encoder and VAE are sd15's
    ip-adapter/         ip-adapter_sd15.bin ({"image_proj", "ip_adapter"}) for sd15's UNet, and
                        image_encoder/ (CLIP ViT-H/14 with projection, 632M, fp32)

One model at a time is held in memory (the largest, the gated UNet, ~4.3 GB in fp32).
The folder is gitignored.
"""
import argparse
import gc
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import torch  # noqa: E402
from torch import nn  # noqa: E402

import fixtures  # noqa: E402
import keymaps  # noqa: E402
from checkpoint_io import write_safetensors  # noqa: E402

REPO = os.path.dirname(os.path.dirname(HERE))
# the shared CLIP tokenizer beside the checkout, or beside a worktree's parent folder
CLIP_TOKENIZER = next((d for d in (os.path.normpath(os.path.join(REPO, *up, "shared", "clip-vit-large-patch14-tokenizer"))
                                   for up in (("..",), ("..", ".."))) if os.path.isdir(d)),
                      os.path.normpath(os.path.join(REPO, "..", "shared", "clip-vit-large-patch14-tokenizer")))
PARTS = ("sd15", "sd15-single", "interactdiffusion", "ip-adapter")


def log(msg, t0):
    print(f"[{time.time() - t0:7.1f} s] {msg}", flush=True)


def sd15(out, tokenizer, t0):
    fixtures.write_pipeline(os.path.join(out, "sd15"), "sd15", seed=100, unet=fixtures.SD15_UNET, vae=fixtures.SD15_VAE,
                            text=fixtures.SD15_TEXT, tokenizer=tokenizer)
    log("sd15/ written", t0)


def sd15_single(out, t0):
    fixtures.write_single_file(os.path.join(out, "sd15.safetensors"), seed=100, unet=fixtures.SD15_UNET,
                               vae=fixtures.SD15_VAE, text=fixtures.SD15_TEXT)
    log("sd15.safetensors written", t0)


def interactdiffusion(out, tokenizer, t0):
    folder = os.path.join(out, "interactdiffusion")
    raw = dict(fixtures.SD15_UNET, attention_type="gated", _class_name="InteractDiffusionUNet2DConditionModel")
    unet = fixtures.build(raw, "unet", 300, grounding="interaction")
    tensors = {k: v.half() for k, v in keymaps.unet_diffusers(unet).to_published(unet.state_dict()).items()}
    del unet
    gc.collect()
    fixtures._json(os.path.join(folder, "unet", "config.json"), raw)
    write_safetensors(os.path.join(folder, "unet", "diffusion_pytorch_model.fp16.safetensors"), tensors)
    del tensors
    gc.collect()
    log("interactdiffusion/unet written", t0)
    # the published repo carries SD1.x's text encoder and VAE; ours are sd15's (same seeds)
    text = fixtures.build(fixtures.SD15_TEXT, "text", 103)
    fixtures._json(os.path.join(folder, "text_encoder", "config.json"), fixtures.SD15_TEXT)
    write_safetensors(os.path.join(folder, "text_encoder", "model.safetensors"), text.state_dict())
    vae = fixtures.build(fixtures.SD15_VAE, "vae", 102)
    fixtures._json(os.path.join(folder, "vae", "config.json"), fixtures.SD15_VAE)
    write_safetensors(os.path.join(folder, "vae", "diffusion_pytorch_model.safetensors"), vae.state_dict())
    fixtures._json(os.path.join(folder, "scheduler", "scheduler_config.json"), dict(fixtures.configs.SD1_SCHEDULER, _class_name="DDIMScheduler"))
    import shutil
    shutil.copytree(tokenizer, os.path.join(folder, "tokenizer"), dirs_exist_ok=True)
    fixtures._json(os.path.join(folder, "model_index.json"), {"_class_name": ["pipeline_stable_diffusion_interactdiffusion", "StableDiffusionInteractDiffusionPipeline"]})
    log("interactdiffusion/ written", t0)


def ip_adapter(out, t0):
    folder = os.path.join(out, "ip-adapter")
    unet = fixtures.build(fixtures.SD15_UNET, "unet", 400, ip_tokens=fixtures.IP_TOKENS)
    # only the adapter's tensors are published in its file; the base UNet stays sd15's
    fixtures.write_ip_adapter(os.path.join(folder, "ip-adapter_sd15.bin"), unet, fixtures.VIT_H14["projection_dim"], seed=401)
    del unet
    gc.collect()
    log("ip-adapter/ip-adapter_sd15.bin written", t0)
    fixtures.write_image_encoder(os.path.join(folder, "image_encoder"), fixtures.VIT_H14, seed=402)
    log("ip-adapter/image_encoder written", t0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join(HERE, ".fullsize"))
    ap.add_argument("--only", nargs="*", choices=PARTS, default=list(PARTS))
    ap.add_argument("--tokenizer", default=CLIP_TOKENIZER, help="CLIP ViT-L/14 tokenizer folder")
    a = ap.parse_args()
    if not os.path.isdir(a.tokenizer):
        ap.error(f"--tokenizer {a.tokenizer}: not a folder (CLIP ViT-L/14's vocab.json, merges.txt)")
    torch.manual_seed(0)
    t0 = time.time()
    os.makedirs(a.out, exist_ok=True)
    for part in a.only:
        if part == "sd15":
            sd15(a.out, a.tokenizer, t0)
        elif part == "sd15-single":
            sd15_single(a.out, t0)
        elif part == "interactdiffusion":
            interactdiffusion(a.out, a.tokenizer, t0)
        elif part == "ip-adapter":
            ip_adapter(a.out, t0)
        gc.collect()


if __name__ == "__main__":
    main()
