"""The vocoder's harmonic phase, continued across frames the generator does not decode.

The rule: the generator's sine source takes its phase from a ``CumSum`` over every earlier
frame, so a generator run that starts at frame ``s`` (the engine skips most of the silent lead
pad, :mod:`kokoro_lab.engine.decoding`) must start from the phase the skipped frames would have
left. The generator stage gets one extra input, ``phase_offset`` ``[1, 1, 9]``, added to that
``CumSum``; :func:`phase_offsets` computes the offset for every start frame once, in float64,
from the whole F0 curve exactly as the graph computes the per-frame increment, reduced modulo
one cycle. A run starting at frame 0 with offset 0 is the unmodified generator, bit for bit
(tested).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from . import split
from .graphs.common import copy_model
from .split import FRAME_SAMPLES, SAMPLE_RATE

CUMSUM_NODE = "/decoder/decoder/generator/m_source/l_sin_gen/CumSum"
PHASE_INPUT = "phase_offset"
HARMONICS = 9  # the sine source's fundamental plus eight overtones
# Cycles of phase per unit of the CumSum: the graph multiplies it by 2, pi and 300.
CYCLES_PER_UNIT = float(FRAME_SAMPLES)
PHASE_GRAPH = "generator-phase.onnx"


def add_phase_input(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of the generator stage whose source phase ``CumSum`` gets ``phase_offset`` added."""
    model = copy_model(model)
    graph = model.graph
    nodes = [n for n in graph.node if n.name == CUMSUM_NODE]
    if len(nodes) != 1:
        raise split.SplitError(f"the generator stage has no single {CUMSUM_NODE} node")
    cumsum = nodes[0]
    original = cumsum.output[0]
    dtype = element_types(model).get(original, TensorProto.FLOAT)
    cumsum.output[0] = original + "_before_offset"
    offset = PHASE_INPUT
    added = []
    if dtype != TensorProto.FLOAT:  # a converted graph may run the source in another precision
        offset = PHASE_INPUT + "_cast"
        added.append(helper.make_node("Cast", [PHASE_INPUT], [offset], to=dtype))
    added.append(helper.make_node("Add", [cumsum.output[0], offset], [original],
                                  name=CUMSUM_NODE + "_phase_offset"))
    position = list(graph.node).index(cumsum) + 1
    for node in reversed(added):
        graph.node.insert(position, node)
    graph.input.append(helper.make_tensor_value_info(
        PHASE_INPUT, TensorProto.FLOAT, [1, 1, HARMONICS]))
    return model


def phase_graph_path(paths: split.SplitPaths) -> Path:
    """The cached generator stage with the phase-offset input."""
    return split.cached_graph(
        paths.sha256, PHASE_GRAPH, lambda: add_phase_input(onnx.load(str(paths.generator))))


def element_types(model: onnx.ModelProto) -> dict[str, int]:
    """Element type of every tensor shape inference can type (graphs are not all float32)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # inference is a convenience here: untyped tensors are taken as float32
        return {}
    values = [*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input]
    return {v.name: v.type.tensor_type.elem_type for v in values if v.type.tensor_type.elem_type}


def harmonic_increments(f0: np.ndarray) -> np.ndarray:
    """Per-frame phase increment of each harmonic, in cycles per sample, shape ``[F, 9]``.

    Replicates the graph in float32: F0 times the harmonic number, over the sample rate, modulo
    one. (The graph upsamples F0 by nearest-neighbour ×300 and then linearly downsamples the
    increment by ×1/300, which for a piecewise-constant curve gives back each frame's value.)
    """
    f0 = np.asarray(f0, dtype=np.float32).reshape(-1, 1)
    harmonics = np.arange(1, HARMONICS + 1, dtype=np.float32)[None, :]
    cycles = (f0 * harmonics) / np.float32(SAMPLE_RATE)
    return (cycles - np.floor(cycles)).astype(np.float32)


def phase_offsets(f0: np.ndarray) -> np.ndarray:
    """``offsets[s]``: the CumSum of frames ``< s``, reduced modulo one cycle, shape ``[F+1, 9]``.

    Kept in CumSum units (the graph multiplies by 300 cycles per unit), reduced so that adding
    it to a window's own float32 CumSum loses no precision.
    """
    increments = harmonic_increments(f0).astype(np.float64)
    total = np.concatenate([np.zeros((1, HARMONICS)), np.cumsum(increments, axis=0)])
    cycles = np.mod(total * CYCLES_PER_UNIT, 1.0)
    return (cycles / CYCLES_PER_UNIT).astype(np.float32)


__all__ = ["CUMSUM_NODE", "CYCLES_PER_UNIT", "HARMONICS", "PHASE_INPUT", "add_phase_input",
           "element_types", "harmonic_increments", "phase_graph_path", "phase_offsets"]
