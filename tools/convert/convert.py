"""Convert published Stable Diffusion 1.x checkpoints into engine packages.

    python3 tools/convert/convert.py sd15 SRC --out models/NAME
        SRC: a diffusers pipeline folder, or a single-file checkpoint (.safetensors/.ckpt,
        LDM / A1111 layout; then --tokenizer DIR, and --ema to take its EMA weights)
    python3 tools/convert/convert.py gligen SRC --out DIR [--beta 0.3]
    python3 tools/convert/convert.py interactdiffusion SRC --out DIR [--beta 1.0]
    python3 tools/convert/convert.py ip-adapter --base SRC --ip-adapter FILE --image-encoder DIR --out DIR

Common options: --fp16 (fp16 weights and arithmetic), --no-check (skip the onnxruntime
comparison), --variant fp16 (read NAME.fp16.safetensors files), --share PKG (reference
PKG's text encoder / VAE / tokenizer / scheduler when they are the same weights),
--id, --description, --overwrite.

The package is written to OUT.partial and renamed to OUT when everything (export and
checks) succeeded. See docs/real-models.md.
"""
import argparse
import gc
import json
import os
import re
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import configs  # noqa: E402
import export as ex  # noqa: E402
import package as pk  # noqa: E402
import sources  # noqa: E402
from checkpoint_io import CheckpointFormatError  # noqa: E402
from keymap import CheckpointError  # noqa: E402

ID_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
DEFAULT_BETA = {"gligen": 0.3, "interactdiffusion": 1.0}  # the reference pipelines' defaults


def tolerance(half, factor=1.0):
    """How far onnxruntime may be from torch before the converter refuses the package:
    far above float noise, far below what a wrong graph gives (O(1) of the outputs)."""
    rel = (5e-2 if half else 1e-3) * factor
    return lambda max_ref: rel * max(1.0, max_ref)


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="convert.py", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="kind", required=True)

    def common(p):
        p.add_argument("--out", required=True, help="package folder to write")
        p.add_argument("--id", help="model id (default: the --out folder's name)")
        p.add_argument("--description")
        p.add_argument("--fp16", action="store_true", help="fp16 weights, inputs and arithmetic")
        p.add_argument("--no-check", dest="check", action="store_false", help="skip the onnxruntime comparison")
        p.add_argument("--tolerance-factor", type=float, default=1.0, help="scale the check's allowed difference")
        p.add_argument("--variant", help="weights variant to read (NAME.VARIANT.safetensors), e.g. fp16")
        p.add_argument("--share", help="a converted package whose identical components to reference")
        p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")

    for kind in ("sd15", "gligen", "interactdiffusion"):
        p = sub.add_parser(kind)
        p.add_argument("src", help="diffusers pipeline folder" + (" or single-file checkpoint" if kind == "sd15" else ""))
        common(p)
        if kind == "sd15":
            p.add_argument("--tokenizer", help="tokenizer folder for a single-file checkpoint")
            p.add_argument("--ema", action="store_true", help="single file: convert its EMA weights (model_ema.*)")
            p.add_argument("--config", dest="config_dir",
                           help="single file not at SD1.x's published configuration: a folder with unet/, vae/, "
                                "text_encoder/ config.json (diffusers layout)")
        else:
            p.add_argument("--beta", type=float, default=DEFAULT_BETA[kind],
                           help=f"scheduled sampling: fusers run for the first beta*steps steps (default {DEFAULT_BETA[kind]})")
    p = sub.add_parser("ip-adapter")
    p.add_argument("--base", required=True, help="the SD1.x base: diffusers pipeline folder or single-file checkpoint")
    p.add_argument("--ip-adapter", required=True, dest="ip_adapter", help="ip-adapter_sd15.bin or .safetensors")
    p.add_argument("--image-encoder", required=True, dest="image_encoder", help="its CLIP image encoder folder (config.json + weights)")
    p.add_argument("--tokenizer", help="tokenizer folder, when --base is a single file")
    p.add_argument("--ema", action="store_true")
    p.add_argument("--config", dest="config_dir", help="configs for a single-file --base (as for sd15)")
    common(p)
    a = ap.parse_args(argv)
    if a.kind in ("gligen", "interactdiffusion") and not 0.0 <= a.beta <= 1.0:
        ap.error(f"--beta is {a.beta}; allowed: 0 to 1")
    a.id = a.id or os.path.basename(os.path.normpath(a.out)).lower()
    if not ID_RE.match(a.id):
        ap.error(f"--id {a.id!r}: allowed: lower-case letters, digits, '.', '_', '-', starting with a letter or digit, up to 64")
    return a


