"""The key tables, one per architecture and published layout, read top to bottom.

- diffusers / transformers folders: our modules use their names, so those tables are the
  identity over our parameters, plus the older spellings still found in published files
  and the buffers that files carry but that are not weights.
- IP-Adapter (`ip-adapter_sd15.bin` / `.safetensors`): `image_proj.*` and
  `ip_adapter.N.to_{k,v}_ip.weight`, where N numbers every attention layer of the UNet
  (self and cross) in diffusers' processor order, so the cross-attentions are N = 1, 3, 5...
- single-file LDM / A1111 checkpoints (`model.diffusion_model.*`, `first_stage_model.*`,
  `cond_stage_model.transformer.*`): the original CompVis layout. The block tables below
  give, for each of our blocks, the LDM block it was stored as; a per-layer table renames
  the layer's own tensors (a resnet's in_layers.0 is our norm1, and so on). This is the
  public mapping diffusers' conversion script implements, restated as data.
"""
from keymap import CONV1X1_TO_LINEAR, Entry, KeyMap
from nn_unet import cross_attention_paths

# --- diffusers / transformers folders


def diffusers_map(module, what, exclude=(), aliases=(), ignored=()):
    """Identity over the module's parameters (minus `exclude` substrings)."""
    entries = [Entry(k, k) for k in module.state_dict() if not any(x in k for x in exclude)]
    return KeyMap(what, entries, aliases, ignored)


IP_WEIGHTS = (".to_k_ip.", ".to_v_ip.")


def unet_diffusers(unet):
    kind = {None: "UNet", "gligen": "GLIGEN UNet", "interaction": "InteractDiffusion UNet"}[unet.grounding]
    # the IP-Adapter's projections come from its own file (ip_adapter_map)
    return diffusers_map(unet, f"{kind} (diffusers layout)", exclude=IP_WEIGHTS)


# diffusers renamed the VAE's attention tensors in 0.15; files saved before still use the old names
VAE_OLD_ATTENTION_NAMES = [("to_q", "query"), ("to_k", "key"), ("to_v", "value"), ("to_out.0", "proj_attn")]


def vae_diffusers(vae):
    aliases = []
    for k in vae.state_dict():
        for new, old in VAE_OLD_ATTENTION_NAMES:
            marker = f"mid_block.attentions.0.{new}."
            if marker in k:
                aliases.append((k.replace(marker, f"mid_block.attentions.0.{old}."), k))
    return diffusers_map(vae, "VAE (diffusers layout)", aliases=aliases)


POSITION_IDS = "a buffer (0, 1, 2, ...) that transformers < 4.31 saved with the weights"


def clip_text_transformers(text):
    return diffusers_map(text, "CLIP text encoder (transformers layout)",
                         ignored=[(r"^text_model\.embeddings\.position_ids$", POSITION_IDS)])


def clip_vision_transformers(vision):
    return diffusers_map(vision, "CLIP vision encoder with projection (transformers layout)",
                         ignored=[(r"^vision_model\.embeddings\.position_ids$", POSITION_IDS)])


# --- IP-Adapter

IMAGE_PROJ = ["proj.weight", "proj.bias", "norm.weight", "norm.bias"]


def ip_adapter_map(unet_cfg):
    """Published IP-Adapter names -> our names inside ModuleDict(unet=..., image_proj=...)."""
    entries = [Entry(f"image_proj.{n}", f"image_proj.{n}") for n in IMAGE_PROJ]
    for k, path in enumerate(cross_attention_paths(unet_cfg)):
        n = 2 * k + 1  # processors alternate self (even) and cross (odd) attention
        entries.append(Entry(f"ip_adapter.{n}.to_k_ip.weight", f"unet.{path}.to_k_ip.weight"))
        entries.append(Entry(f"ip_adapter.{n}.to_v_ip.weight", f"unet.{path}.to_v_ip.weight"))
    return KeyMap("IP-Adapter (image_proj + ip_adapter)", entries)


# --- single-file LDM checkpoints

# a UNet resnet's tensors: ours -> LDM
LDM_RESNET = [
    ("norm1", "in_layers.0"),
    ("conv1", "in_layers.2"),
    ("time_emb_proj", "emb_layers.1"),
    ("norm2", "out_layers.0"),
    ("conv2", "out_layers.3"),
    ("conv_shortcut", "skip_connection"),
]
# a VAE resnet's tensors
LDM_VAE_RESNET = [("conv_shortcut", "nin_shortcut")]
# the VAE's mid-block attention: LDM stores q/k/v/proj_out as 1x1 convolutions
LDM_VAE_ATTENTION = [
    ("group_norm", "norm"),
    ("to_q", "q"),
    ("to_k", "k"),
    ("to_v", "v"),
    ("to_out.0", "proj_out"),
]
# a transformer (SpatialTransformer) block keeps its names in both layouts
SAME = []


