"""The config.json files of each component, read once and checked: a field we do not
implement with a value other than its default is refused with the file, the field and
what is allowed, instead of building a model that silently differs from the checkpoint.
Unknown fields are ignored, as diffusers and transformers ignore them.

Also the published configurations of Stable Diffusion 1.x (for single-file checkpoints,
which carry no config) and of CLIP ViT-L/14's text tower.
"""
import json
import os


class ConfigError(Exception):
    pass


def read_json(path):
    try:
        with open(path) as f:
            obj = json.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: missing") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON: {e}") from None
    if not isinstance(obj, dict):
        raise ConfigError(f"{path}: not a JSON object")
    return obj


class _Reader:
    def __init__(self, raw, source):
        self.raw = raw
        self.source = source

    def get(self, key, default=None, kind=None, allowed=None, aliases=()):
        v = self.raw.get(key)
        for a in aliases:
            if v is None:
                v = self.raw.get(a)
        if v is None:
            v = default
        if v is None:
            raise ConfigError(f"{self.source}: field \"{key}\" is missing")
        if kind is not None and not _is(v, kind):
            raise ConfigError(f"{self.source}: field \"{key}\" is {json.dumps(v)}; expected {kind}")
        if allowed is not None and v not in allowed:
            raise ConfigError(f"{self.source}: field \"{key}\" is {json.dumps(v)}; implemented: {', '.join(json.dumps(a) for a in allowed)}")
        return v

    def fixed(self, key, default, also=()):
        """A field the architecture here implements only at its default value."""
        v = self.raw.get(key, default)
        if v != default and v not in also:
            allowed = [default, *also]
            raise ConfigError(f"{self.source}: field \"{key}\" is {json.dumps(v)}; implemented: {', '.join(json.dumps(a) for a in allowed)}")
        return v


def _is(v, kind):
    if kind == "int":
        return isinstance(v, int) and not isinstance(v, bool) and v > 0
    if kind == "number":
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if kind == "bool":
        return isinstance(v, bool)
    if kind == "str":
        return isinstance(v, str)
    if kind == "int list":
        return isinstance(v, list) and v and all(_is(x, "int") for x in v)
    if kind == "str list":
        return isinstance(v, list) and v and all(isinstance(x, str) for x in v)
    raise ValueError(kind)


DOWN_TYPES = ("CrossAttnDownBlock2D", "DownBlock2D")
UP_TYPES = ("UpBlock2D", "CrossAttnUpBlock2D")


