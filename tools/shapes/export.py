"""Export the trained shapes family to ONNX (opset 17) in the diffusers/optimum folder
layout, plus our manifest (amdm.json) per model.

    /usr/bin/python3 tools/shapes/export.py [--out models]

Shared parts (text encoder, VAE, tokenizer, scheduler) are stored once, in shapes-base,
and referenced by the other models' manifests. Parameters keep their torch names as ONNX
initializer names (no constant folding), so the PyTorch reference (reference.py) loads the
very weights the engine runs.
"""
import argparse
import hashlib
import json
import os
import shutil
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import world  # noqa: E402
import train  # noqa: E402
from nets import VaeEncoder, VaeDecoder, TextEncoder, UNet, ImageEncoder, ImageProjection  # noqa: E402
from reference import BETA_START, BETA_END, NUM_TRAIN_TIMESTEPS  # noqa: E402

OPSET = 17
ECOSYSTEM = "shapes-v1"
K = world.MAX_OBJECTS
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class TextEncoderExport(torch.nn.Module):
    """int32 input_ids, as optimum exports CLIP; the embedding wants int64."""

    def __init__(self, te):
        super().__init__()
        self.te = te

    def forward(self, input_ids):
        return self.te(input_ids.to(torch.int64))


class VaeEncoderExport(torch.nn.Module):
    """optimum's newer vae_encoder output: mean and log-variance concatenated."""

    def __init__(self, enc):
        super().__init__()
        self.enc = enc

    def forward(self, sample):
        mean, logvar = self.enc(sample)
        return torch.cat([mean, logvar], dim=1)


class UNetExport(torch.nn.Module):
    def __init__(self, unet):
        super().__init__()
        self.unet = unet

    def forward(self, sample, timestep, encoder_hidden_states, *extra):
        kind = self.unet.kind
        if kind == "layout":
            boxes, phrase_embeds, mask = extra
            return self.unet(sample, timestep, encoder_hidden_states, boxes=boxes, phrase_embeds=phrase_embeds, mask=mask)
        if kind == "style":
            (ip_scale,) = extra
            return self.unet(sample, timestep, encoder_hidden_states, ip_scale=ip_scale)
        return self.unet(sample, timestep, encoder_hidden_states)


def export(module, args, path, inputs, outputs, dynamic):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    module.eval()
    with torch.no_grad():
        torch.onnx.export(module, args, path, input_names=inputs, output_names=outputs,
                          dynamic_axes=dynamic, opset_version=OPSET, do_constant_folding=False)
    # the reference reads weights back by name; torch's exporter merges equal tensors
    # (e.g. untrained LayerNorm ones), which would hide a parameter, so check all are there
    import onnx
    names = {i.name for i in onnx.load(path).graph.initializer}
    missing = [k for k in module.state_dict() if k not in names]
    if missing:
        raise RuntimeError(f"{path}: parameters not exported under their names: {missing[:5]}")


def write_json(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


def model_index(extra=None):
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
    idx.update(extra or {})
    return idx


def scheduler_config():
    return {
        "_class_name": "DDIMScheduler", "_diffusers_version": "0.30.0",
        "num_train_timesteps": NUM_TRAIN_TIMESTEPS, "beta_start": BETA_START, "beta_end": BETA_END,
        "beta_schedule": "scaled_linear", "trained_betas": None, "clip_sample": False,
        "set_alpha_to_one": False, "steps_offset": 1, "prediction_type": "epsilon",
        "timestep_spacing": "leading", "rescale_betas_zero_snr": False,
    }


SIZES = {"default": [world.SIZE, world.SIZE], "min": 32, "max": 64, "multiple": 8}


# (stage, package description); a stage's package is shapes-<stage with - for _>
PACKAGES = [("base", "Caption-only model: gets shapes and colors right, picks positions and background itself."),
            ("layout", "Grounded model (the MIGC/GLIGEN role): places each phrase in its box; trained without color words."),
            ("style", "Reference-image model (the IP-Adapter role): copies the background style of a reference image; trained without color words."),
            ("captioned_style", "Reference-image model (the IP-Adapter role) trained with the full caption, colors included, as IP-Adapter "
                             "trains on captioned images: copies the background style of a reference image and follows color words.")]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(REPO, "models"))
    ap.add_argument("--only", choices=[s for s, _ in PACKAGES if s != "base"],
                    help="export this one fine-tune's package and leave every other file as it is "
                         "(its checkpoint trained from tools/shapes/ckpt_from_models.py's)")
    a = ap.parse_args()
    out = a.out
    tok = train.tokenizer()
    L, D = train.MAX_LENGTH, train.CTX_DIM
    h = w = world.SIZE // 4
    shared = {"text_encoder": "../shapes-base/text_encoder", "tokenizer": "../shapes-base/tokenizer",
              "vae_decoder": "../shapes-base/vae_decoder", "vae_encoder": "../shapes-base/vae_encoder",
              "scheduler": "../shapes-base/scheduler"}
    if not a.only:
        export_shared(out, tok, L, D, h, w)
    for stage, desc in PACKAGES:
        if a.only and stage != a.only:
            continue
        export_unet_package(out, stage, desc, shared, L, D, h, w)
    if not a.only:
        export_variant(out)
    write_checksums(out)


