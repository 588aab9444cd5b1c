"""fp32 from the int8 release: undo the dynamic quantization pattern by pattern.

Each quantized weight is dequantized (``(q - zero_point) * scale``) and the integer op chain
that used it is replaced by the float op it came from:

- ``DynamicQuantizeLinear → MatMulInteger → Cast → Mul`` → ``MatMul`` (per-column scales),
- ``DynamicQuantizeLinear → ConvInteger → [Add int32 bias] → Cast → Mul`` → ``Conv`` with the
  float bias (per-tensor scale),
- ``DynamicQuantizeLSTM`` → ``LSTM`` (per-direction scales; ORT stores W/R transposed, ONNX
  wants ``[dirs, 4·hidden, input]``),
- ``Gather(quantized table) → DequantizeLinear`` → ``Gather`` on the dequantized table.

The weights are exactly the int8 ones, so the fp32 graph is "int8 weights, float arithmetic":
it removes the *activation* quantization error, not the weight rounding.
"""

from __future__ import annotations

import collections

import numpy as np
import onnx
from onnx import helper

from .common import Graph, RewriteError, ensure_default_opset, prune, quantized_op_counts


def _dequantize(q: np.ndarray, scale: np.ndarray, zero_point: np.ndarray) -> np.ndarray:
    return (q.astype(np.float32) - zero_point.astype(np.float32)) * scale.astype(np.float32)


def _weight_scale(g: Graph, scale_mul: onnx.NodeProto, cast: onnx.NodeProto,
                  act_scale: str) -> str:
    """The weight-scale initializer in ``Mul(cast_output, Mul(activation_scale, weight_scale))``."""
    factors = [i for i in scale_mul.input if i != cast.output[0]]
    if len(factors) != 1:
        raise RewriteError(f"{scale_mul.name!r} does not scale the integer result once")
    product = g.produced_by(factors[0], "Mul")
    others = [i for i in product.input if i != act_scale]
    if len(others) != 1 or others[0] not in g.init:
        raise RewriteError(f"scale product {product.name!r} is not activation × weight scale")
    return others[0]



