"""Split the Kokoro-82M graph in two just before the vocoder.

The rule: the *front stage* holds every node that does not depend on a vocoder node
(``/decoder/decoder/generator/...``) and the *generator stage* holds everything downstream of
one. The cut is computed from the real graph's data dependencies, not from name prefixes (a
name cut misses eight nodes that sit outside the ``generator/`` scope but consume its output).
On the Kokoro v1.0 graphs it leaves three boundary tensors:

* ``/decoder/Slice_output_0`` ``[1, 128]`` — the decoder half of the style vector,
* ``/decoder/decoder/Unsqueeze_output_0`` ``[1, 1, F]`` — the F0 curve, one value per frame,
* ``/decoder/decoder/decode.3/Div_4_output_0`` ``[1, 512, F]`` — the decoder features,

where one frame is :data:`FRAME_SAMPLES` = 300 samples (12.5 ms at 24 kHz). Quantization
and cast helpers that a converted graph inserts on a boundary tensor (``DynamicQuantizeLinear``
on the style slice in the int8 graph, a ``Cast`` of F0 to fp32 in the fp16 graph) are repeated
in the generator stage, so the boundary stays the same three tensors for every precision.
Chaining the two stages reproduces the unsplit model bit for bit (checked in
``tests/model/test_split.py``).

The *timed graph* is the unsplit model with the token durations (:data:`DURATIONS`) added as a
second output, for the ``"full"`` decoder: one run gives the model's exact audio and the word
timings' durations (adding an output changes no computation; ``tests/model/test_split.py``
checks the audio bit for bit against the released graph).

Both stage files (and the timed graph) are cached in :func:`kokoro_lab.assets.cache_dir` under
the source file's sha256, written atomically, so a changed source file gets a fresh split and an
interrupted build never leaves a half file under the final name.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnx.utils

from . import assets

GENERATOR_PREFIX = "/decoder/decoder/generator/"
STYLE = "/decoder/Slice_output_0"
F0 = "/decoder/decoder/Unsqueeze_output_0"
FEATURES = "/decoder/decoder/decode.3/Div_4_output_0"
BOUNDARY = (STYLE, F0, FEATURES)
# Rounded per-token durations [1, T] (in units of two frames): an extra front-stage output so a
# caller can see where the leading silent pad ends without synthesising it.
DURATIONS = "/encoder/Clip_output_0"
DURATION_FRAMES = 2  # frames per duration unit, at any speed (speed scales the durations)
MODEL_INPUTS = ("tokens", "style", "speed")
AUDIO = "audio"
FRAME_SAMPLES = 300
SAMPLE_RATE = 24000
# Nodes a quantizer or a precision converter puts between a boundary tensor and the generator's
# first consumers: the int8 graph quantizes the style slice, the fp16 graph casts F0 to fp32.
QUANT_HELPERS = {"DynamicQuantizeLinear", "QuantizeLinear", "Cast"}
SPLIT_VERSION = 2  # bump when the way stages are built changes, so old caches are not reused


class SplitError(RuntimeError):
    """The graph does not have the shape this split expects (wrong model, or a new export)."""


@dataclass(frozen=True)
class SplitPaths:
    """The two stage files of one source graph."""

    source: Path
    sha256: str
    front: Path
    generator: Path


def boundary_tensors(model: onnx.ModelProto) -> list[str]:
    """The float tensors a dependency-based cut before the vocoder crosses, sorted by name.

    A node goes to the generator stage when its name starts with :data:`GENERATOR_PREFIX` or any
    of its inputs comes from a generator-stage node; a quantization helper on the boundary is
    traced back to the float tensor it quantizes. The boundary is every non-constant tensor that a
    generator-stage node reads and a front-stage node makes.
    """
    graph = model.graph
    constants = {init.name for init in graph.initializer}
    constants.update(
        out for node in graph.node if node.op_type == "Constant" for out in node.output)
    downstream: set[str] = set()
    generator: list[onnx.NodeProto] = []
    for node in graph.node:  # ONNX requires topological order, so one pass finds the closure
        if node.name.startswith(GENERATOR_PREFIX) or any(i in downstream for i in node.input):
            generator.append(node)
            downstream.update(node.output)
    if not generator:
        raise SplitError(f"no node named {GENERATOR_PREFIX}…: this is not a Kokoro v1.0 graph")
    producers = {out: node for node in graph.node for out in node.output}
    crossing: set[str] = set()
    for node in generator:
        for name in node.input:
            if name and name not in downstream and name not in constants and name in producers:
                crossing.add(name)
    # Follow quantization and cast helpers back to the tensor they convert.
    boundary: set[str] = set()
    for name in crossing:
        producer = producers[name]
        if producer.op_type in QUANT_HELPERS:
            # The helper is deterministic, so both stages may run their own copy of it.
            boundary.add(producer.input[0])
        else:
            boundary.add(name)
    return sorted(boundary)


def check_boundary(model: onnx.ModelProto) -> None:
    """Raise :class:`SplitError` unless the cut crosses exactly :data:`BOUNDARY`."""
    found = boundary_tensors(model)
    if sorted(found) != sorted(BOUNDARY):
        raise SplitError(
            f"the cut before the vocoder crosses {found}, expected {sorted(BOUNDARY)}; "
            "this graph is not the Kokoro v1.0 export the split was written for"
        )


def split_paths(precision: str = "int8", path: str | os.PathLike | None = None) -> SplitPaths:
    """The front and generator stage files for a precision (or a given model file).

    ``precision``/``path`` are resolved with :func:`kokoro_lab.assets.model_path`; the stages
    are built on first use and cached under the source's sha256.
    """
    source = Path(assets.model_path(precision, path))
    return split_model(source)


def split_model(source: str | os.PathLike) -> SplitPaths:
    """Split one model file into its cached front and generator stage files."""
    source = Path(source)
    if not source.is_file():
        raise SplitError(f"model file {source} does not exist")
    digest = source_sha256(source)
    folder = stage_dir(digest)
    front, generator = folder / "front.onnx", folder / "generator.onnx"
    with _lock:
        if not (front.is_file() and generator.is_file()):
            _build(source, front, generator)
    return SplitPaths(source=source, sha256=digest, front=front, generator=generator)


def stage_dir(digest: str) -> Path:
    """The cache folder for graphs derived from the source file with this sha256."""
    return assets.cache_dir() / f"split-v{SPLIT_VERSION}-{digest[:16]}"


def cached_graph(digest: str, name: str, build: Callable[[], onnx.ModelProto]) -> Path:
    """A derived graph cached beside the stages: built once, written atomically."""
    target = stage_dir(digest) / name
    with _lock:
        if not target.is_file():
            write_model(build(), target)
    return target


TIMED_GRAPH = "timed.onnx"


def timed_model(source: str | os.PathLike) -> Path:
    """The cached unsplit graph of ``source`` with :data:`DURATIONS` as its second output."""
    source = Path(source)
    if not source.is_file():
        raise SplitError(f"model file {source} does not exist")
    return cached_graph(source_sha256(source), TIMED_GRAPH,
                        lambda: add_durations_output(onnx.load(str(source))))


def add_durations_output(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with the token durations tensor exposed as a graph output (after ``audio``)."""
    graph = model.graph
    if DURATIONS not in {out for node in graph.node for out in node.output}:
        raise SplitError(f"the graph has no {DURATIONS} tensor (the token durations)")
    if DURATIONS in {out.name for out in graph.output}:
        return model
    typed = {v.name: v for v in graph.value_info}
    if DURATIONS not in typed:  # a rebuilt graph (the derived fp16 one) may carry no value_info
        inferred = onnx.shape_inference.infer_shapes(model).graph.value_info
        typed = {v.name: v for v in inferred}
    if DURATIONS not in typed:
        raise SplitError(f"cannot infer the type of {DURATIONS}")
    output = onnx.ValueInfoProto()
    output.CopyFrom(typed[DURATIONS])
    graph.output.append(output)
    return model