def load(a):
    if a.kind == "ip-adapter":
        return sources.read_ip_adapter(a.base, a.ip_adapter, a.image_encoder, a.variant, a.tokenizer, a.ema, a.config_dir)
    if os.path.isfile(a.src):
        if a.kind != "sd15":
            raise sources.SourceError(f"{a.src}: a single file; {a.kind} is read from its diffusers pipeline folder")
        return sources.read_single_file(a.src, a.tokenizer, ema=a.ema, config_dir=a.config_dir)
    return sources.read_pipeline_folder(a.src, a.kind, a.variant)


def convert(a, log=print):
    t_start = time.time()
    half = a.fp16
    precision = "fp16" if half else "fp32"
    out = os.path.abspath(a.out)
    if os.path.exists(out) and os.listdir(out) and not a.overwrite:
        raise pk.PackageError(f"{out}: exists and is not empty (use --overwrite to replace it)")
    p = load(a)
    src_name = a.src if a.kind != "ip-adapter" else a.base
    pk.check_ecosystem(p.cfg["vae"], p.scheduler, src_name)
    pk.check_tokenizer(p.tokenizer_dir, p.cfg["text_encoder"])
    log(f"loaded {a.kind} from {src_name} in {time.time() - t_start:.1f} s")

    digests = {"text_encoder": sources.digest(p.text_encoder), "vae": sources.digest(p.vae),
               "tokenizer": pk.tokenizer_digest(p.tokenizer_dir), "scheduler": pk.scheduler_digest(p.scheduler)}
    shared = pk.shared_components(a.share, out, digests, precision)
    if a.share:
        log(f"shared from {a.share}: {', '.join(sorted(shared)) or 'nothing (different weights or precision)'}")

    work = out + ".partial"
    if os.path.exists(work):
        shutil.rmtree(work)
    os.makedirs(work)
    try:
        _write(a, p, work, shared, digests, precision, half, src_name, t_start, log)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)  # never leave a half-written package behind
        raise
    if os.path.exists(out):
        shutil.rmtree(out)
    os.replace(work, out)
    log(f"wrote {out} in {time.time() - t_start:.1f} s")
    return out


