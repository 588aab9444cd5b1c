"""fp16 from the derived fp32 graph, with numerically fragile islands kept in fp32.

The islands (:data:`FP16_ISLAND_NODES`): the harmonic source's phase (a CumSum of f0/sr scaled
to ~2.4e4 rad, where fp16's spacing is 16 rad), the analysis STFT's ``Atan(Div(imag, real))``
(7e4 → inf, and 0/0 → NaN), and the inverse STFT's division by the window sum. Anything else
whose constants fp16 cannot hold stays fp32 too; every other float op runs in fp16. Model inputs
and outputs stay float32, so callers see no difference.
"""

from __future__ import annotations

import collections

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .common import RewriteError, prune

_GEN = "/decoder/decoder/generator/"
# Nodes kept in fp32, by reason. A pattern ending in "/" is a name prefix, otherwise an exact
# node name. Found by running the fp32 graph with every intermediate exposed: these are the
# only places where values leave fp16's useful range.
FP16_ISLAND_NODES: dict[str, tuple[str, ...]] = {
    # Phase = cumulative sum of f0/sr, times 2π·harmonic: reaches ~2.4e4 rad for a short
    # sentence, where fp16's spacing is 16 rad, so sin() of it would be noise (and longer
    # sentences overflow 65504 outright).
    "sine source phase": (_GEN + "m_source/l_sin_gen/",),
    # Analysis STFT of the source and atan(imag/real): the Div reaches 7e4 (inf in fp16) and
    # is 0/0 where both parts underflow, which Atan turns into NaN.
    "source STFT phase Div→Atan": tuple(
        _GEN + name for name in (
            "STFT", "Transpose_3", "Gather_4", "Gather_5", "Div", "Atan", "Greater", "Less",
            "Pow", "Pow_1", "Add", "Add_1", "Sub", "Sqrt", "Where", "Where_1",
        )
    ),
    # Inverse STFT: exp(log-magnitude), phase rotation and the division by the window sum,
    # whose tail values (~1e-7) vanish in fp16.
    "iSTFT": (_GEN + "istft/", _GEN + "Slice_1", _GEN + "Slice_2", _GEN + "Sin", _GEN + "Exp"),
}
FP16_FP32_ISLANDS: tuple[str, ...] = tuple(FP16_ISLAND_NODES)

# Ops left in fp32 wherever they are: their float inputs have fixed types (Resize's scales) or
# they have no fp16 kernels on the common providers (Range, STFT, CumSum).
FP32_OPS = frozenset({"Resize", "Range", "STFT", "CumSum", "Upsample", "RandomNormalLike"})
# Ops whose inputs may be of any type: no Cast is inserted in front of them.
_ANY_TYPE_INPUT_OPS = frozenset({"Shape", "Size", "Cast"})
# Outputs that are always float32 whatever the input type (normalisation statistics).
_FP32_OUTPUTS = {("LayerNormalization", 1), ("LayerNormalization", 2),
                 ("SkipLayerNormalization", 1), ("SkipLayerNormalization", 2)}
_TENSOR = onnx.AttributeProto.TENSOR
_FP16_MAX = float(np.finfo(np.float16).max)
_FP16_TINY = float(np.finfo(np.float16).smallest_subnormal)


def _matches(node_name: str, pattern: str) -> bool:
    return node_name == pattern or (pattern.endswith("/") and node_name.startswith(pattern))


def island_of(node_name: str) -> str | None:
    """The fp32 island (reason) a node belongs to in the mixed fp16 graph, if any."""
    for reason, patterns in FP16_ISLAND_NODES.items():
        if any(_matches(node_name, pattern) for pattern in patterns):
            return reason
    return None


