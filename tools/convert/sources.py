"""Reading the published inputs into our modules, refusing anything that does not match.

- a diffusers pipeline folder (unet/, text_encoder/, vae/, scheduler/, tokenizer/; the
  UNet may be GLIGEN's or InteractDiffusion's),
- a single-file Stable Diffusion 1.x checkpoint (LDM / A1111 layout),
- IP-Adapter weights on top of either, plus its CLIP image encoder folder.

Each loader builds the modules without random init, resolves the checkpoint through its
key map (keymaps.py), copies the tensors in and checks every parameter was filled.
"""
import hashlib
import os

import torch
from torch import nn

import configs
from checkpoint_io import open_checkpoint, open_component
from keymap import CheckpointError, check_complete
import keymaps
from nn_clip import ClipTextModel, ClipVisionModelWithProjection
from nn_ip_adapter import ImageProjection
from nn_layers import no_init
from nn_unet import UNet2DCondition
from nn_vae import AutoencoderKL

KINDS = ("sd15", "gligen", "interactdiffusion")


class SourceError(Exception):
    pass


class Pipeline:
    """The loaded parts of one model: modules, their (checked) configs, the raw config
    files to write into the package, and where each came from."""

    def __init__(self):
        self.unet = self.vae = self.text_encoder = None
        self.image_encoder = self.image_proj = None
        self.cfg = {}  # checked configs
        self.raw = {}  # config.json contents to write
        self.tokenizer_dir = None
        self.scheduler = None
        self.sources = {}

    def take(self, name):
        """Hand over a module and forget it, so it can be freed once exported."""
        m = getattr(self, name)
        setattr(self, name, None)
        return m