def dequantize_model(model: onnx.ModelProto) -> onnx.ModelProto:
    """Return a float copy of a dynamically quantized model (see the module docstring)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = Graph(out.graph)
    # Keyed by output name, not id(): protobuf node wrappers are not stable Python objects.
    replacement: dict[str, onnx.NodeProto] = {}  # anchor node's first output -> float node
    counts: collections.Counter[str] = collections.Counter()
    for node in out.graph.node:
        if node.op_type == "MatMulInteger":
            anchor, new = _rewrite_matmul(g, node)
        elif node.op_type == "ConvInteger":
            anchor, new = _rewrite_conv(g, node)
        elif node.op_type == "DynamicQuantizeLSTM":
            anchor, new = node, _rewrite_lstm(g, node)
        elif node.op_type == "DequantizeLinear":
            anchor, new = node, _rewrite_gather(g, node)
        else:
            continue
        replacement[anchor.output[0]] = new
        counts[node.op_type] += 1
    nodes = [replacement.get(n.output[0], n) if n.output else n for n in out.graph.node]
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    out.graph.initializer.extend(g.new_init.values())
    prune(out)
    out.metadata_props.add(key="kokoro_lab.rewritten_ops",
                           value=", ".join(f"{op}×{n}" for op, n in sorted(counts.items())))
    ensure_default_opset(out, 14)  # LSTM/MatMul/Conv/Gather from the default domain
    left = quantized_op_counts(out)
    if left:
        raise RewriteError(f"quantized ops left after the rewrite: {left}")
    return out


def _rewrite_matmul(g: Graph, node: onnx.NodeProto) -> tuple[onnx.NodeProto, onnx.NodeProto]:
    quant = g.produced_by(node.input[0], "DynamicQuantizeLinear")
    cast = g.only_consumer(node.output[0], "Cast")
    mul = g.only_consumer(cast.output[0], "Mul")
    w_scale = _weight_scale(g, mul, cast, quant.output[1])
    zero = node.input[3] if len(node.input) > 3 and node.input[3] else None
    q = g.array(node.input[1])
    zp = g.array(zero) if zero else np.zeros((), q.dtype)
    # MatMulInteger's weight is [K, N] with per-column (N) scale and zero point: broadcasting
    # over the last axis is exactly the per-column dequantization.
    weight = g.add_float((node.input[1], w_scale, zero), node.input[1],
                         _dequantize(q, g.array(w_scale), zp))
    new = helper.make_node("MatMul", [quant.input[0], weight], [mul.output[0]],
                           name=node.name.removesuffix("_quant") or mul.name)
    return mul, new


def _rewrite_conv(g: Graph, node: onnx.NodeProto) -> tuple[onnx.NodeProto, onnx.NodeProto]:
    quant = g.produced_by(node.input[0], "DynamicQuantizeLinear")
    users = g.consumers.get(node.output[0], [])
    bias = None
    if len(users) == 1 and users[0].op_type == "Add":
        add = users[0]
        bias = _float_bias(g, add.input[1] if add.input[0] == node.output[0] else add.input[0])
        cast = g.only_consumer(add.output[0], "Cast")
    else:
        cast = g.only_consumer(node.output[0], "Cast")
    mul = g.only_consumer(cast.output[0], "Mul")
    w_scale = _weight_scale(g, mul, cast, quant.output[1])
    scale = g.array(w_scale)
    if scale.size != 1:
        raise RewriteError(f"{node.name!r}: expected a per-tensor conv scale, got {scale.shape}")
    zero = node.input[3] if len(node.input) > 3 and node.input[3] else None
    q = g.array(node.input[1])
    zp = g.array(zero) if zero else np.zeros((), q.dtype)
    weight = g.add_float((node.input[1], w_scale, zero), node.input[1], _dequantize(q, scale, zp))
    inputs = [quant.input[0], weight] + ([bias] if bias else [])
    new = helper.make_node("Conv", inputs, [mul.output[0]],
                           name=node.name.removesuffix("_quant") or mul.name)
    new.attribute.extend(node.attribute)
    return mul, new


def _float_bias(g: Graph, name: str) -> str:
    """Follow ``Reshape ← Cast ← Floor ← Div(float_bias, scale)`` back to the float bias.

    The quantizer folds the bias into the int32 accumulator as ``floor(bias / scale)``; the
    conv wants the float bias, which is the Div's numerator.
    """
    reshape = g.produced_by(name, "Reshape")
    cast = g.produced_by(reshape.input[0], "Cast")
    floor = g.produced_by(cast.input[0], "Floor")
    div = g.produced_by(floor.input[0], "Div")
    bias = div.input[0]
    if bias not in g.init:
        raise RewriteError(f"the quantized bias {name!r} does not start from a float constant")
    return bias


def _rewrite_lstm(g: Graph, node: onnx.NodeProto) -> onnx.NodeProto:
    # com.microsoft.DynamicQuantizeLSTM inputs: X, W, R, B, seq_lens, initial_h, initial_c, P,
    # W_scale, W_zero_point, R_scale, R_zero_point. W is [dirs, input, 4·hidden] and R is
    # [dirs, hidden, 4·hidden]: the quantizer transposed ONNX's [dirs, 4·hidden, ·] layout.
    inputs = list(node.input) + [""] * (12 - len(node.input))
    floats = []
    for q_name, s_name, z_name in ((inputs[1], inputs[8], inputs[9]),
                                   (inputs[2], inputs[10], inputs[11])):
        q = g.array(q_name)
        scale = g.array(s_name).reshape(-1, 1, 1)  # one scale per direction
        zp = g.array(z_name).reshape(-1, 1, 1)
        value = _dequantize(q, scale, zp).transpose(0, 2, 1)
        floats.append(g.add_float((q_name, s_name, z_name), q_name, np.ascontiguousarray(value)))
    new_inputs = [inputs[0], floats[0], floats[1], *inputs[3:8]]
    while new_inputs and not new_inputs[-1]:
        new_inputs.pop()
    new = helper.make_node("LSTM", new_inputs, list(node.output),
                           name=node.name.removesuffix("_quant") or node.name)
    new.attribute.extend(node.attribute)
    return new


def _rewrite_gather(g: Graph, node: onnx.NodeProto) -> onnx.NodeProto:
    gather = g.produced_by(node.input[0], "Gather")
    g.only_consumer(gather.output[0], "DequantizeLinear")
    q = g.array(gather.input[0])
    zero = node.input[2] if len(node.input) > 2 and node.input[2] else None
    zp = g.array(zero) if zero else np.zeros((), q.dtype)
    scale = g.array(node.input[1])
    if scale.size != 1:
        raise RewriteError(f"{node.name!r}: expected a per-tensor embedding scale")
    table = g.add_float((gather.input[0], node.input[1], zero), gather.input[0],
                        _dequantize(q, scale, zp))
    new = helper.make_node("Gather", [table, gather.input[1]], [node.output[0]],
                           name=gather.name)
    new.attribute.extend(gather.attribute)
    return new