def ldm_unet_blocks(cfg):
    """(our block prefix, LDM block prefix, layer table), top to bottom."""
    lpb = cfg["layers_per_block"]
    n = len(cfg["block_out_channels"])
    rows = [
        ("time_embedding.linear_1.", "time_embed.0.", SAME),
        ("time_embedding.linear_2.", "time_embed.2.", SAME),
        ("conv_in.", "input_blocks.0.0.", SAME),
    ]
    for b in range(n):
        for layer in range(lpb):
            i = 1 + b * (lpb + 1) + layer
            rows.append((f"down_blocks.{b}.resnets.{layer}.", f"input_blocks.{i}.0.", LDM_RESNET))
            rows.append((f"down_blocks.{b}.attentions.{layer}.", f"input_blocks.{i}.1.", SAME))
        if b < n - 1:
            rows.append((f"down_blocks.{b}.downsamplers.0.conv.", f"input_blocks.{(b + 1) * (lpb + 1)}.0.op.", SAME))
    rows += [
        ("mid_block.resnets.0.", "middle_block.0.", LDM_RESNET),
        ("mid_block.attentions.0.", "middle_block.1.", SAME),
        ("mid_block.resnets.1.", "middle_block.2.", LDM_RESNET),
    ]
    for b, kind in enumerate(cfg["up_block_types"]):
        for layer in range(lpb + 1):
            i = b * (lpb + 1) + layer
            rows.append((f"up_blocks.{b}.resnets.{layer}.", f"output_blocks.{i}.0.", LDM_RESNET))
            rows.append((f"up_blocks.{b}.attentions.{layer}.", f"output_blocks.{i}.1.", SAME))
        if b < n - 1:
            # the upsampler follows the block's last resnet (and its attention, if any)
            slot = 2 if kind == "CrossAttnUpBlock2D" else 1
            rows.append((f"up_blocks.{b}.upsamplers.0.conv.", f"output_blocks.{b * (lpb + 1) + lpb}.{slot}.conv.", SAME))
    rows += [
        ("conv_norm_out.", "out.0.", SAME),
        ("conv_out.", "out.2.", SAME),
    ]
    return rows


def ldm_vae_blocks(cfg):
    lpb = cfg["layers_per_block"]
    n = len(cfg["block_out_channels"])
    rows = [("encoder.conv_in.", "encoder.conv_in.", SAME)]
    for b in range(n):
        for layer in range(lpb):
            rows.append((f"encoder.down_blocks.{b}.resnets.{layer}.", f"encoder.down.{b}.block.{layer}.", LDM_VAE_RESNET))
        if b < n - 1:
            rows.append((f"encoder.down_blocks.{b}.downsamplers.0.conv.", f"encoder.down.{b}.downsample.conv.", SAME))
    for half in ("encoder", "decoder"):
        rows += [
            (f"{half}.mid_block.resnets.0.", f"{half}.mid.block_1.", LDM_VAE_RESNET),
            (f"{half}.mid_block.attentions.0.", f"{half}.mid.attn_1.", LDM_VAE_ATTENTION),
            (f"{half}.mid_block.resnets.1.", f"{half}.mid.block_2.", LDM_VAE_RESNET),
        ]
        if half == "encoder":
            rows += [("encoder.conv_norm_out.", "encoder.norm_out.", SAME), ("encoder.conv_out.", "encoder.conv_out.", SAME),
                     ("decoder.conv_in.", "decoder.conv_in.", SAME)]
    for b in range(n):
        ldm = n - 1 - b  # LDM numbers the decoder's levels from the highest resolution
        for layer in range(lpb + 1):
            rows.append((f"decoder.up_blocks.{b}.resnets.{layer}.", f"decoder.up.{ldm}.block.{layer}.", LDM_VAE_RESNET))
        if b < n - 1:
            rows.append((f"decoder.up_blocks.{b}.upsamplers.0.conv.", f"decoder.up.{ldm}.upsample.conv.", SAME))
    rows += [
        ("decoder.conv_norm_out.", "decoder.norm_out.", SAME),
        ("decoder.conv_out.", "decoder.conv_out.", SAME),
        ("quant_conv.", "quant_conv.", SAME),
        ("post_quant_conv.", "post_quant_conv.", SAME),
    ]
    return rows


