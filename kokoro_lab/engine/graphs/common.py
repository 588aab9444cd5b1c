"""A view of an ONNX graph for pattern rewrites: who makes and who reads each tensor, the
initializers as arrays, and the clean-up every rewrite needs (unused nodes, the default opset).
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..files import AssetError

QUANTIZED_OPS = frozenset(
    {"MatMulInteger", "ConvInteger", "DynamicQuantizeLinear", "DynamicQuantizeLSTM",
     "DequantizeLinear", "QuantizeLinear"}
)


def copy_model(model: onnx.ModelProto) -> onnx.ModelProto:
    """A deep copy to rewrite, leaving the caller's graph as it was."""
    return onnx.ModelProto.FromString(model.SerializeToString())


def attributes(node: onnx.NodeProto) -> dict:
    """A node's attributes as Python values, by name."""
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def quantized_op_counts(model: onnx.ModelProto) -> dict[str, int]:
    """How many nodes of each quantized op type the graph still holds."""
    counts = collections.Counter(n.op_type for n in model.graph.node)
    return {op: counts[op] for op in sorted(QUANTIZED_OPS) if counts[op]}


@dataclass
class Graph:
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
            for name in dict.fromkeys(node.input):  # a node reading a tensor twice counts once
                if name:
                    self.consumers[name].append(node)
        self.names = set(self.init) | set(self.producer) | {i.name for i in self.graph.input}
        self.new_init: dict[str, TensorProto] = {}
        self.dequantized: dict[tuple, str] = {}

    def array(self, name: str) -> np.ndarray:
        if name not in self.init:
            raise RewriteError(f"{name!r} is expected to be a constant initializer")
        return numpy_helper.to_array(self.init[name])

    def only(self, name: str, op_type: str) -> onnx.NodeProto | None:
        """The one node reading ``name`` if it is an ``op_type``, else None."""
        users = self.consumers.get(name, [])
        return users[0] if len(users) == 1 and users[0].op_type == op_type else None

    def made_by(self, name: str, op_type: str) -> onnx.NodeProto | None:
        """The node making ``name`` if it is an ``op_type``, else None."""
        node = self.producer.get(name)
        return node if node is not None and node.op_type == op_type else None

    def const(self, name: str, value: np.ndarray) -> str:
        """A new initializer (added by :meth:`rebuild`)."""
        self.new_init[name] = numpy_helper.from_array(np.asarray(value), name)
        return name

    def rebuild(self, model: onnx.ModelProto, replace: dict[str, list[onnx.NodeProto]],
                drop: set[str]) -> None:
        """Emit ``replace[out]`` where the node making ``out`` was, drop the nodes making
        ``drop``, add the new initializers and prune what nothing reads any more."""
        nodes = []
        for node in self.graph.node:
            first = node.output[0] if node.output else ""
            if first in replace:
                nodes += replace[first]
            elif first not in drop:
                nodes.append(node)
        del self.graph.node[:]
        self.graph.node.extend(nodes)
        self.graph.initializer.extend(self.new_init.values())
        prune(model)

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


def ensure_default_opset(model: onnx.ModelProto, minimum: int) -> None:
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx"):
            if opset.version < minimum:
                raise RewriteError(f"default opset {opset.version} is older than {minimum}")
            return
    model.opset_import.add(domain="", version=minimum)

