"""Derived precisions: fp32 and fp16 graphs rebuilt from the one released int8 graph.

The rule: only the int8 Kokoro-82M graph is published on the registries, so the other
precisions are *derived* from it, never downloaded, and every derived file says so.

* ``fp32`` undoes the dynamic quantization pattern by pattern. Each quantized weight is
  dequantized (``(q - zero_point) * scale``) and the integer op chain that used it is replaced by
  the float op it came from:

  - ``DynamicQuantizeLinear → MatMulInteger → Cast → Mul`` → ``MatMul`` (per-column scales),
  - ``DynamicQuantizeLinear → ConvInteger → [Add int32 bias] → Cast → Mul`` → ``Conv`` with the
    float bias (per-tensor scale),
  - ``DynamicQuantizeLSTM`` → ``LSTM`` (per-direction scales; ORT stores W/R transposed, ONNX
    wants ``[dirs, 4·hidden, input]``),
  - ``Gather(quantized table) → DequantizeLinear`` → ``Gather`` on the dequantized table.

  The weights are exactly the int8 ones, so the fp32 graph is "int8 weights, float
  arithmetic": it removes the *activation* quantization error, not the weight rounding.
* ``fp16`` converts that fp32 graph to float16 but keeps numerically fragile islands in fp32
  (see :data:`FP16_ISLAND_NODES`): the harmonic source's phase (a CumSum of f0/sr scaled to
  ~2.4e4 rad, where fp16's spacing is 16 rad), the analysis STFT's ``Atan(Div(imag, real))``
  (7e4 → inf, and 0/0 → NaN), and the inverse STFT's division by the window sum. Anything
  else whose constants fp16 cannot hold stays fp32 too; every other float op runs in fp16.
  Model inputs and outputs stay float32, so callers see no difference.

Derived files are cached beside the int8 file, named after the source's sha256, written
atomically, and stamped with their own sha256 so a truncated or corrupted cache file is
detected and rebuilt rather than loaded.
"""

from __future__ import annotations

import collections
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .assets import INT8_SHA256, AssetError, atomic_write, file_sha256

DERIVED = ("fp32", "fp16")
QUANTIZED_OPS = frozenset(
    {"MatMulInteger", "ConvInteger", "DynamicQuantizeLinear", "DynamicQuantizeLSTM",
     "DequantizeLinear", "QuantizeLinear"}
)
METADATA_KEY = "kokoro_lab.derivation"
# Bumped whenever the rewrite changes, so caches built by an older rewriter are not reused.
REWRITE_VERSION = "4"

LABELS = {
    "int8": "int8, the released graph (dynamic quantization)",
    "fp32": "fp32, dequantized from the int8 release",
}


# ---------------------------------------------------------------------------------------------
# public API


def expected_path(cache: Path, precision: str, source_sha256: str = INT8_SHA256) -> Path:
    """Where the ``precision`` graph derived from the int8 file with ``source_sha256`` lives."""
    _check_precision(precision)
    return Path(cache) / (
        f"kokoro-v1.0.{precision}-from-int8-{source_sha256[:12]}-r{REWRITE_VERSION}.onnx"
    )


def derived_model(int8: Path, precision: str, cache: Path) -> Path:
    """Path of the ``precision`` graph derived from ``int8``, building and caching it once.

    The cached file is reused only if its recorded sha256 stamp still matches its content;
    otherwise (missing, truncated, corrupted) it is rebuilt.
    """
    _check_precision(precision)
    int8 = Path(int8)
    if not int8.is_file():
        raise AssetError(f"the int8 model to derive {precision} from ({int8}) does not exist")
    # Named by the content hash, so a different int8 file never reuses another's derivation.
    source_sha = file_sha256(int8)
    target = expected_path(cache, precision, source_sha)
    if _cached_ok(target):
        return target
    if precision == "fp32":
        model = dequantize_model(onnx.load(str(int8)))
    else:
        model = to_mixed_fp16(onnx.load(str(derived_model(int8, "fp32", cache))))
    _label(model, precision, source_sha)
    _save(model, target)
    _remove_stale_revisions(target)
    return target


