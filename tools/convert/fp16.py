"""fp32 ONNX graph -> fp16 graph (weights, float inputs and outputs, and the arithmetic).

torch 1.13 on CPU cannot run (so cannot trace) most layers in half precision, so the
converter exports fp32 and rewrites the graph, deciding per node:

- a node computes in fp16 when one of its float inputs is fp16 (a float graph input, a
  weight, or the output of an fp16 node); otherwise it stays fp32. Weights are float
  initializers with more than one element; scalars and Constant nodes are neutral and
  take the precision of the node that reads them.
- so a float path that starts from integers stays fp32 until it meets a weight: the
  sinusoidal timestep embedding (t up to 999, where fp16 would lose the phase) and
  CLIP's causal mask are computed in fp32 and cast when they meet fp16 values, as
  diffusers' fp16 pipelines do.
- Resize's roi and scales inputs stay fp32 (the ONNX spec allows only float there).

Casts are inserted where precisions meet; fp32 -> fp16 conversion of constants clips to
the fp16 range (+-65504) instead of producing infinities.
"""
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import onnx_files

FLOAT, HALF = TensorProto.FLOAT, TensorProto.FLOAT16
FP32_INPUTS = {"Resize": (1, 2)}
HALF_MAX = 65504.0


def _half(a):
    return np.clip(a, -HALF_MAX, HALF_MAX).astype(np.float16)


def convert(src, dst):
    """Convert the graph at `src` (inline or external weights) and write it to `dst`."""
    base = os.path.dirname(src)
    model = onnx.load(src, load_external_data=False)
    g = model.graph
    for n in g.node:
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in n.attribute):
            raise ValueError(f"{src}: node {n.name} ({n.op_type}) has a subgraph; not supported")

    types = {}
    inferred = onnx.shape_inference.infer_shapes(model)
    for vi in list(inferred.graph.value_info) + list(g.input) + list(g.output):
        types[vi.name] = vi.type.tensor_type.elem_type
    inits = {t.name: t for t in g.initializer}
    for t in g.initializer:
        types[t.name] = t.data_type

    fixed_use = {n.input[k] for n in g.node for k in FP32_INPUTS.get(n.op_type, ()) if k < len(n.input) and n.input[k]}
    weights = {name for name, t in inits.items()
               if t.data_type == FLOAT and int(np.prod(t.dims)) > 1 and name not in fixed_use}

    # 1. precision of every float value: 'h' fp16, 'f' fp32, 'c' neutral constant
    prec = {i.name: "h" for i in g.input if types.get(i.name) == FLOAT}
    for name, t in inits.items():
        if t.data_type == FLOAT:
            prec[name] = "h" if name in weights else "c"
    node_prec = []
    for node in g.node:
        if node.op_type == "Constant":
            value = next((a.t for a in node.attribute if a.name == "value"), None)
            if value is not None and value.data_type == FLOAT:
                prec[node.output[0]] = "c"
            node_prec.append(None)
            continue
        if node.op_type == "Cast":
            to = next(a.i for a in node.attribute if a.name == "to")
            src_p = prec.get(node.input[0])
            p = "h" if to == HALF or (to == FLOAT and src_p == "h") else ("f" if to == FLOAT else None)
            node_prec.append(p)
            if p:
                prec[node.output[0]] = p
            continue
        fixed = FP32_INPUTS.get(node.op_type, ())
        float_in = [n for k, n in enumerate(node.input) if n and k not in fixed and prec.get(n)]
        p = "h" if any(prec[n] == "h" for n in float_in) else "f"
        node_prec.append(p)
        for o in node.output:
            t = types.get(o)
            if t == FLOAT or (t is None and float_in):
                prec[o] = p

    # 2. rewire inputs, inserting casts and fp16 copies of constants where precisions meet
    new_nodes = []
    casts = {}
    half_copies = {}
    extra_inits = []
    const_nodes = {n.output[0]: n for n in g.node if n.op_type == "Constant"}

    def cast(name, to):
        key = (name, to)
        if key not in casts:
            out = f"{name}__to{'16' if to == HALF else '32'}"
            new_nodes.append(helper.make_node("Cast", [name], [out], to=to, name=out))
            casts[key] = out
        return casts[key]

    def as_half(name):
        p = prec[name]
        if p == "h":
            return name
        if p == "f":
            return cast(name, HALF)
        if name not in half_copies:  # a neutral constant read by an fp16 node
            copy = name + "__fp16"
            if name in inits:
                extra_inits.append((copy, name))
            else:
                value = next(a.t for a in const_nodes[name].attribute if a.name == "value")
                arr = _half(numpy_helper.to_array(value))
                new_nodes.append(helper.make_node("Constant", [], [copy], value=numpy_helper.from_array(arr, copy), name=copy))
            half_copies[name] = copy
        return half_copies[name]

    def as_float(name):
        return cast(name, FLOAT) if prec.get(name) == "h" else name

    for node, p in zip(g.node, node_prec):
        if node.op_type == "Cast":
            if p == "h":
                for a in node.attribute:
                    if a.name == "to":
                        a.i = HALF
            new_nodes.append(node)
            continue
        if p is not None:
            fixed = FP32_INPUTS.get(node.op_type, ())
            for k, n in enumerate(node.input):
                if not n or n not in prec:
                    continue
                node.input[k] = as_float(n) if (k in fixed or p == "f") else as_half(n)
        new_nodes.append(node)

    # 3. graph inputs and outputs in fp16
    for i in g.input:
        if types.get(i.name) == FLOAT:
            i.type.tensor_type.elem_type = HALF
    for o in g.output:
        if types.get(o.name) != FLOAT:
            continue
        if prec.get(o.name) == "f":
            inner = o.name + "__fp32"
            for n in new_nodes:
                n.output[:] = [inner if x == o.name else x for x in n.output]
                n.input[:] = [inner if x == o.name else x for x in n.input]
            new_nodes.append(helper.make_node("Cast", [inner], [o.name], to=HALF, name=o.name + "__cast"))
        o.type.tensor_type.elem_type = HALF

    del g.node[:]
    g.node.extend(new_nodes)
    del g.value_info[:]

    # 4. initializer payloads: weights in fp16, fp16 copies of neutral constants, unused dropped
    used = {x for n in g.node for x in n.input} | {o.name for o in g.output}
    arrays = {}
    keep = []
    for t in list(g.initializer):
        if t.name not in used and t.name not in {src for _, src in extra_inits}:
            continue
        arr = onnx_files.initializer_array(t, base)
        if t.name in weights:
            arr = _half(arr)
        keep.append((t, arr))
    for copy, src_name in extra_inits:
        src_arr = next(a for t, a in keep if t.name == src_name)
        keep.append((numpy_helper.from_array(_half(src_arr), copy), _half(src_arr)))
    del g.initializer[:]
    for t, arr in keep:
        if t.name not in used:
            continue
        fresh = onnx.TensorProto()
        fresh.name = t.name
        fresh.dims.extend(arr.shape)
        fresh.data_type = onnx.mapping.NP_TYPE_TO_TENSOR_TYPE[arr.dtype]
        g.initializer.append(fresh)
        arrays[t.name] = np.ascontiguousarray(arr)
    keep.clear()
    # strict type inference before the payloads go in (it copies the whole model): a
    # float/half mix anywhere fails here, not in the engine
    onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    onnx_files.save(model, dst, arrays)
