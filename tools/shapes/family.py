"""The exported shapes family as torch modules, with weights read back from the committed
ONNX files (initializer names are the torch parameter names), and the conditioning each
model takes. Used by the golden fixtures, the control table and the torch benchmark.
"""
import json
import os
import sys

import numpy as np
import onnx
import torch
from onnx import numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import world  # noqa: E402
from nets import VaeDecoder, VaeEncoder, TextEncoder, UNet, ImageEncoder, ImageProjection  # noqa: E402
from reference import Conditioned  # noqa: E402
from tokenizer import Tokenizer  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_onnx_weights(module, path, prefix=""):
    """Copy ONNX initializers into a torch module; every parameter and buffer that the
    state dict persists must be found, so a renamed export fails loudly here."""
    inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(path).graph.initializer}
    state = module.state_dict()
    missing = []
    for k in state:
        name = prefix + k
        if name in inits:
            state[k] = torch.from_numpy(inits[name].copy()).to(state[k].dtype).reshape(state[k].shape)
        else:
            missing.append(name)
    if missing:
        raise RuntimeError(f"{path}: initializers missing for {missing[:5]} (+{max(0, len(missing) - 5)} more)")
    module.load_state_dict(state)
    module.eval()
    return module


def read_json(path):
    with open(path) as f:
        return json.load(f)


# the family's UNets: caption model, layout model, style model, and the style model trained
# with the full caption (colors included)
KINDS = ("base", "layout", "style", "captioned_style")


def package(kind):
    return "shapes-" + kind.replace("_", "-")


def unet_kind(kind):
    """The UNet architecture (and conditioning) of a kind."""
    return "style" if kind in ("style", "captioned_style") else kind


class Family:
    def __init__(self, models_dir=os.path.join(REPO, "models")):
        base = os.path.join(models_dir, "shapes-base")
        tok_dir = os.path.join(base, "tokenizer")
        vocab = read_json(os.path.join(tok_dir, "vocab.json"))
        with open(os.path.join(tok_dir, "merges.txt")) as f:
            merges = [tuple(l.split()) for l in f.read().splitlines()[1:] if l]
        te_cfg = read_json(os.path.join(base, "text_encoder", "config.json"))
        self.tokenizer = Tokenizer(vocab, merges, te_cfg["max_position_embeddings"])
        self.ctx_dim = te_cfg["hidden_size"]
        self.text_encoder = load_onnx_weights(
            TextEncoder(te_cfg["vocab_size"], te_cfg["max_position_embeddings"], self.ctx_dim),
            os.path.join(base, "text_encoder", "model.onnx"), "te.")
        self.vae_decoder = load_onnx_weights(VaeDecoder(), os.path.join(base, "vae_decoder", "model.onnx"))
        self.vae_encoder = load_onnx_weights(VaeEncoder(), os.path.join(base, "vae_encoder", "model.onnx"), "enc.")
        self.scaling_factor = read_json(os.path.join(base, "vae_decoder", "config.json"))["scaling_factor"]
        self.unets, self.image_projs = {}, {}
        for kind in KINDS:
            pkg = os.path.join(models_dir, package(kind))
            arch = unet_kind(kind)
            self.unets[kind] = load_onnx_weights(UNet(ctx_dim=self.ctx_dim, kind=arch, phrase_dim=self.ctx_dim),
                                                 os.path.join(pkg, "unet", "model.onnx"), "unet.")
            if arch == "style":
                manifest = read_json(os.path.join(pkg, "amdm.json"))
                self.image_tokens = manifest["reference_image"]["tokens"]
                # the image encoder is pretrained and frozen: every style model ships the same one
                self.image_encoder = load_onnx_weights(ImageEncoder(self.ctx_dim), os.path.join(pkg, "image_encoder", "model.onnx"))
                self.image_projs[kind] = load_onnx_weights(ImageProjection(self.ctx_dim, self.ctx_dim, self.image_tokens),
                                                           os.path.join(pkg, "image_proj", "model.onnx"))
        self.max_objects = read_json(os.path.join(models_dir, "shapes-layout", "amdm.json"))["grounding"]["max_objects"]

    @torch.no_grad()
    def text(self, prompts):
        ids = torch.tensor([self.tokenizer.encode(p) for p in prompts], dtype=torch.int64)
        return self.text_encoder(ids)

    @torch.no_grad()
    def conditioned(self, kind, items, guidance=7.5):
        """items: per sample {prompt, negative_prompt, grounding: [{phrase, box}],
        reference: uint8 [H, W, 3], ip_scale}. Unconditional half first."""
        B = len(items)
        hid_c, _ = self.text([it["prompt"] for it in items])
        hid_u, _ = self.text([it.get("negative_prompt", "") for it in items])
        extra = {}
        if kind == "layout":
            K, D = self.max_objects, self.ctx_dim
            boxes, phr, mask = torch.zeros(B, K, 4), torch.zeros(B, K, D), torch.zeros(B, K)
            for i, it in enumerate(items):
                g = it.get("grounding", [])
                if g:
                    _, pooled = self.text([o["phrase"] for o in g])
                    for j, o in enumerate(g):
                        boxes[i, j] = torch.tensor(o["box"], dtype=torch.float32)
                        phr[i, j] = pooled[j]
                        mask[i, j] = 1.0
            # unconditional half: same boxes and phrases, mask 0 (as InteractDiffusion)
            extra = {"boxes": torch.cat([boxes, boxes]), "phrase_embeds": torch.cat([phr, phr]),
                     "mask": torch.cat([torch.zeros_like(mask), mask])}
        if unet_kind(kind) == "style":
            ref = torch.stack([torch.from_numpy(it["reference"].astype(np.float32) / 255.0).permute(2, 0, 1) for it in items])
            emb = self.image_encoder(world.to_model(ref))
            proj = self.image_projs[kind]
            tok_c = proj(emb)
            tok_u = proj(torch.zeros_like(emb))
            hid_c = torch.cat([hid_c, tok_c], dim=1)
            hid_u = torch.cat([hid_u, tok_u], dim=1)
            scale = items[0].get("ip_scale", 0.8)
            assert all(it.get("ip_scale", 0.8) == scale for it in items), "one ip_scale per batch"
            extra = {"ip_scale": torch.tensor([scale], dtype=torch.float32)}
        return Conditioned(self.unets[kind], hid_u, hid_c, guidance, extra)

    @torch.no_grad()
    def decode(self, latents):
        """latents [B,4,h,w] -> images [B,3,H,W] in [0, 1] (float, before 8-bit rounding)."""
        return world.from_model(self.vae_decoder(latents / self.scaling_factor))


def to_uint8(img01):
    """[3,H,W] float in [0,1] -> [H,W,3] uint8, rounding as the engine does (round half up)."""
    return np.floor(img01.permute(1, 2, 0).numpy() * 255.0 + 0.5).clip(0, 255).astype(np.uint8)
