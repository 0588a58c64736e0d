"""Export each component to ONNX (opset 17) and check it against torch.

optimum's pattern: every component's graph inputs (name, dtype, symbolic dims), outputs
and dynamic axes are declared once, in GRAPHS / unet_graph(); a thin wrapper module maps
the graph's positional inputs onto the architecture's forward() (it never changes the
module). The names are those the engine expects (gpu-runner/engine/loaded-model.ts):
input_ids -> last_hidden_state, pooler_output; latent_sample -> sample;
sample, timestep, encoder_hidden_states (+ declared extras) -> out_sample;
pixel_values -> image_embeds; image_embeds -> image_prompt_embeds.

The check runs the torch module and onnxruntime (through ort-check.mjs, Node) on the
same inputs, which differ in size from the export's trace inputs so the dynamic axes are
exercised too, and reports the max abs difference per output.
"""
import gc
import inspect
import json
import os
import shutil
import subprocess
import tempfile
import time
import warnings

import numpy as np
import onnx
import torch
from torch import nn
from torch.onnx import utils as torch_onnx_utils

import fp16 as fp16_graph
import onnx_files

OPSET = 17
HERE = os.path.dirname(os.path.abspath(__file__))
ORT_CHECK = os.path.join(HERE, "ort-check.mjs")


class Graph:
    """inputs: [(name, dtype, dims)], dims use strings for dynamic axes; outputs likewise."""

    def __init__(self, inputs, outputs):
        self.inputs = inputs
        self.outputs = outputs

    @property
    def input_names(self):
        return [n for n, _, _ in self.inputs]

    @property
    def output_names(self):
        return [n for n, _ in self.outputs]

    def dynamic_axes(self):
        axes = {}
        for name, *rest in self.inputs + [(n, None, d) for n, d in self.outputs]:
            dims = rest[-1]
            dyn = {i: d for i, d in enumerate(dims) if isinstance(d, str)}
            if dyn:
                axes[name] = dyn
        return axes


GRAPHS = {
    "text_encoder": Graph([("input_ids", torch.int32, ["batch", "sequence"])],
                          [("last_hidden_state", ["batch", "sequence", "hidden"]), ("pooler_output", ["batch", "hidden"])]),
    "vae_encoder": Graph([("sample", torch.float32, ["batch", "channels", "height", "width"])],
                         [("latent_parameters", ["batch", "latent_channels_x2", "latent_height", "latent_width"])]),
    "vae_decoder": Graph([("latent_sample", torch.float32, ["batch", "latent_channels", "latent_height", "latent_width"])],
                         [("sample", ["batch", "channels", "height", "width"])]),
    "image_encoder": Graph([("pixel_values", torch.float32, ["batch", 3, "image_height", "image_width"])],
                           [("image_embeds", ["batch", "embed"])]),
    "image_proj": Graph([("image_embeds", torch.float32, ["batch", "embed"])],
                        [("image_prompt_embeds", ["batch", "tokens", "hidden"])]),
}
# Named dims are sizes the inputs are built from (random_inputs); only these ones are
# exported as dynamic axes, the others (channels, hidden, image size) are fixed by the
# weights and stay numbers in the graph.
RUNTIME_DYNAMIC = {"batch", "sequence", "height", "width", "latent_height", "latent_width"}

MAX_OBJECTS = 30  # the GLIGEN and InteractDiffusion pipelines pad to 30 objects


def unet_graph(grounding, ip_tokens, cross_dim, max_objects=MAX_OBJECTS):
    """The UNet's inputs for each kind. Extra inputs (after the standard three) are what
    amdm.json declares in unet_inputs."""
    K, D = max_objects, cross_dim
    inputs = [("sample", torch.float32, ["batch", 4, "height", "width"]),
              ("timestep", torch.int64, ["batch"]),
              ("encoder_hidden_states", torch.float32, ["batch", "sequence", D])]
    if grounding == "gligen":
        inputs += [("boxes", torch.float32, ["batch", K, 4]), ("phrase_embeds", torch.float32, ["batch", K, D]),
                   ("mask", torch.float32, ["batch", K]), ("fuser_gate", torch.float32, [1])]
    elif grounding == "interaction":
        inputs += [("subject_boxes", torch.float32, ["batch", K, 4]), ("object_boxes", torch.float32, ["batch", K, 4]),
                   ("subject_phrase_embeds", torch.float32, ["batch", K, D]),
                   ("object_phrase_embeds", torch.float32, ["batch", K, D]),
                   ("action_phrase_embeds", torch.float32, ["batch", K, D]),
                   ("mask", torch.float32, ["batch", K]), ("fuser_gate", torch.float32, [1])]
    if ip_tokens:
        inputs += [("ip_scale", torch.float32, [1])]
    return Graph(inputs, [("out_sample", ["batch", 4, "height", "width"])])


# --- wrappers: graph inputs -> the module's forward