def export_shared(out, tok, L, D, h, w):
    """The shared components, stored in shapes-base."""
    base_dir = os.path.join(out, "shapes-base")
    if os.path.isdir(base_dir):
        shutil.rmtree(base_dir)
    ck_vae = train.load("vae")
    enc, dec = VaeEncoder(), VaeDecoder()
    enc.load_state_dict(ck_vae["encoder"])
    dec.load_state_dict(ck_vae["decoder"])
    export(dec, (torch.randn(1, 4, h, w),), os.path.join(base_dir, "vae_decoder", "model.onnx"),
           ["latent_sample"], ["sample"],
           {"latent_sample": {0: "batch", 2: "height", 3: "width"}, "sample": {0: "batch", 2: "height", 3: "width"}})
    export(VaeEncoderExport(enc), (torch.randn(1, 3, world.SIZE, world.SIZE),),
           os.path.join(base_dir, "vae_encoder", "model.onnx"), ["sample"], ["latent_parameters"],
           {"sample": {0: "batch", 2: "height", 3: "width"}, "latent_parameters": {0: "batch", 2: "height", 3: "width"}})
    vae_cfg = {"_class_name": "AutoencoderKL", "in_channels": 3, "out_channels": 3, "latent_channels": 4,
               "block_out_channels": [32, 48, 64], "sample_size": world.SIZE,
               "scaling_factor": round(float(ck_vae["scaling_factor"]), 6)}
    write_json(os.path.join(base_dir, "vae_decoder", "config.json"), vae_cfg)
    write_json(os.path.join(base_dir, "vae_encoder", "config.json"), vae_cfg)

    ck_base = train.load("base")
    te = TextEncoder(tok.vocab_size, L, D)
    te.load_state_dict(ck_base["text_encoder"])
    export(TextEncoderExport(te), (torch.tensor([tok.encode("a red circle")], dtype=torch.int32),),
           os.path.join(base_dir, "text_encoder", "model.onnx"), ["input_ids"], ["last_hidden_state", "pooler_output"],
           {"input_ids": {0: "batch"}, "last_hidden_state": {0: "batch"}, "pooler_output": {0: "batch"}})
    write_json(os.path.join(base_dir, "text_encoder", "config.json"),
               {"_class_name": "CLIPTextModel", "vocab_size": tok.vocab_size, "hidden_size": D,
                "max_position_embeddings": L, "num_hidden_layers": 2, "num_attention_heads": 4,
                "bos_token_id": tok.vocab[tokenizer_bos()], "eos_token_id": tok.vocab[tokenizer_eos()]})
    tok.save(os.path.join(base_dir, "tokenizer"))
    write_json(os.path.join(base_dir, "scheduler", "scheduler_config.json"), scheduler_config())