def unet_config(raw, source):
    """UNet2DConditionModel of the SD1.x family (and its GLIGEN / InteractDiffusion forms)."""
    r = _Reader(raw, source)
    blocks = r.get("block_out_channels", [320, 640, 1280, 1280], "int list")
    n = len(blocks)
    down = r.get("down_block_types", ["CrossAttnDownBlock2D"] * (n - 1) + ["DownBlock2D"], "str list")
    up = r.get("up_block_types", ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * (n - 1), "str list")
    for key, types, allowed in (("down_block_types", down, DOWN_TYPES), ("up_block_types", up, UP_TYPES)):
        if len(types) != n:
            raise ConfigError(f"{source}: field \"{key}\" has {len(types)} entries but block_out_channels has {n}")
        for t in types:
            if t not in allowed:
                raise ConfigError(f"{source}: field \"{key}\" has {json.dumps(t)}; implemented: {', '.join(allowed)}")
    r.get("mid_block_type", "UNetMidBlock2DCrossAttn", "str", allowed=["UNetMidBlock2DCrossAttn"])
    # diffusers' legacy naming: "attention_head_dim" holds the number of heads when
    # num_attention_heads is null (all SD1.x configs)
    heads = raw.get("num_attention_heads") or r.get("attention_head_dim", 8)
    if isinstance(heads, int):
        heads = [heads] * n
    if not _is(heads, "int list") or len(heads) != n:
        raise ConfigError(f"{source}: field \"attention_head_dim\" is {json.dumps(heads)}; expected an int or {n} ints")
    groups = r.get("norm_num_groups", 32, "int")
    for i, c in enumerate(blocks):
        if c % groups or c % heads[i]:
            raise ConfigError(f"{source}: block_out_channels {blocks} must divide by norm_num_groups {groups} and the heads {heads}")
    cross = r.get("cross_attention_dim", 1280)
    if not _is(cross, "int"):
        raise ConfigError(f"{source}: field \"cross_attention_dim\" is {json.dumps(cross)}; implemented: one int")
    layers = r.get("layers_per_block", 2)
    if not _is(layers, "int"):
        raise ConfigError(f"{source}: field \"layers_per_block\" is {json.dumps(layers)}; implemented: one int")
    tl = r.get("transformer_layers_per_block", 1)
    if not _is(tl, "int"):
        raise ConfigError(f"{source}: field \"transformer_layers_per_block\" is {json.dumps(tl)}; implemented: one int")
    cfg = {
        "in_channels": r.get("in_channels", 4, "int"),
        "out_channels": r.get("out_channels", 4, "int"),
        "sample_size": r.get("sample_size", 64, "int"),
        "block_out_channels": blocks,
        "down_block_types": down,
        "up_block_types": up,
        "heads": heads,
        "layers_per_block": layers,
        "transformer_layers": tl,
        "cross_attention_dim": cross,
        "norm_num_groups": groups,
        "norm_eps": r.get("norm_eps", 1e-5, "number"),
        "flip_sin_to_cos": r.get("flip_sin_to_cos", True, "bool"),
        "freq_shift": r.get("freq_shift", 0, "number"),
        "use_linear_projection": r.get("use_linear_projection", False, "bool"),
        "attention_type": r.get("attention_type", "default", "str", allowed=["default", "gated"]),
    }
    for key, default in [("center_input_sample", False), ("only_cross_attention", False), ("dual_cross_attention", False),
                         ("downsample_padding", 1), ("mid_block_scale_factor", 1), ("act_fn", "silu"),
                         ("encoder_hid_dim", None), ("encoder_hid_dim_type", None), ("class_embed_type", None),
                         ("addition_embed_type", None), ("num_class_embeds", None), ("resnet_time_scale_shift", "default"),
                         ("resnet_skip_time_act", False), ("resnet_out_scale_factor", 1.0), ("time_embedding_type", "positional"),
                         ("time_embedding_dim", None), ("time_embedding_act_fn", None), ("timestep_post_act", None),
                         ("time_cond_proj_dim", None), ("conv_in_kernel", 3), ("conv_out_kernel", 3),
                         ("projection_class_embeddings_input_dim", None), ("class_embeddings_concat", False),
                         ("cross_attention_norm", None)]:
        r.fixed(key, default)
    r.fixed("mid_block_only_cross_attention", None, also=(False,))
    return cfg


def vae_config(raw, source):
    r = _Reader(raw, source)
    blocks = r.get("block_out_channels", [64], "int list")
    n = len(blocks)
    down = r.get("down_block_types", ["DownEncoderBlock2D"] * n, "str list")
    up = r.get("up_block_types", ["UpDecoderBlock2D"] * n, "str list")
    if len(down) != n or any(t != "DownEncoderBlock2D" for t in down):
        raise ConfigError(f"{source}: field \"down_block_types\" is {json.dumps(down)}; implemented: {n} x \"DownEncoderBlock2D\"")
    if len(up) != n or any(t != "UpDecoderBlock2D" for t in up):
        raise ConfigError(f"{source}: field \"up_block_types\" is {json.dumps(up)}; implemented: {n} x \"UpDecoderBlock2D\"")
    cfg = {
        "in_channels": r.get("in_channels", 3, "int"),
        "out_channels": r.get("out_channels", 3, "int"),
        "latent_channels": r.get("latent_channels", 4, "int"),
        "block_out_channels": blocks,
        "layers_per_block": r.get("layers_per_block", 1, "int"),
        "norm_num_groups": r.get("norm_num_groups", 32, "int"),
        "sample_size": r.get("sample_size", 32, "int"),
        "scaling_factor": r.get("scaling_factor", 0.18215, "number"),
    }
    r.fixed("act_fn", "silu")
    r.fixed("mid_block_add_attention", True)
    r.fixed("use_quant_conv", True)
    r.fixed("use_post_quant_conv", True)
    r.fixed("shift_factor", None)
    r.fixed("latents_mean", None)
    r.fixed("latents_std", None)
    return cfg


ACTIVATIONS = ("quick_gelu", "gelu", "gelu_new")