def digest(module):
    """sha256 over our parameter names and float32 values: equal for the same weights
    whatever layout or dtype they were published in."""
    h = hashlib.sha256()
    for k, v in module.state_dict().items():
        h.update(k.encode())
        h.update(str(tuple(v.shape)).encode())
        h.update(v.detach().to(torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def _unet_kind_check(kind, raw, source):
    cls = raw.get("_class_name", "UNet2DConditionModel")
    gated = raw.get("attention_type", "default") == "gated"
    interaction = "InteractDiffusion" in str(cls)
    actual = "interactdiffusion" if interaction else ("gligen" if gated else "sd15")
    if raw.get("attention_type") == "gated-text-image":
        raise SourceError(f"{source}: attention_type \"gated-text-image\" (GLIGEN with image grounding) is not implemented; "
                          "the text+box GLIGEN (\"gated\") is")
    if actual != kind:
        hint = {"sd15": "a plain SD UNet (attention_type default)", "gligen": "a GLIGEN UNet (attention_type \"gated\")",
                "interactdiffusion": "an InteractDiffusion UNet (_class_name InteractDiffusionUNet2DConditionModel)"}
        raise SourceError(f"{source}: this is {hint[actual]}, not {hint[kind].split(' (')[0]}; use the `{actual}` command")


def read_pipeline_folder(src, kind, variant=None, ip_tokens=0):
    p = Pipeline()
    if not os.path.isdir(src):
        raise SourceError(f"{src}: not a folder")
    for sub in ("unet", "vae", "text_encoder", "scheduler", "tokenizer"):
        if not os.path.isdir(os.path.join(src, sub)):
            raise SourceError(f"{src}: no {sub}/ folder; expected a diffusers pipeline (unet, vae, text_encoder, scheduler, tokenizer)")
    unet_cfg_path = os.path.join(src, "unet", "config.json")
    p.raw["unet"] = configs.read_json(unet_cfg_path)
    _unet_kind_check(kind, p.raw["unet"], unet_cfg_path)
    p.cfg["unet"] = configs.unet_config(p.raw["unet"], unet_cfg_path)
    p.raw["vae"] = configs.read_json(os.path.join(src, "vae", "config.json"))
    p.cfg["vae"] = configs.vae_config(p.raw["vae"], os.path.join(src, "vae", "config.json"))
    p.raw["text_encoder"] = configs.read_json(os.path.join(src, "text_encoder", "config.json"))
    p.cfg["text_encoder"] = configs.clip_text_config(p.raw["text_encoder"], os.path.join(src, "text_encoder", "config.json"))
    sched_path = configs.find(os.path.join(src, "scheduler"), "scheduler_config.json")
    if not sched_path:
        raise SourceError(f"{src}/scheduler: no scheduler_config.json")
    p.scheduler = configs.scheduler_config(configs.read_json(sched_path), sched_path)
    p.tokenizer_dir = os.path.join(src, "tokenizer")

    grounding = {"sd15": None, "gligen": "gligen", "interactdiffusion": "interaction"}[kind]
    with no_init():
        p.unet = UNet2DCondition(p.cfg["unet"], grounding=grounding, ip_tokens=ip_tokens)
        p.vae = AutoencoderKL(p.cfg["vae"])
        p.text_encoder = ClipTextModel(p.cfg["text_encoder"])
    for name, module, keymap, stem in [
        ("text_encoder", p.text_encoder, keymaps.clip_text_transformers(p.text_encoder), "model"),
        ("vae", p.vae, keymaps.vae_diffusers(p.vae), "diffusion_pytorch_model"),
        ("unet", p.unet, keymaps.unet_diffusers(p.unet), "diffusion_pytorch_model"),
    ]:
        ckpt = open_component(os.path.join(src, name), stem, variant)
        filled = keymap.load(ckpt, module)
        if not ip_tokens or name != "unet":
            check_complete(module, filled, keymap.what)
        p.sources[name] = ckpt.path
    return p


def read_single_file(path, tokenizer_dir, ema=False, ip_tokens=0, config_dir=None):
    """A Stable Diffusion 1.x checkpoint in the original (LDM / A1111) layout. The file
    carries no configuration: SD1.x's published one is used, or the config.json files of
    a diffusers-layout `config_dir` (unet/, vae/, text_encoder/, optional scheduler/)."""
    p = Pipeline()
    ckpt = open_checkpoint(path)
    names = set(ckpt.names())
    if any(n.startswith("cond_stage_model.model.") for n in names):
        raise SourceError(f"{path}: a Stable Diffusion 2.x checkpoint (OpenCLIP text encoder); only SD 1.x single files are implemented")
    if any(n.startswith("conditioner.embedders.") for n in names):
        raise SourceError(f"{path}: an SDXL checkpoint; only SD 1.x single files are implemented")
    conv_in = "model.diffusion_model.input_blocks.0.0.weight"
    if conv_in in names and ckpt.shape(conv_in)[1] != 4:
        raise SourceError(f"{path}: the UNet takes {ckpt.shape(conv_in)[1]} input channels (an inpainting or "
                          "instruction model); implemented: 4 (text-to-image)")
    if ema and not any(n.startswith("model_ema.") for n in names):
        raise SourceError(f"{path}: --ema was given but the file has no EMA weights (model_ema.*)")
    if not tokenizer_dir or not os.path.isdir(tokenizer_dir):
        raise SourceError("a single-file checkpoint carries no tokenizer: pass --tokenizer DIR "
                          "(CLIP ViT-L/14's: vocab.json, merges.txt, tokenizer_config.json)")
    p.raw = {"unet": dict(configs.SD1_UNET), "vae": dict(configs.SD1_VAE), "text_encoder": dict(configs.CLIP_VIT_L14_TEXT)}
    p.scheduler = dict(configs.SD1_SCHEDULER)
    where = {"unet": "SD1 UNet", "vae": "SD1 VAE", "text_encoder": "CLIP ViT-L/14 text"}
    if config_dir:
        for part in ("unet", "vae", "text_encoder"):
            where[part] = os.path.join(config_dir, part, "config.json")
            p.raw[part] = configs.read_json(where[part])
        sched = os.path.join(config_dir, "scheduler", "scheduler_config.json")
        if os.path.exists(sched):
            p.scheduler = configs.scheduler_config(configs.read_json(sched), sched)
    if p.raw["unet"].get("attention_type", "default") != "default":
        raise SourceError(f"{where['unet']}: attention_type {p.raw['unet']['attention_type']!r}; single files are read for the plain SD UNet")
    p.cfg = {"unet": configs.unet_config(p.raw["unet"], where["unet"]), "vae": configs.vae_config(p.raw["vae"], where["vae"]),
             "text_encoder": configs.clip_text_config(p.raw["text_encoder"], where["text_encoder"])}
    p.tokenizer_dir = tokenizer_dir
    with no_init():
        p.unet = UNet2DCondition(p.cfg["unet"], ip_tokens=ip_tokens)
        p.vae = AutoencoderKL(p.cfg["vae"])
        p.text_encoder = ClipTextModel(p.cfg["text_encoder"])
    keymap = keymaps.ldm_single_file(p.unet, p.vae, p.text_encoder, ema=ema)
    whole = nn.ModuleDict({"unet": p.unet, "vae": p.vae, "text_encoder": p.text_encoder})
    filled = keymap.load(ckpt, whole)
    if not ip_tokens:
        check_complete(whole, filled, keymap.what)
    p.sources = {"unet": path, "vae": path, "text_encoder": path}
    return p


def read_ip_adapter(base_src, ip_path, image_encoder_dir, variant=None, tokenizer_dir=None, ema=False, config_dir=None):
    """IP-Adapter for SD1.x: the base pipeline (folder or single file) with decoupled
    cross-attention, the adapter's image projection, and its CLIP image encoder."""
    ckpt = open_checkpoint(ip_path)
    names = set(ckpt.names())
    if any(n.startswith("image_proj.latents") or n.startswith("image_proj.layers.") for n in names):
        raise SourceError(f"{ip_path}: an IP-Adapter Plus checkpoint (Resampler image projection); "
                          "implemented: ip-adapter_sd15's linear projection (image_proj.proj, image_proj.norm)")
    if "image_proj.proj.weight" not in names:
        raise CheckpointError(ip_path, "IP-Adapter (image_proj + ip_adapter)", missing=["image_proj.proj.weight"])

    enc_cfg_path = os.path.join(image_encoder_dir, "config.json")
    raw_enc = configs.read_json(enc_cfg_path)
    enc_cfg = configs.clip_vision_config(raw_enc, enc_cfg_path)

    probe_cfg = _base_unet_cfg(base_src, config_dir)
    cross = probe_cfg["cross_attention_dim"]
    out_features, in_features = ckpt.shape("image_proj.proj.weight")
    if out_features % cross:
        raise CheckpointError(ip_path, "IP-Adapter (image_proj + ip_adapter)",
                              misshaped=[("image_proj.proj.weight", (out_features, in_features), (f"tokens*{cross}", in_features))])
    tokens = out_features // cross
    if in_features != enc_cfg["projection_dim"]:
        raise SourceError(f"{ip_path}: image_proj.proj takes {in_features}-dim image embeddings but the image encoder "
                          f"({enc_cfg_path}) has projection_dim {enc_cfg['projection_dim']}; they are not a pair")

    if os.path.isfile(base_src):
        p = read_single_file(base_src, tokenizer_dir, ema=ema, ip_tokens=tokens, config_dir=config_dir)
    else:
        p = read_pipeline_folder(base_src, "sd15", variant, ip_tokens=tokens)
    with no_init():
        p.image_proj = ImageProjection(in_features, cross, tokens)
        p.image_encoder = ClipVisionModelWithProjection(enc_cfg)
    both = nn.ModuleDict({"unet": p.unet, "image_proj": p.image_proj})
    keymaps.ip_adapter_map(p.cfg["unet"]).load(ckpt, both)
    _check_ip_filled(p, base_src, ip_path)
    enc_ckpt = open_component(image_encoder_dir, "model", variant=None)
    filled = keymaps.clip_vision_transformers(p.image_encoder).load(enc_ckpt, p.image_encoder)
    check_complete(p.image_encoder, filled, "CLIP vision encoder")
    p.raw["image_encoder"] = raw_enc
    p.cfg["image_encoder"] = enc_cfg
    p.cfg["image_proj"] = {"image_embed_dim": in_features, "cross_attention_dim": cross, "tokens": tokens}
    p.sources.update({"ip_adapter": ip_path, "image_encoder": enc_ckpt.path})
    return p


def _check_ip_filled(p, base_src, ip_path):
    # the base map covers every UNet parameter but the IP projections, and the IP map
    # covers exactly those: a UNet parameter neither fills is a table bug
    base = {e.ours for e in keymaps.unet_diffusers(p.unet).entries}
    ip = {e.ours[len("unet."):] for e in keymaps.ip_adapter_map(p.cfg["unet"]).entries if e.ours.startswith("unet.")}
    left = [k for k in p.unet.state_dict() if k not in base and k not in ip]
    if left:
        raise AssertionError(f"IP UNet parameters neither {base_src} nor {ip_path} fill: {left[:5]}")


def _base_unet_cfg(base_src, config_dir=None):
    if os.path.isfile(base_src):
        if config_dir:
            path = os.path.join(config_dir, "unet", "config.json")
            return configs.unet_config(configs.read_json(path), path)
        return configs.unet_config(configs.SD1_UNET, "SD1 UNet")
    path = os.path.join(base_src, "unet", "config.json")
    return configs.unet_config(configs.read_json(path), path)