class TextEncoderGraph(nn.Module):
    """int32 input_ids, as optimum exports CLIP; the embedding wants int64."""

    def __init__(self, text):
        super().__init__()
        self.text = text

    def forward(self, input_ids):
        return self.text(input_ids.to(torch.int64))


class VaeEncoderGraph(nn.Module):
    """optimum's newer vae_encoder output: mean and log-variance concatenated."""

    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, sample):
        return self.vae.encode(sample)


class VaeDecoderGraph(nn.Module):
    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, latent_sample):
        return self.vae.decode(latent_sample)


class UNetGraph(nn.Module):
    def __init__(self, unet):
        super().__init__()
        self.unet = unet

    def forward(self, sample, timestep, encoder_hidden_states, *extra):
        u = self.unet
        kw = {}
        if u.grounding == "gligen":
            boxes, phrase_embeds, mask, gate = extra[:4]
            kw = {"grounding": {"boxes": boxes, "phrase_embeds": phrase_embeds, "mask": mask}, "fuser_gate": gate}
            extra = extra[4:]
        elif u.grounding == "interaction":
            sb, ob, sp, op, ap, mask, gate = extra[:7]
            kw = {"grounding": {"subject_boxes": sb, "object_boxes": ob, "subject_phrase_embeds": sp,
                                "object_phrase_embeds": op, "action_phrase_embeds": ap, "mask": mask}, "fuser_gate": gate}
            extra = extra[7:]
        if u.ip_tokens:
            (kw["ip_scale"],) = extra
        return u(sample, timestep, encoder_hidden_states, **kw)


class Passthrough(nn.Module):
    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, x):
        return self.module(x)


# --- inputs


def random_inputs(graph, dims, seed, text=None):
    """Inputs for `graph` with its symbolic dims set from `dims` (name -> size).
    Values are in the ranges the engine feeds: boxes are xyxy in [0, 1], masks 0/1,
    input_ids end with the end-of-text token and pad with it, as the tokenizer does."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for name, dtype, shape in graph.inputs:
        shape = [dims[d] if isinstance(d, str) else d for d in shape]
        if name == "input_ids":
            out.append(_token_ids(shape, text, g))
        elif name == "timestep":
            out.append(torch.randint(0, 1000, shape, generator=g, dtype=torch.int64))
        elif name.endswith("boxes"):
            a, b = torch.rand(shape, generator=g), torch.rand(shape, generator=g)
            lo, hi = torch.minimum(a, b), torch.maximum(a, b)
            out.append(torch.cat([lo[..., :2], hi[..., 2:]], dim=-1))
        elif name == "mask":
            m = torch.zeros(shape)
            m[:, : max(1, shape[1] // 3)] = 1
            m[0] = 0 if shape[0] > 1 else m[0]  # the unconditional half has mask 0
            out.append(m)
        elif name in ("fuser_gate", "ip_scale"):
            out.append(torch.full(shape, 0.75 if name == "ip_scale" else 1.0))
        elif name == "sample" and "channels" in dims and dims["channels"] == 3:
            out.append(torch.rand(shape, generator=g) * 2 - 1)
        else:
            out.append(torch.randn(shape, generator=g))
    return out


def _token_ids(shape, text, g):
    b, n = shape
    vocab, eos = text["vocab_size"], text["eos_token_id"]
    end = vocab - 1 if eos == 2 else eos  # legacy configs: the end token has the highest id
    ids = torch.randint(0, end, (b, n), generator=g, dtype=torch.int64)
    ids[ids == eos] = 0
    for i in range(b):
        stop = 1 + (i * 7 + 3) % (n - 1)
        ids[i, stop:] = end
    return ids.to(torch.int32)


# --- export and check


def export(wrapper, graph, args, path):
    """Trace `wrapper` on `args` into `path`; >2 GB graphs end up as model.onnx + model.onnx_data."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    for stale in ("model.onnx", onnx_files.DATA_NAME):
        p = os.path.join(os.path.dirname(path), stale)
        if os.path.exists(p):
            os.remove(p)
    axes = {k: {i: d for i, d in v.items() if d in RUNTIME_DYNAMIC} for k, v in graph.dynamic_axes().items()}
    axes = {k: v for k, v in axes.items() if v}
    wrapper.eval()
    kw = dict(input_names=graph.input_names, output_names=graph.output_names, dynamic_axes=axes,
              opset_version=OPSET, do_constant_folding=False)
    with torch.no_grad(), warnings.catch_warnings():
        # torch 1.13's exporter warns per node about its own passes, and the tracer about
        # shape checks inside torch.nn.functional that do not concern the graph
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        if "onnx_shape_inference" in inspect.signature(torch_onnx_utils._export).parameters:
            # torch 1.13's per-node shape inference makes the export 2-3x slower and
            # adds nothing we use (onnx's own inference types the graph for fp16.py)
            torch_onnx_utils._export(wrapper, tuple(args), path, export_type=torch.onnx.ExportTypes.PROTOBUF_FILE,
                                     onnx_shape_inference=False, **kw)
        else:
            torch.onnx.export(wrapper, tuple(args), path, **kw)
    return onnx_files.consolidate(path)