def export_unet_package(out, stage, desc, shared, L, D, h, w):
    """One UNet's package (shapes-base also gets its manifest here); a style-kind model
    brings its image encoder and projection."""
    ck = train.load(stage)
    unet = UNet(ctx_dim=D, kind=ck["kind"], phrase_dim=D)
    unet.load_state_dict(ck["unet"])
    name = f"shapes-{stage.replace('_', '-')}"
    mdir = os.path.join(out, name)
    if stage != "base" and os.path.isdir(mdir):
        shutil.rmtree(mdir)
    B = 2
    args = [torch.randn(B, 4, h, w), torch.tensor([999, 999], dtype=torch.int64), torch.randn(B, L, D)]
    inputs = ["sample", "timestep", "encoder_hidden_states"]
    dyn = {"sample": {0: "batch", 2: "height", 3: "width"}, "timestep": {0: "batch"},
           "encoder_hidden_states": {0: "batch", 1: "sequence"}, "out_sample": {0: "batch", 2: "height", 3: "width"}}
    extra_inputs = []
    manifest = {"schema": "amdm.model/v1", "id": name, "description": desc, "ecosystem": ECOSYSTEM,
                "components": {"unet": "unet", **({k: v.replace("../shapes-base/", "") for k, v in shared.items()}
                                                  if stage == "base" else shared)},
                "sizes": SIZES}
    if stage == "layout":
        args += [torch.rand(B, K, 4), torch.randn(B, K, D), torch.ones(B, K)]
        inputs += ["boxes", "phrase_embeds", "mask"]
        dyn.update({"boxes": {0: "batch"}, "phrase_embeds": {0: "batch"}, "mask": {0: "batch"}})
        extra_inputs = [
            {"name": "boxes", "dtype": "float32", "shape": ["batch", K, 4], "source": "grounding.boxes"},
            {"name": "phrase_embeds", "dtype": "float32", "shape": ["batch", K, D], "source": "grounding.phrase_embeds"},
            {"name": "mask", "dtype": "float32", "shape": ["batch", K], "source": "grounding.mask"}]
        manifest["grounding"] = {"max_objects": K, "phrase_embedding": "text_encoder.pooler_output",
                                 "unconditional": "mask_zero"}
    if ck["kind"] == "style":
        args[2] = torch.randn(B, L + train.IMAGE_TOKENS, D)
        args += [torch.ones(1)]
        inputs += ["ip_scale"]
        extra_inputs = [{"name": "ip_scale", "dtype": "float32", "shape": [1], "source": "reference_image.scale"}]
        img_enc, img_proj = ImageEncoder(D), ImageProjection(D, D, train.IMAGE_TOKENS)
        img_enc.load_state_dict(ck["image_encoder"])
        img_proj.load_state_dict(ck["image_proj"])
        export(img_enc, (torch.randn(1, 3, world.SIZE, world.SIZE),), os.path.join(mdir, "image_encoder", "model.onnx"),
               ["pixel_values"], ["image_embeds"], {"pixel_values": {0: "batch"}, "image_embeds": {0: "batch"}})
        export(img_proj, (torch.randn(1, D),), os.path.join(mdir, "image_proj", "model.onnx"),
               ["image_embeds"], ["image_prompt_embeds"], {"image_embeds": {0: "batch"}, "image_prompt_embeds": {0: "batch"}})
        write_json(os.path.join(mdir, "image_encoder", "config.json"),
                   {"image_size": world.SIZE, "embed_dim": D, "pixel_range": [-1, 1]})
        manifest["components"].update({"image_encoder": "image_encoder", "image_proj": "image_proj"})
        manifest["reference_image"] = {"width": world.SIZE, "height": world.SIZE, "tokens": train.IMAGE_TOKENS,
                                       "append_to": "encoder_hidden_states", "unconditional": "zero_embedding"}
    manifest["unet_inputs"] = extra_inputs
    export(UNetExport(unet), tuple(args), os.path.join(mdir, "unet", "model.onnx"), inputs, ["out_sample"], dyn)
    write_json(os.path.join(mdir, "unet", "config.json"),
               {"_class_name": "UNet2DConditionModel", "in_channels": 4, "out_channels": 4,
                "sample_size": h, "cross_attention_dim": D, "block_out_channels": [48, 96]})
    write_json(os.path.join(mdir, "model_index.json"), model_index())
    write_json(os.path.join(mdir, "amdm.json"), manifest)
    print("exported", mdir)


def write_checksums(out):
    """The SHA-256 of every file, for distribution to runners (verified at download)."""
    sums = {}
    for root, _, files in os.walk(out):
        for f in sorted(files):
            p = os.path.join(root, f)
            rel = os.path.relpath(p, out)
            # catalog.json names the checksums file's own hash (npm run models:catalog)
            if rel in ("checksums.json", "catalog.json"):
                continue
            with open(p, "rb") as fh:
                sums[rel] = hashlib.sha256(fh.read()).hexdigest()
    write_json(os.path.join(out, "checksums.json"), dict(sorted(sums.items())))
    total = sum(os.path.getsize(os.path.join(out, k)) for k in sums)
    print(f"total size {total / 1e6:.2f} MB in {len(sums)} files")