def _write(a, p, work, shared, digests, precision, half, src_name, t_start, log):
    report = {}
    text_cfg, unet_cfg = p.cfg["text_encoder"], p.cfg["unet"]
    L, D = text_cfg["max_position_embeddings"], unet_cfg["cross_attention_dim"]
    if text_cfg["hidden_size"] != D:
        raise pk.PackageError(f"{src_name}: the text encoder's hidden_size {text_cfg['hidden_size']} is not the UNet's "
                              f"cross_attention_dim {D}")
    tol = tolerance(half, a.tolerance_factor)

    # the trace only has to see every op once: small inputs (torch on Debian's reference
    # BLAS is slow); the check runs at the sizes the engine uses, other than the trace's,
    # so the dynamic axes are exercised
    def run(name, holder, graph, trace_dims, check_dims, seed):
        log(f"exporting {name} ...")
        trace = ex.random_inputs(graph, trace_dims, seed, text_cfg)
        check = ex.random_inputs(graph, check_dims, seed + 1, text_cfg)
        report[name] = ex.export_and_check(name, holder, graph, trace, check, os.path.join(work, name), half=half,
                                           check=a.check, tolerance=tol, log=log)

    # 1. text encoder
    if "text_encoder" not in shared:
        g = ex.GRAPHS["text_encoder"]
        run("text_encoder", [ex.TextEncoderGraph(p.take("text_encoder"))], g, {"batch": 1, "sequence": 8}, {"batch": 2, "sequence": L}, 1)
        pk.write_json(os.path.join(work, "text_encoder", "config.json"), p.raw["text_encoder"])
    p.text_encoder = None  # when shared, it is never exported
    # 2. VAE halves
    if "vae_decoder" not in shared:
        lc = p.cfg["vae"]["latent_channels"]
        run("vae_decoder", [ex.VaeDecoderGraph(p.vae)], ex.GRAPHS["vae_decoder"],
            {"batch": 1, "latent_channels": lc, "latent_height": 4, "latent_width": 4},
            {"batch": 2, "latent_channels": lc, "latent_height": 6, "latent_width": 10}, 3)
        run("vae_encoder", [ex.VaeEncoderGraph(p.take("vae"))], ex.GRAPHS["vae_encoder"],
            {"batch": 1, "channels": 3, "height": 32, "width": 32}, {"batch": 2, "channels": 3, "height": 48, "width": 80}, 5)
        for c in ("vae_decoder", "vae_encoder"):
            pk.write_json(os.path.join(work, c, "config.json"), p.raw["vae"])
    p.vae = None
    gc.collect()
    # 3. IP-Adapter's image encoder and projection
    if a.kind == "ip-adapter":
        enc = p.cfg["image_encoder"]
        s = enc["image_size"]
        run("image_encoder", [ex.Passthrough(p.take("image_encoder"))], ex.GRAPHS["image_encoder"],
            {"batch": 1, "image_height": s, "image_width": s}, {"batch": 2, "image_height": s, "image_width": s}, 7)
        pk.write_json(os.path.join(work, "image_encoder", "config.json"), p.raw["image_encoder"])
        ip = p.cfg["image_proj"]
        run("image_proj", [ex.Passthrough(p.take("image_proj"))], ex.GRAPHS["image_proj"],
            {"batch": 1, "embed": ip["image_embed_dim"]}, {"batch": 2, "embed": ip["image_embed_dim"]}, 9)
        pk.write_json(os.path.join(work, "image_proj", "config.json"), ip)
    # 4. UNet
    grounding = p.unet.grounding
    tokens = p.unet.ip_tokens
    g = ex.unet_graph(grounding, tokens, D)
    seq = L + tokens
    run("unet", [ex.UNetGraph(p.take("unet"))], g, {"batch": 1, "height": 8, "width": 8, "sequence": tokens + 8},
        {"batch": 2, "height": 20, "width": 36, "sequence": seq}, 11)
    pk.write_json(os.path.join(work, "unet", "config.json"), p.raw["unet"])

    # 5. tokenizer, scheduler, manifest, provenance
    if "tokenizer" not in shared:
        pk.copy_tokenizer(p.tokenizer_dir, os.path.join(work, "tokenizer"))
    if "scheduler" not in shared:
        pk.write_json(os.path.join(work, "scheduler", "scheduler_config.json"), p.scheduler)
    components = {c: shared.get(c, c) for c in ("unet", "text_encoder", "tokenizer", "vae_decoder", "vae_encoder", "scheduler")}
    extra = []
    if a.kind == "ip-adapter":
        components.update({"image_encoder": "image_encoder", "image_proj": "image_proj"})
        extra = ["image_encoder", "image_proj"]
    dtype = "float16" if half else "float32"
    inputs = pk.unet_inputs(a.kind, dtype, D, ex.MAX_OBJECTS)
    described = a.description or f"{a.kind} model converted from {os.path.basename(os.path.normpath(src_name))}"
    m = pk.manifest(a.kind, a.id, described, components, pk.sizes(unet_cfg, p.cfg["vae"]), inputs,
                    max_objects=ex.MAX_OBJECTS, beta=getattr(a, "beta", None),
                    image={"size": p.cfg["image_encoder"]["image_size"], "tokens": tokens} if a.kind == "ip-adapter" else None)
    pk.write_json(os.path.join(work, "amdm.json"), m)
    pk.write_json(os.path.join(work, "model_index.json"), pk.model_index(extra))
    pk.write_json(os.path.join(work, "convert.json"), {
        "tool": "tools/convert/convert.py", "kind": a.kind, "precision": precision,
        "sources": p.sources, "digests": digests, "shared": shared, "components": report,
        "seconds": round(time.time() - t_start, 1),
    })


def main(argv=None):
    a = parse_args(argv)
    try:
        convert(a)
    except (CheckpointError, CheckpointFormatError, configs.ConfigError, sources.SourceError, pk.PackageError,
            ex.CheckFailed, FileNotFoundError) as e:
        print(f"convert.py: {e}", file=sys.stderr)
        return 2 if not isinstance(e, ex.CheckFailed) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