def fp32_islands(model: onnx.ModelProto, types: dict[str, int] | None = None) -> dict[str, str]:
    """Nodes of ``model`` kept in fp32, as {first output name: reason}.

    The named patterns of :data:`FP16_ISLAND_NODES`, grown by every node sandwiched between
    island nodes (all float inputs from an island, all float outputs into one): optimizer
    leftovers such as an anonymous ``Transpose_token_36`` inside the phase path must not push
    the phase through fp16 between two fp32 nodes.
    """
    types = types if types is not None else tensor_types(model)
    nodes = [n for n in model.graph.node if n.output]
    island = {n.output[0]: r for n in nodes if (r := island_of(n.name))}
    producer = {o: n for n in nodes for o in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = collections.defaultdict(list)
    for node in nodes:
        for name in node.input:
            consumers[name].append(node)
    graph_outputs = {o.name for o in model.graph.output}
    grew = True
    while grew:
        grew = False
        for node in nodes:
            if node.output[0] in island:
                continue
            ins = [i for i in node.input if types.get(i) == TensorProto.FLOAT and i in producer]
            outs = [o for o in node.output if types.get(o) == TensorProto.FLOAT]
            if not ins or not outs or any(o in graph_outputs for o in outs):
                continue
            sources = {island.get(producer[i].output[0]) for i in ins}
            users = [u for o in outs for u in consumers[o]]
            sinks = {island.get(u.output[0]) for u in users}
            if None in sources or None in sinks or not users or len(sources | sinks) != 1:
                continue
            island[node.output[0]] = sources.pop()
            grew = True
    return island


def tensor_types(model: onnx.ModelProto) -> dict[str, int]:
    """Element type of every tensor, as ONNX Runtime infers it (contrib ops included).

    ``onnx.shape_inference`` does not know the com.microsoft ops this graph uses, so ORT is
    asked instead: every node output is exposed as an untyped graph output and the session,
    created without optimizations, reports the types it resolved.
    """
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    known = {o.name for o in probe.graph.output}
    for node in probe.graph.node:
        for name in node.output:
            if name and name not in known:
                probe.graph.output.add().name = name
                known.add(name)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(probe.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    names = {
        "tensor(float)": TensorProto.FLOAT, "tensor(float16)": TensorProto.FLOAT16,
        "tensor(double)": TensorProto.DOUBLE, "tensor(int64)": TensorProto.INT64,
        "tensor(int32)": TensorProto.INT32, "tensor(bool)": TensorProto.BOOL,
    }
    types = {t.name: t.data_type for t in model.graph.initializer}
    for value in list(session.get_inputs()) + list(session.get_outputs()):
        types[value.name] = names.get(value.type, TensorProto.UNDEFINED)
    return types


def _fp16_safe(value: np.ndarray) -> bool:
    """Whether a float constant survives fp16.

    Nothing may overflow. A small constant (an epsilon, a threshold) must not turn from
    nonzero into 0; in a weight tensor a handful of entries below fp16's smallest subnormal
    (6e-8) flushing to zero is harmless, so up to 0.1 % of them are allowed.
    """
    magnitude = np.abs(value[np.isfinite(value)])
    if (magnitude > _FP16_MAX).any():
        return False
    vanishing = int(((magnitude > 0) & (magnitude < _FP16_TINY)).sum())
    if value.size <= 16:
        return vanishing == 0
    return vanishing <= 0.001 * value.size


def _float_attr_tensors(node: onnx.NodeProto) -> list[TensorProto]:
    return [a.t for a in node.attribute
            if a.type == onnx.AttributeProto.TENSOR and a.t.data_type == TensorProto.FLOAT]


def to_mixed_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """Convert a float32 graph to float16, keeping the fragile islands in float32.

    Every node that computes on floats runs in fp16 unless it is in an island
    (:data:`FP16_ISLAND_NODES`), is an op in :data:`FP32_OPS`, or holds a constant that fp16
    cannot represent. Weights are stored once per precision their consumers need; a Cast is
    inserted wherever a float tensor crosses between the two precisions. Inputs and outputs
    stay float32.
    """
    names = [n.name for n in model.graph.node]
    for reason, patterns in FP16_ISLAND_NODES.items():
        for pattern in patterns:
            if not any(_matches(name, pattern) for name in names):
                raise RewriteError(
                    f"fp16 island {reason!r}: no node matches {pattern!r}; this is not the "
                    "Kokoro v1.0 graph the islands were chosen for"
                )
    types = tensor_types(model)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    init = {t.name: t for t in graph.initializer}
    is_float = {name for name, t in types.items() if t == TensorProto.FLOAT}

    islands = fp32_islands(model, types)

    def runs_fp16(node: onnx.NodeProto) -> bool:
        touches = [n for n in (*node.input, *node.output) if n in is_float]
        if not touches or node.op_type in FP32_OPS or node.output[0] in islands:
            return False
        constants = [numpy_helper.to_array(init[n]) for n in node.input if n in init
                     and n in is_float]
        constants += [numpy_helper.to_array(t) for t in _float_attr_tensors(node)]
        return all(_fp16_safe(c) for c in constants)

    nodes = list(graph.node)
    half = {i for i, n in enumerate(nodes) if runs_fp16(n)}
    # The precision each float tensor is produced in.
    produced: dict[str, int] = {i.name: TensorProto.FLOAT for i in graph.input}
    for position, node in enumerate(nodes):
        for index, name in enumerate(node.output):
            if name in is_float:
                fp16 = position in half and (node.op_type, index) not in _FP32_OUTPUTS
                produced[name] = TensorProto.FLOAT16 if fp16 else TensorProto.FLOAT

    new_nodes: list[onnx.NodeProto] = []
    casts: dict[tuple[str, int], str] = {}
    half_inits: dict[str, str] = {}
    used_names = {t.name for t in graph.initializer} | set(types)

    def fresh(base: str) -> str:
        name = base
        while name in used_names:
            name += "_"
        used_names.add(name)
        return name

    for position, node in enumerate(nodes):
        fp16 = position in half
        want = TensorProto.FLOAT16 if fp16 else TensorProto.FLOAT
        if node.op_type not in _ANY_TYPE_INPUT_OPS:
            for index, name in enumerate(node.input):
                if name not in is_float:
                    continue
                if name in init:
                    if fp16:
                        if name not in half_inits:
                            half_inits[name] = fresh(name + "_fp16")
                            tensor = numpy_helper.from_array(
                                numpy_helper.to_array(init[name]).astype(np.float16),
                                half_inits[name])
                            graph.initializer.append(tensor)
                        node.input[index] = half_inits[name]
                    continue
                if produced.get(name, TensorProto.FLOAT) != want:
                    key = (name, want)
                    if key not in casts:
                        casts[key] = fresh(f"{name}_to_{'fp16' if fp16 else 'fp32'}")
                        new_nodes.append(helper.make_node(
                            "Cast", [name], [casts[key]], to=want,
                            name=fresh(f"kokoro_lab_cast/{casts[key]}")))
                    node.input[index] = casts[key]
        if fp16:
            for attr in node.attribute:
                if attr.name == "to" and node.op_type == "Cast" and attr.i == TensorProto.FLOAT:
                    attr.i = TensorProto.FLOAT16
                if attr.t.data_type == TensorProto.FLOAT and attr.type == _TENSOR:
                    attr.t.CopyFrom(numpy_helper.from_array(
                        numpy_helper.to_array(attr.t).astype(np.float16), attr.t.name))
        new_nodes.append(node)

    # Graph outputs stay float32: rename an fp16 producer's output and cast it back.
    for output in graph.output:
        if produced.get(output.name) == TensorProto.FLOAT16:
            inner = fresh(output.name + "_fp16")
            for node in new_nodes:
                for index, name in enumerate(node.output):
                    if name == output.name:
                        node.output[index] = inner
                for index, name in enumerate(node.input):
                    if name == output.name:
                        node.input[index] = inner
            new_nodes.append(helper.make_node("Cast", [inner], [output.name], to=TensorProto.FLOAT,
                                              name=fresh(f"kokoro_lab_cast/{inner}")))
    del graph.node[:]
    graph.node.extend(new_nodes)
    # Types changed under the old annotations; ORT re-infers them.
    del graph.value_info[:]
    prune(out)
    out.metadata_props.add(key="kokoro_lab.fp16_nodes",
                           value=f"{len(half)} of {len(nodes)} nodes in fp16")
    return out