def export_variant(out):
    """shapes-base-fp16: shapes-base as other exporters write SD models, so the engine's
    dtype handling runs on real graphs: fp16 weights and fp16 sample / hidden states /
    output (as `optimum-cli --fp16`), a float32 scalar timestep (as diffusers' original
    ONNX conversion), and int64 input_ids. Built by graph surgery on the fp32 export."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    src = os.path.join(out, "shapes-base")
    dst = os.path.join(out, "shapes-base-fp16")
    if os.path.isdir(dst):
        shutil.rmtree(dst)
    os.makedirs(os.path.join(dst, "unet"))
    os.makedirs(os.path.join(dst, "text_encoder"))

    m = onnx.load(os.path.join(src, "unet", "model.onnx"))
    g = m.graph
    nodes = []
    # 1. weights stored as fp16, cast to fp32 where they are used
    inits = []
    for init in g.initializer:
        if init.data_type == TensorProto.FLOAT and len(init.dims) > 0:
            half = numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), init.name + "__fp16")
            inits.append(half)
            nodes.append(helper.make_node("Cast", [half.name], [init.name], to=TensorProto.FLOAT))
        else:
            inits.append(init)
    del g.initializer[:]
    g.initializer.extend(inits)
    # 2. fp16 graph inputs cast to what the body expects
    new_inputs = []
    for inp in g.input:
        if inp.name in ("sample", "encoder_hidden_states"):
            outer = helper.make_tensor_value_info(inp.name + "__in", TensorProto.FLOAT16, None)
            outer.type.tensor_type.shape.CopyFrom(inp.type.tensor_type.shape)
            outer.name = inp.name
            nodes.append(helper.make_node("Cast", [inp.name], [inp.name + "__f32"], to=TensorProto.FLOAT))
            new_inputs.append((inp.name, inp.name + "__f32", outer))
        elif inp.name == "timestep":
            # float32 scalar -> int64 [batch], batch from the sample's shape
            outer = helper.make_tensor_value_info("timestep", TensorProto.FLOAT, [])
            nodes += [
                helper.make_node("Cast", ["timestep"], ["timestep__i64"], to=TensorProto.INT64),
                helper.make_node("Shape", ["sample__f32"], ["sample__shape"]),
                helper.make_node("Slice", ["sample__shape", "ts__zero", "ts__one"], ["ts__batch"]),
                helper.make_node("Expand", ["timestep__i64", "ts__batch"], ["timestep__b"]),
            ]
            inits_extra = [numpy_helper.from_array(np.array([0], dtype=np.int64), "ts__zero"),
                           numpy_helper.from_array(np.array([1], dtype=np.int64), "ts__one")]
            g.initializer.extend(inits_extra)
            new_inputs.append(("timestep", "timestep__b", outer))
    for old, new, _ in new_inputs:
        for n in g.node:
            for i, name in enumerate(n.input):
                if name == old:
                    n.input[i] = new
    keep = [i for i in g.input if i.name not in {o for o, _, _ in new_inputs}]
    del g.input[:]
    g.input.extend([v for _, _, v in new_inputs] + keep)
    # 3. fp16 output
    out_name = g.output[0].name
    for n in g.node:
        for i, name in enumerate(n.output):
            if name == out_name:
                n.output[i] = out_name + "__f32"
    nodes.append(helper.make_node("Cast", [out_name + "__f32"], [out_name], to=TensorProto.FLOAT16))
    g.output[0].type.tensor_type.elem_type = TensorProto.FLOAT16
    body = list(g.node)
    del g.node[:]
    g.node.extend([n for n in nodes if n.op_type == "Cast" and n.input[0].endswith("__fp16")] +
                  [n for n in nodes if not (n.op_type == "Cast" and n.input[0].endswith("__fp16")) and n.output[0] != out_name] +
                  body + [n for n in nodes if n.output[0] == out_name])
    onnx.checker.check_model(m)
    onnx.save(m, os.path.join(dst, "unet", "model.onnx"))
    shutil.copy(os.path.join(src, "unet", "config.json"), os.path.join(dst, "unet", "config.json"))

    te = onnx.load(os.path.join(src, "text_encoder", "model.onnx"))
    te.graph.input[0].type.tensor_type.elem_type = TensorProto.INT64
    for n in te.graph.node:   # the int32 -> int64 cast the fp32 export starts with becomes a no-op
        if n.op_type == "Cast" and n.input[0] == "input_ids":
            n.attribute[0].i = TensorProto.INT64
    onnx.checker.check_model(te)
    onnx.save(te, os.path.join(dst, "text_encoder", "model.onnx"))
    shutil.copy(os.path.join(src, "text_encoder", "config.json"), os.path.join(dst, "text_encoder", "config.json"))

    manifest = json.load(open(os.path.join(src, "amdm.json")))
    manifest.update({"id": "shapes-base-fp16",
                     "description": "shapes-base with fp16 weights and inputs, a float scalar timestep and int64 input_ids (the dtypes other exporters produce)",
                     "components": {"unet": "unet", "text_encoder": "text_encoder", "tokenizer": "../shapes-base/tokenizer",
                                    "vae_decoder": "../shapes-base/vae_decoder", "vae_encoder": "../shapes-base/vae_encoder",
                                    "scheduler": "../shapes-base/scheduler"}})
    write_json(os.path.join(dst, "amdm.json"), manifest)
    write_json(os.path.join(dst, "model_index.json"), model_index())
    print("exported", dst)


def tokenizer_bos():
    from tokenizer import BOS
    return BOS


def tokenizer_eos():
    from tokenizer import EOS
    return EOS


if __name__ == "__main__":
    main()