def describe_precision(precision: str) -> str:
    """A human label for a precision, saying where its graph came from."""
    if precision == "fp16":
        return f"fp16 mixed (fp32 islands: {', '.join(FP16_FP32_ISLANDS)}), from the int8 release"
    if precision not in LABELS:
        raise ValueError(f"unknown precision {precision!r}; choose one of int8, fp32, fp16")
    return LABELS[precision]


def derivation_of(path: Path) -> str | None:
    """The derivation label stored in a model file's metadata, or None for a non-derived file."""
    model = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}.get(METADATA_KEY)


def quantized_op_counts(model: onnx.ModelProto) -> dict[str, int]:
    """How many nodes of each quantized op type the graph still holds."""
    counts = collections.Counter(n.op_type for n in model.graph.node)
    return {op: counts[op] for op in sorted(QUANTIZED_OPS) if counts[op]}


def _check_precision(precision: str) -> None:
    if precision not in DERIVED:
        raise ValueError(
            f"precision {precision!r} is not derived; derived precisions are {', '.join(DERIVED)}"
        )


def _stamp(path: Path) -> Path:
    return path.with_suffix(".sha256")


def _cached_ok(path: Path) -> bool:
    stamp = _stamp(path)
    return path.is_file() and stamp.is_file() and stamp.read_text().strip() == file_sha256(path)


def _remove_stale_revisions(target: Path) -> None:
    """Delete the same derivation built by older rewriter revisions (hundreds of MB each)."""
    stem = target.name.rsplit("-r", 1)[0]
    for old in target.parent.glob(f"{stem}-r*.onnx"):
        if old != target:
            old.unlink(missing_ok=True)
            _stamp(old).unlink(missing_ok=True)


def _save(model: onnx.ModelProto, target: Path) -> None:
    data = model.SerializeToString()
    with atomic_write(target) as out:
        out.write(data)
    with atomic_write(_stamp(target)) as out:
        out.write(hashlib.sha256(data).hexdigest().encode())


def _label(model: onnx.ModelProto, precision: str, source_sha: str) -> None:
    # No timestamps or timings: the same source gives byte-identical derived files anywhere.
    text = f"{describe_precision(precision)} (sha256 {source_sha})"
    entries = {
        METADATA_KEY: text,
        "kokoro_lab.precision": precision,
        "kokoro_lab.source_sha256": source_sha,
        "kokoro_lab.rewrite_version": REWRITE_VERSION,
    }
    kept = [p for p in model.metadata_props if p.key not in entries]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in entries.items():
        model.metadata_props.add(key=key, value=value)
    model.producer_name = "kokoro-lab"
    model.doc_string = text


# ---------------------------------------------------------------------------------------------
# the graph view