def torch_outputs(wrapper, args):
    with torch.no_grad():
        out = wrapper(*args)
    return list(out) if isinstance(out, (tuple, list)) else [out]


class CheckFailed(Exception):
    pass


def ort_check(path, graph, args, expected, half=False):
    """Run the ONNX graph on `args` in onnxruntime (Node) and compare with `expected`.
    Returns [{name, max_abs_diff, max_abs_ref, ...}] per output."""
    tmp = tempfile.mkdtemp(prefix="amdm-ort-check-")
    try:
        index = {"model": os.path.abspath(path), "inputs": [], "outputs": []}
        for k, ((name, dtype, _), a) in enumerate(zip(graph.inputs, args)):
            arr = a.numpy()
            if arr.dtype == np.float32 and half:
                arr, dt = arr.astype(np.float16), "float16"
            else:
                dt = {np.dtype(np.float32): "float32", np.dtype(np.int64): "int64", np.dtype(np.int32): "int32"}[arr.dtype]
            f = f"in{k}.bin"
            arr.tofile(os.path.join(tmp, f))
            index["inputs"].append({"name": name, "dtype": dt, "shape": list(arr.shape), "file": f})
        for k, ((name, _), t) in enumerate(zip(graph.outputs, expected)):
            f = f"out{k}.bin"
            t.numpy().astype(np.float32).tofile(os.path.join(tmp, f))
            index["outputs"].append({"name": name, "shape": list(t.shape), "file": f})
        with open(os.path.join(tmp, "index.json"), "w") as fh:
            json.dump(index, fh)
        proc = subprocess.run(["node", ORT_CHECK, tmp], capture_output=True, text=True)
        if proc.returncode != 0:
            raise CheckFailed(f"{path}: onnxruntime could not run the graph:\n{proc.stderr.strip()[-2000:]}")
        report = json.loads(proc.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for o in report["outputs"]:
        if "error" in o:
            raise CheckFailed(f"{path}: {o['error']}")
        if not o["same_shape"]:
            raise CheckFailed(f"{path}: output {o['name']} has shape {o['shape']} in onnxruntime, torch has "
                              f"{[list(t.shape) for t in expected]}")
        if o["max_abs_diff"] is None:
            o["max_abs_diff"] = float("inf")
    return report


def half_inputs(args):
    """The fp16 graph sees fp16-rounded inputs; torch gets the same values in fp32."""
    return [a.to(torch.float16).to(torch.float32) if a.dtype == torch.float32 else a for a in args]


def export_and_check(name, holder, graph, trace_args, check_args, folder, *, half=False, check=True, tolerance=None, log=print):
    """Export one component into `folder`/model.onnx (fp16 if `half`) and check it.
    `holder` is a one-element list with the wrapper: the caller's only reference, taken
    here so the torch module is freed before the fp16 rewrite and onnxruntime load the
    graph (a full-size UNet would otherwise be in memory twice). Returns a report dict."""
    wrapper = holder.pop()
    path = os.path.join(folder, "model.onnx")
    t0 = time.time()
    if half:
        check_args = half_inputs(check_args)
    expected = torch_outputs(wrapper, check_args) if check else None
    external = export(wrapper, graph, trace_args, path)
    export_s = time.time() - t0
    del wrapper
    gc.collect()
    if half:
        t1 = time.time()
        fp16_graph.convert(path, path)
        external = os.path.exists(os.path.join(folder, onnx_files.DATA_NAME))
        log(f"  {name}: converted to fp16 in {time.time() - t1:.1f} s")
    report = {"export_s": round(export_s, 1), "external_data": bool(external), "bytes": onnx_files.sizes(folder),
              "precision": "fp16" if half else "fp32"}
    if check:
        r = ort_check(path, graph, check_args, expected, half=half)
        report["check"] = {"inputs": {n: list(a.shape) for n, a in zip(graph.input_names, check_args)},
                           "outputs": {o["name"]: {"max_abs_diff": o["max_abs_diff"], "max_abs_ref": o["max_abs_ref"]}
                                       for o in r["outputs"]},
                           "ort_load_ms": r["load_ms"], "ort_run_ms": r["run_ms"]}
        for o in r["outputs"]:
            log(f"  {name}: {o['name']} max abs diff {o['max_abs_diff']:.3g} (outputs up to {o['max_abs_ref']:.3g})")
            limit = tolerance(o["max_abs_ref"]) if tolerance else None
            if limit is not None and not (o["max_abs_diff"] <= limit):
                raise CheckFailed(f"{path}: output {o['name']} differs from torch by {o['max_abs_diff']:.3g} "
                                  f"(> {limit:.3g} allowed; outputs up to {o['max_abs_ref']:.3g})")
    # torch checked the fp32 proto itself (full_check) when it was written inline;
    # fp16.convert ran strict type inference on its rewrite
    return report
