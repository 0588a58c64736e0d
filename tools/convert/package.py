"""Writing an engine package: the optimum ONNX folder layout (model_index.json, unet/,
text_encoder/, vae_decoder/, vae_encoder/, tokenizer/, scheduler/, and image_encoder/,
image_proj/ for IP-Adapter), the manifest amdm.json the engine reads
(gpu-runner/engine/model-package.ts; extensions in docs/real-models.md, "Package
format"), and convert.json: where the weights came from, their digests (so another
package can share identical components), and the per-component check results.
"""
import hashlib
import json
import os
import shutil

import configs

ECOSYSTEM = "sd15"
SD15 = {"latent_channels": 4, "vae_scale_factor": 8, "beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012}
TOKENIZER_FILES = ("tokenizer_config.json", "vocab.json", "merges.txt", "special_tokens_map.json", "tokenizer.json", "added_tokens.json")
SHAREABLE = {"text_encoder": ["text_encoder"], "vae": ["vae_decoder", "vae_encoder"], "tokenizer": ["tokenizer"], "scheduler": ["scheduler"]}

# CLIPImageProcessor's defaults, which IP-Adapter's reference code uses
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


class PackageError(Exception):
    pass


def write_json(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


def check_ecosystem(cfg_vae, scheduler, source):
    """The converter writes sd15 packages only; say which field says otherwise."""
    f = 2 ** (len(cfg_vae["block_out_channels"]) - 1)
    got = {"latent_channels": cfg_vae["latent_channels"], "vae_scale_factor": f,
           "beta_schedule": scheduler.get("beta_schedule", "linear"), "beta_start": scheduler.get("beta_start", 0.0001),
           "beta_end": scheduler.get("beta_end", 0.02)}
    bad = [f"{k} {got[k]!r} (sd15: {v!r})" for k, v in SD15.items() if got[k] != v]
    if bad:
        raise PackageError(f"{source}: not a Stable Diffusion 1.x model: {'; '.join(bad)}")


def sizes(cfg_unet, cfg_vae):
    f = 2 ** (len(cfg_vae["block_out_channels"]) - 1)
    side = cfg_unet["sample_size"] * f
    return {"default": [side, side], "min": max(f, side // 2), "max": side * 2, "multiple": f}


def tokenizer_digest(folder):
    h = hashlib.sha256()
    for n in TOKENIZER_FILES:
        p = os.path.join(folder, n)
        if os.path.exists(p):
            h.update(n.encode())
            with open(p, "rb") as f:
                h.update(f.read())
    return h.hexdigest()


def scheduler_digest(cfg):
    return hashlib.sha256(json.dumps({k: v for k, v in cfg.items() if not k.startswith("_")}, sort_keys=True).encode()).hexdigest()


def check_tokenizer(folder, text_cfg):
    """The tokenizer must fit the text encoder's embedding table."""
    for need in ("vocab.json", "merges.txt"):
        if not os.path.exists(os.path.join(folder, need)) and not os.path.exists(os.path.join(folder, "tokenizer.json")):
            raise PackageError(f"{folder}: no {need} (a CLIP tokenizer needs vocab.json and merges.txt, or tokenizer.json)")
    if os.path.exists(os.path.join(folder, "vocab.json")):
        vocab = configs.read_json(os.path.join(folder, "vocab.json"))
    else:
        vocab = configs.read_json(os.path.join(folder, "tokenizer.json"))["model"]["vocab"]
    added = {}
    if os.path.exists(os.path.join(folder, "added_tokens.json")):
        added = configs.read_json(os.path.join(folder, "added_tokens.json"))
    top = max([*vocab.values(), *added.values()])
    if top >= text_cfg["vocab_size"]:
        raise PackageError(f"{folder}: token id {top} is past the text encoder's vocab_size {text_cfg['vocab_size']}; "
                           "the tokenizer and text encoder are not a pair")
    for special in ("<|startoftext|>", "<|endoftext|>"):
        if special not in vocab:
            raise PackageError(f"{folder}: the vocabulary lacks {special}")


def copy_tokenizer(src, dst):
    os.makedirs(dst, exist_ok=True)
    for n in TOKENIZER_FILES:
        if os.path.exists(os.path.join(src, n)):
            shutil.copyfile(os.path.join(src, n), os.path.join(dst, n))


def model_index(extra_components=()):
    idx = {
        "_class_name": "OnnxStableDiffusionPipeline",
        "_diffusers_version": "0.30.0",
        "scheduler": ["diffusers", "DDIMScheduler"],
        "text_encoder": ["diffusers", "OnnxRuntimeModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "OnnxRuntimeModel"],
        "vae_decoder": ["diffusers", "OnnxRuntimeModel"],
        "vae_encoder": ["diffusers", "OnnxRuntimeModel"],
        "safety_checker": [None, None],
        "feature_extractor": [None, None],
        "requires_safety_checker": False,
    }
    for c in extra_components:
        idx[c] = ["diffusers", "OnnxRuntimeModel"]
    return idx


def unet_inputs(kind, dtype, text_hidden, max_objects):
    """The manifest's unet_inputs: the UNet graph inputs beyond sample, timestep and
    encoder_hidden_states, and the request field (source) that fills each."""
    K, D = max_objects, text_hidden
    gate = {"name": "fuser_gate", "dtype": dtype, "shape": [1], "source": "scheduled_sampling.gate"}
    if kind == "gligen":
        return [{"name": "boxes", "dtype": dtype, "shape": ["batch", K, 4], "source": "grounding.boxes"},
                {"name": "phrase_embeds", "dtype": dtype, "shape": ["batch", K, D], "source": "grounding.phrase_embeds"},
                {"name": "mask", "dtype": dtype, "shape": ["batch", K], "source": "grounding.mask"}, gate]
    if kind == "interactdiffusion":
        return [{"name": "subject_boxes", "dtype": dtype, "shape": ["batch", K, 4], "source": "interactions.subject_boxes"},
                {"name": "object_boxes", "dtype": dtype, "shape": ["batch", K, 4], "source": "interactions.object_boxes"},
                {"name": "subject_phrase_embeds", "dtype": dtype, "shape": ["batch", K, D], "source": "interactions.subject_phrase_embeds"},
                {"name": "object_phrase_embeds", "dtype": dtype, "shape": ["batch", K, D], "source": "interactions.object_phrase_embeds"},
                {"name": "action_phrase_embeds", "dtype": dtype, "shape": ["batch", K, D], "source": "interactions.action_phrase_embeds"},
                {"name": "mask", "dtype": dtype, "shape": ["batch", K], "source": "interactions.mask"}, gate]
    if kind == "ip-adapter":
        return [{"name": "ip_scale", "dtype": dtype, "shape": [1], "source": "reference_image.scale"}]
    return []


def manifest(kind, model_id, description, components, size, inputs, *, max_objects=None, beta=None, image=None):
    m = {
        "schema": "amdm.model/v1",
        "id": model_id,
        "description": description,
        "ecosystem": ECOSYSTEM,
        "components": components,
        "sizes": size,
    }
    if kind == "gligen":
        m["grounding"] = {"max_objects": max_objects, "phrase_embedding": "text_encoder.pooler_output", "unconditional": "mask_zero"}
    if kind == "interactdiffusion":
        m["interactions"] = {"max_interactions": max_objects, "phrase_embedding": "text_encoder.pooler_output", "unconditional": "mask_zero"}
    if kind in ("gligen", "interactdiffusion"):
        m["scheduled_sampling"] = {"beta": beta}
    if kind == "ip-adapter":
        m["reference_image"] = {
            "width": image["size"], "height": image["size"], "tokens": image["tokens"],
            "append_to": "encoder_hidden_states", "unconditional": "zero_embedding",
            "preprocess": {"resize": "shortest_edge", "interpolation": "bicubic", "crop": "center",
                           "rescale": 1 / 255, "mean": CLIP_MEAN, "std": CLIP_STD},
        }
    m["unet_inputs"] = inputs
    return m


def shared_components(share_dir, out_dir, digests, precision):
    """Components of the package at `share_dir` that this one can reference instead of
    writing: same weights (digest) and same precision. {component: relative path}."""
    if not share_dir:
        return {}
    info_path = os.path.join(share_dir, "convert.json")
    man_path = os.path.join(share_dir, "amdm.json")
    if not os.path.exists(info_path) or not os.path.exists(man_path):
        raise PackageError(f"{share_dir}: --share needs a package this converter wrote (convert.json and amdm.json)")
    info = configs.read_json(info_path)
    comps = configs.read_json(man_path)["components"]
    out = {}
    for part, folders in SHAREABLE.items():
        if info.get("digests", {}).get(part) == digests.get(part) and info.get("precision") == precision:
            for c in folders:
                if c in comps:
                    target = os.path.abspath(os.path.join(share_dir, comps[c]))
                    out[c] = os.path.relpath(target, os.path.abspath(out_dir))
    return out
