"""Random-weight checkpoints in the published layouts, at any configuration: the tests'
tiny models (make_tiny.py) and the full-size proof's real-size ones (make_fullsize.py).

Weights are written under their published names through the same key tables the
converter reads them with (KeyMap.to_published), so a fixture and a real checkpoint of
the same configuration have the same names and shapes.
"""
import os
import shutil

import torch
from torch import nn

import configs
import keymaps
from checkpoint_io import write_safetensors
from nn_clip import ClipTextModel, ClipVisionModelWithProjection
from nn_ip_adapter import ImageProjection
from nn_layers import no_init
from nn_unet import UNet2DCondition
from nn_vae import AutoencoderKL

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY_TOKENIZER = os.path.join(REPO, "models", "shapes-base", "tokenizer")

# --- tiny configurations (seconds to convert; sd15-compatible VAE and schedule)

TINY_UNET = {
    "_class_name": "UNet2DConditionModel", "in_channels": 4, "out_channels": 4, "sample_size": 8,
    "block_out_channels": [32, 64], "layers_per_block": 1, "attention_head_dim": 8, "cross_attention_dim": 32,
    "norm_num_groups": 16, "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
}
# three levels: an up block with both attentions and an upsampler (LDM stores that
# upsampler in slot 2, after the attention), for the key-table tests
TINY_UNET_3 = dict(TINY_UNET, block_out_channels=[32, 32, 64],
                   down_block_types=["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
                   up_block_types=["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"])
TINY_VAE = {
    "_class_name": "AutoencoderKL", "in_channels": 3, "out_channels": 3, "latent_channels": 4,
    "block_out_channels": [8, 8, 16, 16], "layers_per_block": 1, "norm_num_groups": 4, "sample_size": 64,
    "scaling_factor": 0.18215, "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
}
TINY_TEXT = {
    "architectures": ["CLIPTextModel"], "vocab_size": 551, "hidden_size": 32, "intermediate_size": 37,
    "num_hidden_layers": 2, "num_attention_heads": 4, "max_position_embeddings": 16, "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-5, "eos_token_id": 2,
}
TINY_VISION = {
    "architectures": ["CLIPVisionModelWithProjection"], "hidden_size": 32, "intermediate_size": 37,
    "num_hidden_layers": 2, "num_attention_heads": 4, "image_size": 32, "patch_size": 8, "projection_dim": 16,
    "hidden_act": "gelu", "layer_norm_eps": 1e-5,
}
IP_TOKENS = 4

# --- the real configurations (make_fullsize.py)

SD15_UNET = dict(configs.SD1_UNET)
SD15_VAE = dict(configs.SD1_VAE)
SD15_TEXT = dict(configs.CLIP_VIT_L14_TEXT)
# IP-Adapter's image encoder: OpenCLIP ViT-H/14 (laion2B) as CLIPVisionModelWithProjection
VIT_H14 = {
    "architectures": ["CLIPVisionModelWithProjection"], "hidden_size": 1280, "intermediate_size": 5120,
    "num_hidden_layers": 32, "num_attention_heads": 16, "image_size": 224, "patch_size": 14, "projection_dim": 1024,
    "hidden_act": "gelu", "layer_norm_eps": 1e-5, "num_channels": 3,
}


def randomize(module, seed):
    """Weights at the scale trained networks have (so outputs are O(1) and a 1e-4
    comparison means something): matrices ~ 1/sqrt(fan-in), norms ~ 1, biases small,
    the grounding gates well away from 0 so the fusers do contribute."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.dim() >= 2:
                fan_in = p[0].numel()
                scale = 0.5 if "embedding" in name else fan_in ** -0.5
                p.copy_(torch.randn(p.shape, generator=g) * scale)
            elif p.dim() == 1 and name.endswith("weight") and "norm" in name:
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
            elif p.dim() == 0:
                p.copy_(0.6 + 0.2 * torch.randn((), generator=g))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
    return module


def build(cfg_raw, kind, seed, grounding=None, ip_tokens=0):
    """A randomized module of one architecture from its raw config."""
    with no_init():
        if kind == "unet":
            m = UNet2DCondition(configs.unet_config(cfg_raw, "fixture"), grounding=grounding, ip_tokens=ip_tokens)
        elif kind == "vae":
            m = AutoencoderKL(configs.vae_config(cfg_raw, "fixture"))
        elif kind == "text":
            m = ClipTextModel(configs.clip_text_config(cfg_raw, "fixture"))
        elif kind == "vision":
            m = ClipVisionModelWithProjection(configs.clip_vision_config(cfg_raw, "fixture"))
        else:
            raise ValueError(kind)
    return randomize(m, seed)


def _json(path, obj):
    import json
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)


def _save(path, tensors):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if path.endswith(".safetensors"):
        write_safetensors(path, tensors)
    else:
        torch.save({k: v.contiguous() for k, v in tensors.items()}, path)


def write_pipeline(folder, kind="sd15", seed=0, unet=TINY_UNET, vae=TINY_VAE, text=TINY_TEXT, tokenizer=TINY_TOKENIZER,
                   fmt="safetensors", unet_module=None):
    """A diffusers pipeline folder. kind: sd15 | gligen | interactdiffusion. fmt: safetensors
    or bin. Returns the modules whose weights were written (for comparisons)."""
    grounding = {"sd15": None, "gligen": "gligen", "interactdiffusion": "interaction"}[kind]
    unet_raw = dict(unet)
    if grounding:
        unet_raw["attention_type"] = "gated"
    if kind == "interactdiffusion":
        unet_raw["_class_name"] = "InteractDiffusionUNet2DConditionModel"
    mods = {
        "unet": unet_module or build(unet_raw, "unet", seed + 1, grounding=grounding),
        "vae": build(vae, "vae", seed + 2),
        "text_encoder": build(text, "text", seed + 3),
    }
    ext = ".safetensors" if fmt == "safetensors" else ".bin"
    _json(os.path.join(folder, "model_index.json"), {"_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.27.0"})
    _json(os.path.join(folder, "unet", "config.json"), unet_raw)
    _save(os.path.join(folder, "unet", "diffusion_pytorch_model" + ext), keymaps.unet_diffusers(mods["unet"]).to_published(mods["unet"].state_dict()))
    _json(os.path.join(folder, "vae", "config.json"), vae)
    _save(os.path.join(folder, "vae", "diffusion_pytorch_model" + ext), mods["vae"].state_dict())
    _json(os.path.join(folder, "text_encoder", "config.json"), text)
    te_name = "model.safetensors" if fmt == "safetensors" else "pytorch_model.bin"
    _save(os.path.join(folder, "text_encoder", te_name), mods["text_encoder"].state_dict())
    _json(os.path.join(folder, "scheduler", "scheduler_config.json"), configs.SD1_SCHEDULER)
    shutil.copytree(tokenizer, os.path.join(folder, "tokenizer"), dirs_exist_ok=True)
    return mods


def write_single_file(path, seed=0, unet=TINY_UNET, vae=TINY_VAE, text=TINY_TEXT, extras=True):
    """An LDM / A1111 single file, through the converter's own LDM table (the round trip
    is tested separately against hand-written LDM names)."""
    mods = {"unet": build(unet, "unet", seed + 1), "vae": build(vae, "vae", seed + 2), "text_encoder": build(text, "text", seed + 3)}
    whole = nn.ModuleDict(mods)
    tensors = keymaps.ldm_single_file(mods["unet"], mods["vae"], mods["text_encoder"]).to_published(whole.state_dict())
    if extras:  # what real files carry beside the weights
        tensors["betas"] = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000) ** 2
        tensors["alphas_cumprod"] = torch.cumprod(1 - tensors["betas"], 0)
        tensors["cond_stage_model.transformer.text_model.embeddings.position_ids"] = torch.arange(text["max_position_embeddings"])[None]
    _save(path, tensors)
    return mods


def write_ip_adapter(path, unet_module, image_embed_dim, seed=0, tokens=IP_TOKENS):
    """ip-adapter_sd15's published form: {"image_proj": {...}, "ip_adapter": {"1.to_k_ip.weight", ...}}
    as a .bin of nested dicts, or flat "image_proj.*" / "ip_adapter.*" names as .safetensors.
    `unet_module` is the IP UNet whose to_k_ip/to_v_ip values are written."""
    proj = randomize(ImageProjection(image_embed_dim, unet_module.cfg["cross_attention_dim"], tokens), seed)
    both = nn.ModuleDict({"unet": unet_module, "image_proj": proj})
    flat = keymaps.ip_adapter_map(unet_module.cfg).to_published(both.state_dict())
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    if path.endswith(".safetensors"):
        write_safetensors(path, flat)
    else:
        nested = {"image_proj": {}, "ip_adapter": {}}
        for k, v in flat.items():
            section, rest = k.split(".", 1)
            nested[section][rest] = v.contiguous()
        torch.save(nested, path)
    return proj


def write_image_encoder(folder, cfg=TINY_VISION, seed=0, fmt="safetensors"):
    m = build(cfg, "vision", seed)
    _json(os.path.join(folder, "config.json"), cfg)
    sd = dict(m.state_dict())
    sd["vision_model.embeddings.position_ids"] = torch.arange((cfg["image_size"] // cfg["patch_size"]) ** 2 + 1)[None]
    _save(os.path.join(folder, "model.safetensors" if fmt == "safetensors" else "pytorch_model.bin"), sd)
    return m


def write_ip_adapter_set(folder, seed=0, unet=TINY_UNET, vae=TINY_VAE, text=TINY_TEXT, vision=TINY_VISION,
                         tokenizer=TINY_TOKENIZER, ip_format="bin"):
    """Base pipeline (its UNet carries the IP weights we also write), adapter, encoder."""
    ip_unet = build(unet, "unet", seed + 1, ip_tokens=IP_TOKENS)
    mods = write_pipeline(os.path.join(folder, "base"), "sd15", seed, unet, vae, text, tokenizer, unet_module=ip_unet)
    enc = write_image_encoder(os.path.join(folder, "image_encoder"), vision, seed + 4)
    ip_file = os.path.join(folder, "ip-adapter_sd15." + ("bin" if ip_format == "bin" else "safetensors"))
    proj = write_ip_adapter(ip_file, ip_unet, vision["projection_dim"], seed + 5)
    mods.update({"image_encoder": enc, "image_proj": proj})
    return mods, ip_file
