"""The resblocks' normalise-Snake-quantize chains as one custom op (``kokoro_lab.SnakeQuantize``).

The rule: in ``matmul-fused-poly-stft`` every resblock convolution reads

    InstanceNormalization -> nine element-wise Snake passes -> DynamicQuantizeLinear
    -> Transpose (time-major) -> [Pad with the zero point] -> im2col Gather -> GEMM

and :func:`fuse_snake_quantize` replaces everything from the norm to the Pad with one
``SnakeQuantize`` node that computes the same thing (the same polynomial Snake, the same
quantization rule) in three passes over its input and writes the padded, time-major uint8 tensor
the im2col reads. Measured with ONNX Runtime's profiler, those chains were about two thirds of a
first chunk's vocoder time: the norm, the Snake and the quantizer are cheap per element, but each
pass is a round trip to memory. Only a chain that matches exactly is fused (anything else is left
as it was); the op comes from :mod:`.native`, so a graph with it runs only in a session that
registered that library, which the session cache does for :data:`NATIVE_VARIANTS`.

Where the norm reads a ``Transpose`` to channel-major that nothing else reads (the output of each
resblock's first convolution, a GEMM that writes time-major: 24 of the vocoder's 48 chains), the
fused node is a ``SnakeQuantizeTimeMajor`` that reads the GEMM's output as it is: the Transpose
goes, and the kernel's own byte transpose with it.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from .common import Graph, RewriteError, attributes, copy_model
from .native import DOMAIN, OP, OP_TIME_MAJOR

# The Snake's polynomial passes after the norm (variants.sin_squared_nodes, degree 2), by the
# suffix of the tensor each one makes under the norm's prefix, with its op type.
SNAKE_PASSES = (("shifted", "Add"), ("n", "Sub"), ("f", "Sub"), ("w", "Mul"), ("h2", "Mul"),
                ("a1", "Add"), ("h1", "Mul"), ("v", "Add"))


def _chain(g: Graph, norm: onnx.NodeProto):
    """The fusable chain after one ``.../instance_norm/norm``, or None: (the prefix, the Snake's
    last Mul, the quantizer, the time-major Transpose, the Pad or None)."""
    p = norm.name.removesuffix("norm")
    if not norm.name.endswith("/instance_norm/norm") or norm.output[0] != p + "u":
        return None
    for suffix, op in SNAKE_PASSES:
        if g.made_by(p + suffix, op) is None:
            return None
    snake = g.only(p + "v", "Mul")
    quant = g.only(snake.output[0], "DynamicQuantizeLinear") if snake is not None else None
    turn = g.only(quant.output[0], "Transpose") if quant is not None else None
    if turn is None or attributes(turn).get("perm") != [0, 2, 1]:
        return None
    pad = g.only(turn.output[0], "Pad")
    if pad is not None and (len(pad.input) < 3 or pad.input[2] != quant.output[2]
                            or attributes(pad).get("mode", b"constant") != b"constant"):
        return None
    return p, snake, quant, turn, pad


def _pads(g: Graph, pad: onnx.NodeProto | None) -> np.ndarray:
    if pad is None:
        return np.zeros(2, np.int64)
    pads = g.array(pad.input[1])
    if pads.tolist()[::3] != [0, 0] or pads[2] or pads[5]:
        raise RewriteError(f"{pad.name}: pads {pads.tolist()} are not along time only")
    return np.array([pads[1], pads[4]], np.int64)


def fuse_snake_quantize(model: onnx.ModelProto) -> onnx.ModelProto:
    """Every norm-Snake-quantize chain of a ``matmul-fused-poly`` graph as one ``SnakeQuantize``
    (see the module docstring)."""
    out = copy_model(model)
    g = Graph(out.graph)
    replace: dict[str, list[onnx.NodeProto]] = {}
    drop: set[str] = set()
    for norm in out.graph.node:
        found = _chain(g, norm) if norm.op_type == "InstanceNormalization" else None
        if found is None:
            continue
        p, snake, quant, turn, pad = found
        out_scale = g.array(next(i for i in snake.input if i != p + "v")).reshape(-1)
        params = [attributes(norm).get("epsilon", 1e-5),
                  *(float(g.array(p + c)) for c in ("c1", "c2"))]
        last = pad if pad is not None else turn
        x, op = norm.input[0], OP
        back = g.made_by(x, "Transpose")  # to channel-major, for this norm alone: read x as it was
        if back is not None and attributes(back).get("perm") == [0, 2, 1] \
                and g.only(x, "InstanceNormalization") is norm:
            x, op = back.input[0], OP_TIME_MAJOR
        replace[last.output[0]] = [helper.make_node(
            op, [x, norm.input[1], norm.input[2],
                 g.const(p + "out_scale", out_scale.astype(np.float32)),
                 g.const(p + "params", np.array(params, np.float32)),
                 g.const(p + "pads", _pads(g, pad))],
            [last.output[0], quant.output[1], quant.output[2]], domain=DOMAIN,
            name=p + "snake_quantize")]
        drop.update([norm.output[0], *(p + s for s, _ in SNAKE_PASSES), snake.output[0],
                     quant.output[0], turn.output[0]])
    if not replace:
        raise RewriteError("no InstanceNormalization -> polynomial Snake -> "
                           "DynamicQuantizeLinear chain to fuse")
    if not any(o.domain == DOMAIN for o in out.opset_import):
        out.opset_import.append(helper.make_opsetid(DOMAIN, 1))
    g.rebuild(out, replace, drop)
    return out


__all__ = ["fuse_snake_quantize"]