@dataclass
class _Graph:
    """Producer/consumer/initializer indexes over one graph, for pattern matching."""

    graph: onnx.GraphProto
    init: dict[str, TensorProto] = field(init=False)
    producer: dict[str, onnx.NodeProto] = field(init=False)
    consumers: dict[str, list[onnx.NodeProto]] = field(init=False)

    def __post_init__(self) -> None:
        self.init = {t.name: t for t in self.graph.initializer}
        self.producer = {o: n for n in self.graph.node for o in n.output if o}
        self.consumers = collections.defaultdict(list)
        for node in self.graph.node:
            for name in node.input:
                if name:
                    self.consumers[name].append(node)
        self.names = set(self.init) | set(self.producer) | {i.name for i in self.graph.input}
        self.new_init: dict[str, TensorProto] = {}
        self.dequantized: dict[tuple, str] = {}

    def array(self, name: str) -> np.ndarray:
        if name not in self.init:
            raise RewriteError(f"{name!r} is expected to be a constant initializer")
        return numpy_helper.to_array(self.init[name])

    def only_consumer(self, name: str, op_type: str) -> onnx.NodeProto:
        users = self.consumers.get(name, [])
        if len(users) != 1 or users[0].op_type != op_type:
            found = [u.op_type for u in users]
            raise RewriteError(f"{name!r} should feed exactly one {op_type}, feeds {found}")
        return users[0]

    def produced_by(self, name: str, op_type: str) -> onnx.NodeProto:
        node = self.producer.get(name)
        if node is None or node.op_type != op_type:
            found = node.op_type if node is not None else "no node"
            raise RewriteError(f"{name!r} should come from {op_type}, comes from {found}")
        return node

    def add_float(self, key: tuple, base: str, value: np.ndarray) -> str:
        """Register a dequantized initializer once per source (shared weights stay shared)."""
        if key in self.dequantized:
            return self.dequantized[key]
        name = base.removesuffix("_quantized") if base.endswith("_quantized") else base + "_float"
        while name in self.names:
            name += "_f"
        self.names.add(name)
        self.new_init[name] = numpy_helper.from_array(value.astype(np.float32), name)
        self.dequantized[key] = name
        return name


class RewriteError(AssetError):
    """The int8 graph does not have the quantization pattern the rewriter expects."""


def _dequantize(q: np.ndarray, scale: np.ndarray, zero_point: np.ndarray) -> np.ndarray:
    return (q.astype(np.float32) - zero_point.astype(np.float32)) * scale.astype(np.float32)


def _weight_scale(g: _Graph, scale_mul: onnx.NodeProto, cast: onnx.NodeProto,
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


# ---------------------------------------------------------------------------------------------
# fp32: undo the dynamic quantization


def dequantize_model(model: onnx.ModelProto) -> onnx.ModelProto:
    """Return a float copy of a dynamically quantized model (see the module docstring)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = _Graph(out.graph)
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
    _ensure_default_opset(out, 14)  # LSTM/MatMul/Conv/Gather from the default domain
    left = quantized_op_counts(out)
    if left:
        raise RewriteError(f"quantized ops left after the rewrite: {left}")
    return out


def _rewrite_matmul(g: _Graph, node: onnx.NodeProto) -> tuple[onnx.NodeProto, onnx.NodeProto]:
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


def _rewrite_conv(g: _Graph, node: onnx.NodeProto) -> tuple[onnx.NodeProto, onnx.NodeProto]:
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


def _float_bias(g: _Graph, name: str) -> str:
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


def _rewrite_lstm(g: _Graph, node: onnx.NodeProto) -> onnx.NodeProto:
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


def _rewrite_gather(g: _Graph, node: onnx.NodeProto) -> onnx.NodeProto:
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


def prune(model: onnx.ModelProto) -> None:
    """Drop nodes whose outputs nobody uses, then initializers and value_info left orphaned."""
    graph = model.graph
    needed = {o.name for o in graph.output}
    kept: list[onnx.NodeProto] = []
    for node in reversed(graph.node):
        if any(o in needed for o in node.output if o):
            kept.append(node)
            needed.update(i for i in node.input if i)
    kept.reverse()
    del graph.node[:]
    graph.node.extend(kept)
    inits = [t for t in graph.initializer if t.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(inits)
    produced = {o for n in kept for o in n.output}
    infos = [v for v in graph.value_info if v.name in produced]
    del graph.value_info[:]
    graph.value_info.extend(infos)


def _ensure_default_opset(model: onnx.ModelProto, minimum: int) -> None:
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx"):
            if opset.version < minimum:
                raise RewriteError(f"default opset {opset.version} is older than {minimum}")
            return
    model.opset_import.add(domain="", version=minimum)


# ---------------------------------------------------------------------------------------------
# fp16: mixed precision

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
