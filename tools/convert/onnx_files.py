"""ONNX files over protobuf's 2 GB limit: weights in one external data file beside the
graph (`model.onnx` + `model.onnx_data`, optimum's layout; onnxruntime finds it by the
relative location recorded in each initializer).

torch.onnx.export (1.13) switches to external data by itself past 2 GB, writing one file
per tensor. consolidate() streams those into the single file, one tensor at a time, so
a 3.4 GB UNet never needs 3.4 GB of extra memory here.
"""
import os

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper
from onnx.external_data_helper import ExternalDataInfo

DATA_NAME = "model.onnx_data"
ALIGN = 4096  # page-aligned offsets let onnxruntime map the weights instead of copying them
PROTOBUF_LIMIT = 2 * 1024 ** 3


def external_tensors(model):
    return [t for t in model.graph.initializer if t.data_location == TensorProto.EXTERNAL]


def point_to_data(t, offset, length):
    """Make initializer `t` refer to [offset, offset+length) of model.onnx_data."""
    del t.external_data[:]
    t.data_location = TensorProto.EXTERNAL
    for key, value in (("location", DATA_NAME), ("offset", str(offset)), ("length", str(length))):
        entry = t.external_data.add()
        entry.key = key
        entry.value = value


def read_external(t, base_dir):
    info = ExternalDataInfo(t)
    with open(os.path.join(base_dir, info.location), "rb") as f:
        f.seek(info.offset or 0)
        return f.read(info.length) if info.length else f.read()


def consolidate(path):
    """Rewrite a graph whose initializers live in many external files into model.onnx +
    model.onnx_data. A graph with inline weights is left as it is. Returns True if it
    has external data afterwards."""
    base = os.path.dirname(path)
    model = onnx.load(path, load_external_data=False)
    ext = external_tensors(model)
    if not ext:
        return False
    old_files = {ExternalDataInfo(t).location for t in ext}
    tmp = os.path.join(base, DATA_NAME + ".tmp")
    with open(tmp, "wb") as out:
        for t in ext:
            raw = read_external(t, base)
            pad = -out.tell() % ALIGN
            out.write(b"\0" * pad)
            offset = out.tell()
            out.write(raw)
            point_to_data(t, offset, len(raw))
    for f in old_files:
        if f != DATA_NAME:
            os.remove(os.path.join(base, f))
    os.replace(tmp, os.path.join(base, DATA_NAME))
    onnx.save(model, path)
    return True


def save(model, path, tensors=None):
    """Save `model`; `tensors` ({name: numpy array}) are initializer payloads to store
    (inline if the whole graph stays under the protobuf limit, else in model.onnx_data)."""
    base = os.path.dirname(path)
    data_path = os.path.join(base, DATA_NAME)
    tensors = tensors or {}
    total = sum(a.nbytes for a in tensors.values()) + sum(len(t.raw_data) for t in model.graph.initializer)
    by_name = {t.name: t for t in model.graph.initializer}
    if total < PROTOBUF_LIMIT - 64 * 1024 ** 2:
        for name in list(tensors):
            a = tensors.pop(name)  # the bytes move into the proto; keep one copy at a time
            t = by_name[name]
            del t.external_data[:]
            t.data_location = TensorProto.DEFAULT
            t.raw_data = a.tobytes()
            del a
        if os.path.exists(data_path):
            os.remove(data_path)
        onnx.save(model, path)
        return False
    tmp = data_path + ".tmp"
    with open(tmp, "wb") as out:
        for name in list(tensors):
            a = tensors.pop(name)
            t = by_name[name]
            pad = -out.tell() % ALIGN
            out.write(b"\0" * pad)
            offset = out.tell()
            out.write(a.tobytes())
            t.ClearField("raw_data")
            point_to_data(t, offset, a.nbytes)
    os.replace(tmp, data_path)
    onnx.save(model, path)
    return True


def initializer_array(t, base_dir):
    """The numpy value of an initializer, inline or external."""
    if t.data_location == TensorProto.EXTERNAL:
        raw = read_external(t, base_dir)
        dtype = onnx.mapping.TENSOR_TYPE_TO_NP_TYPE[t.data_type]
        return np.frombuffer(raw, dtype=dtype).reshape(tuple(t.dims))
    return numpy_helper.to_array(t)


def sizes(folder):
    """Bytes of model.onnx and model.onnx_data (0 when absent)."""
    out = {}
    for n in ("model.onnx", DATA_NAME):
        p = os.path.join(folder, n)
        out[n] = os.path.getsize(p) if os.path.exists(p) else 0
    return out
