"""Reading and writing checkpoints without the safetensors package (not installable here).

A `.safetensors` file is an 8-byte little-endian header length N, N bytes of JSON
({name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}), then the raw
little-endian tensor bytes, offsets relative to the end of the header. We read the header
first and each tensor only when it is asked for, so a 4 GB checkpoint never sits in memory
twice. `.bin`/`.pth`/`.ckpt` pickles go through `torch.load(weights_only=True)`: a pickle
that needs arbitrary classes to load is refused rather than executed.

Every reader answers the same three questions (names, shape of a name, the tensor), which
is all the key mapping (keymap.py) needs to name what is missing, unexpected or mis-shaped.
"""
import json
import os
import struct

import torch

# safetensors dtype codes <-> torch dtypes
DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}
CODES = {v: k for k, v in DTYPES.items()}
MAX_HEADER = 100 * 1024 * 1024  # the reference implementation's own limit


class CheckpointFormatError(Exception):
    """A file that is not what its extension says (truncated, bad header, bad offsets)."""


class SafetensorsFile:
    """Lazy reader: parses and checks the header once; reads one tensor per get()."""

    def __init__(self, path):
        self.path = path
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise CheckpointFormatError(f"{path}: shorter than the 8-byte header length of a .safetensors file")
            (n,) = struct.unpack("<Q", head)
            if n > MAX_HEADER or 8 + n > size:
                raise CheckpointFormatError(f"{path}: header length {n} does not fit the file ({size} bytes); not a .safetensors file")
            try:
                header = json.loads(f.read(n).decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                raise CheckpointFormatError(f"{path}: the header is not JSON: {e}") from None
        if not isinstance(header, dict):
            raise CheckpointFormatError(f"{path}: the header is not a JSON object")
        self.metadata = header.pop("__metadata__", None) or {}
        self.data_start = 8 + n
        data_len = size - self.data_start
        self.entries = {}
        for name, e in header.items():
            try:
                dtype = DTYPES[e["dtype"]]
                shape = [int(d) for d in e["shape"]]
                begin, end = (int(o) for o in e["data_offsets"])
            except (KeyError, TypeError, ValueError):
                raise CheckpointFormatError(f"{path}: tensor {name!r} has a malformed header entry {e!r}") from None
            want = _numel(shape) * _itemsize(dtype)
            if not (0 <= begin <= end <= data_len) or end - begin != want:
                raise CheckpointFormatError(
                    f"{path}: tensor {name!r} ({e['dtype']} {shape}) has data_offsets [{begin}, {end}], "
                    f"which must span {want} bytes inside the {data_len} data bytes")
            self.entries[name] = (dtype, shape, begin, end)

    def names(self):
        return list(self.entries)

    def shape(self, name):
        return tuple(self.entries[name][1])

    def get(self, name):
        dtype, shape, begin, end = self.entries[name]
        with open(self.path, "rb") as f:
            f.seek(self.data_start + begin)
            buf = bytearray(f.read(end - begin))
        if len(buf) == 0:
            return torch.empty(shape, dtype=dtype)
        return torch.frombuffer(buf, dtype=dtype).reshape(shape)


class TensorDict:
    """A checkpoint already in memory (a torch pickle, or tensors built by a test)."""

    def __init__(self, tensors, path="<memory>"):
        self.path = path
        self.tensors = tensors

    def names(self):
        return list(self.tensors)

    def shape(self, name):
        return tuple(self.tensors[name].shape)

    def get(self, name):
        return self.tensors[name]


class Prefixed:
    """One section of a checkpoint: the names under `prefix`, with the prefix removed."""

    def __init__(self, inner, prefix):
        self.inner = inner
        self.prefix = prefix
        self.path = f"{inner.path} [{prefix}*]"

    def names(self):
        return [n[len(self.prefix):] for n in self.inner.names() if n.startswith(self.prefix)]

    def shape(self, name):
        return self.inner.shape(self.prefix + name)

    def get(self, name):
        return self.inner.get(self.prefix + name)


class Merged:
    """Several files read as one checkpoint (sharded weights, an index.json's weight_map)."""

    def __init__(self, parts, path):
        self.path = path
        self.where = {}
        for p in parts:
            for n in p.names():
                if n in self.where:
                    raise CheckpointFormatError(f"{path}: tensor {n!r} is in both {self.where[n].path} and {p.path}")
                self.where[n] = p

    def names(self):
        return list(self.where)

    def shape(self, name):
        return self.where[name].shape(name)

    def get(self, name):
        return self.where[name].get(name)


def load_torch_pickle(path):
    """torch.load with weights_only (torch >= 1.13); nested dicts of tensors are flattened
    with dots, as IP-Adapter's {"image_proj": {...}, "ip_adapter": {...}} is published."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # the unpickler's refusal names the class it would not load
        raise CheckpointFormatError(
            f"{path}: not loadable as plain tensors (torch.load weights_only=True): {str(e).splitlines()[0]}. "
            "Pickles that need other classes are not executed; convert the file to .safetensors first") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]  # LDM/Lightning checkpoints wrap the weights
    flat = {}
    _flatten(obj, "", flat, path)
    return TensorDict(flat, path)


def _flatten(obj, prefix, out, path):
    if isinstance(obj, torch.Tensor):
        out[prefix[:-1]] = obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            _flatten(v, f"{prefix}{k}.", out, path)
    elif prefix == "":
        raise CheckpointFormatError(f"{path}: holds a {type(obj).__name__}, not a dict of tensors")
    # scalars next to the weights (global_step, epoch) are not weights: skipped


def open_checkpoint(path):
    """A reader for one weights file, chosen by extension."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file")
    if path.endswith(".safetensors"):
        return SafetensorsFile(path)
    if path.endswith((".bin", ".pth", ".pt", ".ckpt")):
        return load_torch_pickle(path)
    raise CheckpointFormatError(f"{path}: unknown weights format; allowed: .safetensors, .bin, .pth, .pt, .ckpt")