def _rename_layer(rest, table):
    for ours, ldm in table:
        if rest.startswith(ours + "."):
            return ldm + rest[len(ours):]
    return rest


def _block_map(module_keys, rows, what, transform_for=None):
    entries = []
    rows = sorted(rows, key=lambda r: -len(r[0]))  # the longest block prefix wins
    for k in module_keys:
        for ours, ldm, table in rows:
            if k.startswith(ours):
                published = ldm + _rename_layer(k[len(ours):], table)
                t = transform_for(k, table) if transform_for else None
                entries.append(Entry(published, k, t))
                break
        else:
            raise ValueError(f"{what}: no block row covers our parameter {k}")
    return entries


def ldm_unet(unet):
    if unet.grounding:
        raise ValueError("single-file LDM checkpoints are converted for the plain SD UNet (with or without IP-Adapter) only")
    keys = [k for k in unet.state_dict() if not any(x in k for x in IP_WEIGHTS)]  # those come from the adapter's file
    return KeyMap("UNet (LDM layout)", _block_map(keys, ldm_unet_blocks(unet.cfg), "UNet (LDM layout)"))


def ldm_unet_ema(unet):
    """The EMA copy LDM training keeps beside the weights: model_ema.<the LDM name under
    diffusion_model, dots removed> (e.g. model_ema.diffusion_modelinput_blocks00weight)."""
    base = ldm_unet(unet)
    return KeyMap("UNet (LDM EMA weights)", [Entry("model_ema.diffusion_model" + e.published.replace(".", ""), e.ours) for e in base.entries])


def ldm_vae(vae):
    def transform(k, table):
        if table is LDM_VAE_ATTENTION and k.endswith(".weight") and ".group_norm." not in k:
            return CONV1X1_TO_LINEAR
        return None
    return KeyMap("VAE (LDM layout)", _block_map(list(vae.state_dict()), ldm_vae_blocks(vae.cfg), "VAE (LDM layout)", transform))


def ldm_clip_text(text):
    """Under cond_stage_model.transformer. the text encoder keeps transformers' names;
    files written with transformers < 4.22 lack the `text_model.` level."""
    keys = list(text.state_dict())
    return KeyMap("CLIP text encoder (LDM layout)", [Entry(k, k) for k in keys],
                  aliases=[(k[len("text_model."):], k) for k in keys],
                  ignored=[(r"^(text_model\.)?embeddings\.position_ids$", POSITION_IDS)])


LDM_TRAINING_STATE = [
    (r"^model_ema\.", "the EMA copy of the UNet (converted instead with --ema)"),
    (r"^(betas|alphas_cumprod|alphas_cumprod_prev|sqrt_alphas_cumprod|sqrt_one_minus_alphas_cumprod|"
     r"log_one_minus_alphas_cumprod|sqrt_recip_alphas_cumprod|sqrt_recipm1_alphas_cumprod|posterior_variance|"
     r"posterior_log_variance_clipped|posterior_mean_coef1|posterior_mean_coef2|logvar)$",
     "the training noise schedule (the package's scheduler_config.json has it)"),
    (r"^first_stage_model\.loss\.", "the VAE's training loss (LPIPS, discriminator)"),
]
LDM_PREFIXES = {"unet": "model.diffusion_model.", "vae": "first_stage_model.", "text_encoder": "cond_stage_model.transformer."}


def ldm_single_file(unet, vae, text, ema=False):
    """The whole single file, onto ModuleDict(unet=..., vae=..., text_encoder=...)."""
    parts = [
        ldm_unet_ema(unet).prefixed("", "unet.") if ema else ldm_unet(unet).prefixed(LDM_PREFIXES["unet"], "unet."),
        ldm_vae(vae).prefixed(LDM_PREFIXES["vae"], "vae."),
        ldm_clip_text(text).prefixed(LDM_PREFIXES["text_encoder"], "text_encoder."),
    ]
    ignored = [(p, why) for p, why in LDM_TRAINING_STATE if not (ema and p == r"^model_ema\.")]
    if ema:
        ignored += [(r"^model\.diffusion_model\.", "the non-EMA UNet weights (--ema converts the EMA copy)"),
                    (r"^model_ema\.(decay|num_updates)$", "EMA bookkeeping")]
    entries, aliases, ign = [], [], list(ignored)
    for p in parts:
        entries += p.entries
        aliases += list(p.aliases.items())
        ign += [(r.pattern, why) for r, why in p.ignored]
    return KeyMap("Stable Diffusion 1.x single-file (LDM layout)", entries, aliases, ign)