def clip_text_config(raw, source):
    r = _Reader(raw, source)
    if "text_config" in raw and "hidden_size" not in raw:
        raise ConfigError(f"{source}: a full CLIPModel config; expected a CLIPTextModel config (the text_encoder folder's)")
    cfg = {
        "vocab_size": r.get("vocab_size", 49408, "int"),
        "hidden_size": r.get("hidden_size", 512, "int"),
        "intermediate_size": r.get("intermediate_size", 2048, "int"),
        "num_hidden_layers": r.get("num_hidden_layers", 12, "int"),
        "num_attention_heads": r.get("num_attention_heads", 8, "int"),
        "max_position_embeddings": r.get("max_position_embeddings", 77, "int"),
        "hidden_act": r.get("hidden_act", "quick_gelu", "str", allowed=list(ACTIVATIONS)),
        "layer_norm_eps": r.get("layer_norm_eps", 1e-5, "number"),
        # transformers: eos_token_id 2 is the legacy value meaning "pool at argmax(input_ids)"
        "eos_token_id": r.get("eos_token_id", 2, "number"),
    }
    if cfg["hidden_size"] % cfg["num_attention_heads"]:
        raise ConfigError(f"{source}: hidden_size {cfg['hidden_size']} does not divide by num_attention_heads {cfg['num_attention_heads']}")
    return cfg


def clip_vision_config(raw, source):
    r = _Reader(raw, source)
    if "vision_config" in raw and "hidden_size" not in raw:
        raw = raw["vision_config"]
        r = _Reader(raw, source + " [vision_config]")
    cfg = {
        "hidden_size": r.get("hidden_size", 768, "int"),
        "intermediate_size": r.get("intermediate_size", 3072, "int"),
        "num_hidden_layers": r.get("num_hidden_layers", 12, "int"),
        "num_attention_heads": r.get("num_attention_heads", 12, "int"),
        "num_channels": r.get("num_channels", 3, "int"),
        "image_size": r.get("image_size", 224, "int"),
        "patch_size": r.get("patch_size", 32, "int"),
        "projection_dim": r.get("projection_dim", 512, "int"),
        "hidden_act": r.get("hidden_act", "quick_gelu", "str", allowed=list(ACTIVATIONS)),
        "layer_norm_eps": r.get("layer_norm_eps", 1e-5, "number"),
    }
    if cfg["image_size"] % cfg["patch_size"]:
        raise ConfigError(f"{source}: image_size {cfg['image_size']} does not divide by patch_size {cfg['patch_size']}")
    return cfg


def scheduler_config(raw, source):
    """Only what decides the noise schedule is checked; the engine reads the file itself."""
    r = _Reader(raw, source)
    r.get("beta_schedule", "linear", "str", allowed=["linear", "scaled_linear", "squaredcos_cap_v2"])
    r.get("num_train_timesteps", 1000, "int")
    r.get("prediction_type", "epsilon", "str", allowed=["epsilon", "v_prediction", "sample"])
    return raw


# --- the published configurations of Stable Diffusion 1.x (single-file checkpoints carry none)

SD1_UNET = {
    "_class_name": "UNet2DConditionModel", "in_channels": 4, "out_channels": 4, "sample_size": 64,
    "block_out_channels": [320, 640, 1280, 1280], "layers_per_block": 2, "attention_head_dim": 8,
    "cross_attention_dim": 768, "norm_num_groups": 32, "norm_eps": 1e-5, "flip_sin_to_cos": True, "freq_shift": 0,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "mid_block_type": "UNetMidBlock2DCrossAttn", "use_linear_projection": False, "act_fn": "silu",
}
SD1_VAE = {
    "_class_name": "AutoencoderKL", "in_channels": 3, "out_channels": 3, "latent_channels": 4,
    "block_out_channels": [128, 256, 512, 512], "layers_per_block": 2, "norm_num_groups": 32,
    "sample_size": 512, "scaling_factor": 0.18215, "act_fn": "silu",
    "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
}
CLIP_VIT_L14_TEXT = {
    "architectures": ["CLIPTextModel"], "model_type": "clip_text_model", "vocab_size": 49408, "hidden_size": 768,
    "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12, "max_position_embeddings": 77,
    "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5, "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1,
    "projection_dim": 768,
}
# The schedule SD1.x was trained with (runwayml/stable-diffusion-v1-5's scheduler folder)
SD1_SCHEDULER = {
    "_class_name": "PNDMScheduler", "num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012,
    "beta_schedule": "scaled_linear", "trained_betas": None, "skip_prk_steps": True, "set_alpha_to_one": False,
    "steps_offset": 1, "prediction_type": "epsilon", "clip_sample": False, "timestep_spacing": "leading",
}


def find(folder, *names):
    for n in names:
        p = os.path.join(folder, n)
        if os.path.exists(p):
            return p
    return None