def open_component(folder, stem, variant=None):
    """The weights of one diffusers/transformers component folder. `stem` is
    "diffusion_pytorch_model" (diffusers) or "model"/"pytorch_model" (transformers).
    Sharded weights (`*.index.json`) are merged. `variant` picks `NAME.VARIANT.ext`
    files (e.g. "fp16"); without it, the plain file is taken, or the only variant there."""
    stems = [stem] if stem != "model" else ["model", "pytorch_model"]
    candidates = []
    for s in stems:
        for ext in (".safetensors", ".bin"):
            for v in ([variant] if variant else [None]):
                name = f"{s}.{v}{ext}" if v else f"{s}{ext}"
                if os.path.isfile(os.path.join(folder, name)):
                    candidates.append(os.path.join(folder, name))
                if os.path.isfile(os.path.join(folder, name + ".index.json")):
                    candidates.append(os.path.join(folder, name + ".index.json"))
    if not candidates and not variant:
        found = sorted(f for f in os.listdir(folder) if any(f.startswith(s + ".") for s in stems)) if os.path.isdir(folder) else []
        variants = sorted({f.split(".")[1] for f in found if f.count(".") >= 2})
        if len(variants) == 1:
            return open_component(folder, stem, variants[0])
        if len(variants) > 1:
            raise CheckpointFormatError(f"{folder}: several weight variants ({', '.join(variants)}); choose one with --variant")
    if not candidates:
        want = " or ".join(f"{s}{'.' + variant if variant else ''}.safetensors/.bin" for s in stems)
        raise FileNotFoundError(f"{folder}: no weights file ({want})")
    path = candidates[0]  # safetensors first: it needs no unpickling
    if path.endswith(".index.json"):
        with open(path) as f:
            weight_map = json.load(f).get("weight_map", {})
        files = sorted(set(weight_map.values()))
        return Merged([open_checkpoint(os.path.join(folder, p)) for p in files], path)
    return open_checkpoint(path)


def write_safetensors(path, tensors, metadata=None):
    """Writes the published layout (used by tests and make_fullsize.py to build inputs)."""
    header = {}
    offset = 0
    order = list(tensors)
    for name in order:
        t = tensors[name]
        if t.dtype not in CODES:
            raise ValueError(f"{name}: dtype {t.dtype} has no safetensors code")
        nbytes = t.numel() * t.element_size()
        header[name] = {"dtype": CODES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)  # the data starts 8-byte aligned
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for name in order:
            t = tensors[name].detach().contiguous().cpu()
            if t.numel():
                f.write(_tensor_bytes(t))
    os.replace(tmp, path)


def _tensor_bytes(t):
    # bfloat16 has no numpy dtype: view the bits as int16
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().tobytes()
    return t.numpy().tobytes()


def _numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def _itemsize(dtype):
    return torch.empty((), dtype=dtype).element_size()