def write_model(model: onnx.ModelProto, target: Path) -> None:
    """Serialize ``model`` to ``target`` atomically (temporary name, then rename)."""
    with assets.atomic_write(target) as out:
        out.write(model.SerializeToString())


_lock = threading.RLock()  # reentrant: a derived graph may build the graph it derives from


def source_sha256(source: Path) -> str:
    """sha256 of a model file (remembered by :func:`assets.file_sha256` while it is unchanged)."""
    return assets.file_sha256(source)


def _build(source: Path, front: Path, generator: Path) -> None:
    model = onnx.load(str(source))
    check_boundary(model)
    if DURATIONS not in {out for node in model.graph.node for out in node.output}:
        raise SplitError(f"the graph has no {DURATIONS} tensor (the token durations)")
    graph = model.graph
    typed = {v.name for v in (*graph.value_info, *graph.input, *graph.output)}
    if any(name not in typed for name in (*BOUNDARY, DURATIONS)):
        # A rebuilt graph (the derived fp16 one) may carry no value_info; Extractor needs it.
        model = onnx.shape_inference.infer_shapes(model)
    try:
        extractor = onnx.utils.Extractor(model)
        front_model = extractor.extract_model(list(MODEL_INPUTS), [*BOUNDARY, DURATIONS])
        generator_model = extractor.extract_model(list(BOUNDARY), [AUDIO])
    except ValueError as error:  # Extractor needs every cut tensor typed by shape inference
        raise SplitError(f"cannot cut {source.name}: {error}") from error
    _name_inputs(generator_model)
    write_model(front_model, front)
    write_model(generator_model, generator)


def _name_inputs(model: onnx.ModelProto) -> None:
    """Give the generator's inputs symbolic shapes; Extractor leaves them unknown."""
    shapes = {STYLE: [1, 128], F0: [1, 1, "frames"], FEATURES: [1, 512, "frames"]}
    for value in model.graph.input:
        dims = value.type.tensor_type.shape.dim
        del dims[:]
        for size in shapes[value.name]:
            dim = dims.add()
            if isinstance(size, int):
                dim.dim_value = size
            else:
                dim.dim_param = size


def pad_span(durations: np.ndarray, total: int, margin: int) -> tuple[int, int]:
    """Frames ``[begin, finish)`` of a ``total``-frame chunk between its two silent pads.

    ``durations`` are the front stage's per-token durations (the pads are the first and last
    tokens); ``margin`` frames of each pad are kept so the onset and the release keep their
    context. The span is never empty.
    """
    durations = np.asarray(durations).ravel()
    lead = int(DURATION_FRAMES * durations[0])
    trail = int(DURATION_FRAMES * durations[-1])
    begin = min(max(0, lead - margin), total - 1)
    finish = min(total, max(begin + 1, total - trail + margin))
    return begin, finish


class SplitSession:
    """The two stages as ONNX Runtime sessions: :meth:`front` then :meth:`generator`.

    ``providers`` and ``options`` are passed to :class:`onnxruntime.InferenceSession`; by default
    CPU with ``threads`` intra-op threads.
    """

    def __init__(self, paths: SplitPaths, providers: list | None = None,
                 threads: int | None = None, options=None):
        import onnxruntime as ort

        if options is None:
            options = ort.SessionOptions()
            if threads:
                options.intra_op_num_threads = threads
        providers = providers or ["CPUExecutionProvider"]
        self.paths = paths
        self.front_session = ort.InferenceSession(str(paths.front), options, providers=providers)
        self.generator_session = ort.InferenceSession(
            str(paths.generator), options, providers=providers)

    def front(self, tokens: np.ndarray, style: np.ndarray, speed: float) -> dict[str, np.ndarray]:
        """Run the front stage: ``{STYLE, F0, FEATURES, DURATIONS}`` for one chunk of tokens."""
        outputs = self.front_session.run([*BOUNDARY, DURATIONS], {
            "tokens": np.asarray(tokens, dtype=np.int64).reshape(1, -1),
            "style": np.asarray(style, dtype=np.float32).reshape(1, 256),
            "speed": np.array([speed], dtype=np.float32),
        })
        return dict(zip((*BOUNDARY, DURATIONS), outputs, strict=True))

    def generator(self, boundary: dict[str, np.ndarray]) -> np.ndarray:
        """Run the whole generator stage on the front stage's outputs; float32 audio."""
        audio = self.generator_session.run([AUDIO], {k: boundary[k] for k in BOUNDARY})[0]
        return np.asarray(audio, dtype=np.float32).ravel()

    def __call__(self, tokens: np.ndarray, style: np.ndarray, speed: float) -> np.ndarray:
        return self.generator(self.front(tokens, style, speed))


__all__ = [
    "BOUNDARY", "DURATIONS", "DURATION_FRAMES", "F0", "FEATURES", "FRAME_SAMPLES", "STYLE",
    "TIMED_GRAPH", "add_durations_output",
    "SplitError", "SplitPaths",
    "SplitSession", "boundary_tensors", "cached_graph", "check_boundary", "pad_span",
    "split_model", "split_paths", "timed_model",
]
