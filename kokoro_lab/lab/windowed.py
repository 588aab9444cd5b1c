"""Windowed vocoder decoding (research; the engine does not run it): the front stage once,
then the generator window by window.

The rule: audio for frames ``[first, last)`` of a chunk comes from one generator run over
``[first - context, last + lookahead)``; only the kept span is emitted, and consecutive windows
overlap by a short raised-cosine crossfade taken from the previous window's lookahead, so a join
is never a hard cut. Three things make a window differ from the unsplit vocoder, and each is
treated here:

* **Harmonic phase.** The source's phase is a ``CumSum`` over every earlier frame; each window
  starts from the offset the frames before it leave (:mod:`kokoro_lab.engine.phase`, which the
  engine's own decoder uses to skip the silent lead pad).
* **Edges.** Reflect pads, dilated convolutions, the ×300 upsampling and the iSTFT see only the
  window, so ``context`` frames on the left and ``lookahead`` frames on the right are decoded
  and thrown away.
* **Time normalisation.** The generator's 44 AdaIN blocks normalise over the whole time axis
  (88 ``ReduceMean`` nodes: a mean and a variance each). In the windowed graph every statistic
  becomes ``a * local + b * prior``, where ``local`` is the window's own statistic, ``prior`` is
  fed in, and the local statistic is also returned. ``stats="local"`` uses the window alone
  (a=1); ``stats="cumulative"`` carries the frame-weighted statistics of every window decoded so
  far (optionally seeded with a calibrated prior worth ``prior_frames`` frames) into the next
  one. With a = 1 and the whole chunk as one window the graph is the unsplit generator, bit for
  bit, which is also how :func:`calibrate` reads the exact whole-chunk statistics. The
  measured effect of each choice is in ``docs/streaming-decoder.md``: none reaches the unsplit
  output's exact whole-chunk statistics, and that is what keeps windowed output from matching.

The silent pads (the durations of the leading and trailing pad tokens, read from the front
stage) are skipped rather than synthesised, less a small margin so the onset and the release
keep their context.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from ..engine import split
from ..engine.graphs.common import copy_model
from ..engine.phase import HARMONICS, PHASE_INPUT, element_types, phase_graph_path, phase_offsets
from ..engine.split import DURATIONS, F0, FEATURES, FRAME_SAMPLES, SAMPLE_RATE, STYLE

WINDOWED_GRAPH = "generator-windowed.onnx"
LOCAL_WEIGHT, PRIOR_WEIGHT = "stats_local_weight", "stats_prior_weight"
LOCAL_SUFFIX, PRIOR_SUFFIX = "/local", "/prior"
STATS_MODES = ("local", "cumulative")
MIN_WINDOW = 8  # frames: below this the reflect pads and the iSTFT have too little to work on


class WindowError(ValueError):
    """Bad windowing parameters."""


# ---------------------------------------------------------------------------------------------
# the generator graph with statistics inputs


def add_stats_inputs(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[str]]:
    """Make every time statistic ``a * local + b * prior`` and return the local one too.

    Returns the rewritten copy and the statistic names (the ``ReduceMean`` outputs, in graph
    order); each gets an input ``name + "/prior"`` and an output ``name + "/local"``.
    """
    model = copy_model(model)
    dtypes = element_types(model)
    graph = model.graph
    nodes: list[onnx.NodeProto] = []
    names: list[str] = []
    for node in graph.node:
        nodes.append(node)
        if node.op_type != "ReduceMean":
            continue
        name = node.output[0]
        names.append(name)
        local, prior = name + LOCAL_SUFFIX, name + PRIOR_SUFFIX
        # The mix runs in float32 whatever the graph's precision (an fp16 graph's statistics are
        # cast up and the result cast back), so priors, weights and local outputs are float32.
        dtype = dtypes.get(name, TensorProto.FLOAT)
        if dtype == TensorProto.FLOAT:
            node.output[0] = local
        else:
            node.output[0] = name + "/local_native"
            nodes.append(helper.make_node("Cast", [node.output[0]], [local],
                                          to=TensorProto.FLOAT))
        mixed = name if dtype == TensorProto.FLOAT else name + "/mixed_f32"
        nodes += [
            helper.make_node("Mul", [local, LOCAL_WEIGHT], [name + "/a"],
                             name=name + "/mix_a"),
            helper.make_node("Mul", [prior, PRIOR_WEIGHT], [name + "/b"], name=name + "/mix_b"),
            helper.make_node("Add", [name + "/a", name + "/b"], [mixed], name=name + "/mix"),
        ]
        if dtype != TensorProto.FLOAT:
            nodes.append(helper.make_node("Cast", [mixed], [name], to=dtype))
        # [1, C, 1]; a [1, 1, 1] zero broadcasts when there is no prior
        graph.input.append(helper.make_tensor_value_info(prior, TensorProto.FLOAT, [1, None, 1]))
        graph.output.append(
            helper.make_tensor_value_info(local, TensorProto.FLOAT, [1, None, 1]))
    if not names:
        raise split.SplitError("the generator stage has no ReduceMean (time statistics) node")
    del graph.node[:]
    graph.node.extend(nodes)
    for weight in (LOCAL_WEIGHT, PRIOR_WEIGHT):
        graph.input.append(helper.make_tensor_value_info(weight, TensorProto.FLOAT, []))
    return model, names


def windowed_graph_path(paths: split.SplitPaths) -> Path:
    """The cached generator stage with both the phase-offset and the statistics inputs."""
    return split.cached_graph(
        paths.sha256, WINDOWED_GRAPH,
        lambda: add_stats_inputs(onnx.load(str(phase_graph_path(paths))))[0])


def stat_names(model: onnx.ModelProto) -> list[str]:
    """The statistic names of a graph made by :func:`add_stats_inputs`, in graph order."""
    return [i.name[: -len(PRIOR_SUFFIX)] for i in model.graph.input
            if i.name.endswith(PRIOR_SUFFIX)]


# ---------------------------------------------------------------------------------------------
# window plan


@dataclass(frozen=True)
class Window:
    """One generator run over frames ``[start, end)`` that emits frames ``[first, last)``."""

    start: int
    first: int
    last: int
    end: int

    @property
    def frames(self) -> int:
        return self.end - self.start


def plan_windows(begin: int, finish: int, total: int, first_window: int, window: int,
                 context: int, lookahead: int) -> list[Window]:
    """Cover frames ``[begin, finish)`` of a ``total``-frame chunk with windows.

    The first window keeps ``first_window`` frames (small, so the first audio is fast); the
    rest keep ``window`` frames. A last window shorter than half a window is merged into the
    one before, so no run is wasted on a sliver.
    """
    for name, value in (("first_window", first_window), ("window", window)):
        if value < 1:
            raise WindowError(f"{name} must be at least 1 frame, got {value}")
    if context < 0 or lookahead < 0:
        raise WindowError(f"context and lookahead must be >= 0, got {context}, {lookahead}")
    if not 0 <= begin < finish <= total:
        raise WindowError(f"need 0 <= begin < finish <= total, got {begin}, {finish}, {total}")
    cuts = [begin]
    size = first_window
    while cuts[-1] + size < finish:
        cuts.append(cuts[-1] + size)
        size = window
    cuts.append(finish)
    if len(cuts) > 2 and cuts[-1] - cuts[-2] < window // 2:
        del cuts[-2]
    windows = []
    for first, last in zip(cuts[:-1], cuts[1:], strict=True):
        start, end = max(0, first - context), min(total, last + lookahead)
        # Too short a run cannot feed the reflect pads: widen it where the chunk allows.
        while end - start < MIN_WINDOW and (start > 0 or end < total):
            start, end = max(0, start - 1), min(total, end + 1)
        windows.append(Window(start, first, last, end))
    return windows


# ---------------------------------------------------------------------------------------------
# the decoder

Stats = dict[str, np.ndarray]


@dataclass
class WindowStats:
    """Timing of one chunk decoded in windows (perf_counter seconds)."""

    front_s: float = 0.0
    window_s: list[float] = field(default_factory=list)
    windows: list[Window] = field(default_factory=list)
    frames: int = 0
    skipped_frames: int = 0


class WindowedDecoder:
    """Front stage once per chunk, then the vocoder window by window.

    ``model_path`` is any Kokoro v1.0 graph (default: the ``precision`` file from
    :func:`kokoro_lab.assets.model_path`). ``first_window``/``window``/``context``/``lookahead``
    are in frames of 12.5 ms. ``providers`` and ``options`` (an ``onnxruntime.SessionOptions``,
    e.g. the engine's ``sessions.session_options(threads)``) go to every session; ``threads``
    sets the intra-op threads when no ``options`` are given. ``skip_pad`` starts at the end of
    the leading pad token less ``pad_margin`` frames, and stops ``pad_margin`` frames after the
    trailing pad begins.
    ``stats`` is ``"local"`` or ``"cumulative"`` (see the module docstring); ``prior`` (from
    :func:`calibrate`) seeds the cumulative statistics with the weight of ``prior_frames``.

    >>> decoder = WindowedDecoder(precision="int8", threads=2)
    >>> for piece in decoder.stream(tokens, style, speed=1.0):
    ...     play(piece)                                  # float32 mono, 24 kHz
    """

    def __init__(self, model_path: str | os.PathLike | None = None, *, precision: str = "int8",
                 providers: list | None = None, threads: int | None = None, options=None,
                 first_window: int = 16, window: int = 80, context: int = 24,
                 lookahead: int = 8, crossfade_ms: float = 5.0, skip_pad: bool = True,
                 pad_margin: int = 6, stats: str = "cumulative", prior: Stats | None = None,
                 prior_frames: float = 300.0):
        import onnxruntime as ort

        if stats not in STATS_MODES:
            raise WindowError(f"stats must be one of {', '.join(STATS_MODES)}, got {stats!r}")
        if prior_frames < 0:
            raise WindowError(f"prior_frames must be >= 0, got {prior_frames}")
        self.first_window, self.window = int(first_window), int(window)
        self.context, self.lookahead = int(context), int(lookahead)
        self.crossfade = int(round(crossfade_ms / 1000 * SAMPLE_RATE))
        if self.crossfade > self.lookahead * FRAME_SAMPLES:
            raise WindowError(
                f"a {crossfade_ms:g} ms crossfade needs at least "
                f"{-(-self.crossfade // FRAME_SAMPLES)} lookahead frames, got {self.lookahead}")
        plan_windows(0, 1, 1, self.first_window, self.window, self.context, self.lookahead)
        paths = split.split_model(model_path) if model_path else split.split_paths(precision)
        self.paths = paths
        self.skip_pad, self.pad_margin = bool(skip_pad), int(pad_margin)
        self.stats, self.prior_frames = stats, float(prior_frames)
        if options is None:
            options = ort.SessionOptions()
            if threads:
                options.intra_op_num_threads = int(threads)
        providers = providers or ["CPUExecutionProvider"]
        self.stages = split.SplitSession(paths, providers=providers, options=options)
        graph = windowed_graph_path(paths)
        self.generator_session = ort.InferenceSession(str(graph), options, providers=providers)
        self.stat_names = [i.name[: -len(PRIOR_SUFFIX)] for i in
                           self.generator_session.get_inputs() if i.name.endswith(PRIOR_SUFFIX)]
        self.prior = self._check_prior(prior) if prior is not None else None
        self.last_stats = WindowStats()

    def _check_prior(self, prior: Stats) -> Stats:
        missing = [name for name in self.stat_names if name not in prior]
        if missing:
            raise WindowError(f"the prior lacks {len(missing)} of {len(self.stat_names)} "
                              f"statistics (first: {missing[0]}); make it with calibrate()")
        return {name: np.asarray(prior[name], np.float32) for name in self.stat_names}

    # -- pieces -----------------------------------------------------------------------------

    def front(self, tokens: np.ndarray, style: np.ndarray, speed: float) -> dict[str, np.ndarray]:
        """The front stage's outputs for one chunk (tokens include the two pad tokens)."""
        tokens = np.asarray(tokens, dtype=np.int64).reshape(1, -1)
        if tokens.shape[1] < 3:
            raise ValueError("tokens must hold at least one token between the two pads")
        return self.stages.front(tokens, style, speed)

    def span(self, front: dict[str, np.ndarray]) -> tuple[int, int, int]:
        """``(begin, finish, total)`` frames to emit, skipping the silent pads if asked."""
        total = int(front[F0].shape[-1])
        if not self.skip_pad:
            return 0, total, total
        return (*split.pad_span(front[DURATIONS], total, self.pad_margin), total)

    def plan(self, front: dict[str, np.ndarray]) -> list[Window]:
        begin, finish, total = self.span(front)
        return plan_windows(begin, finish, total, self.first_window, self.window, self.context,
                            self.lookahead)

    def run_window(self, front: dict[str, np.ndarray], offsets: np.ndarray, window: Window,
                   prior: Stats | None = None, prior_weight: float = 0.0,
                   ) -> tuple[np.ndarray, Stats]:
        """Generator audio for frames ``[window.start, window.end)`` and its local statistics.

        The statistics used are ``(1 - prior_weight) * local + prior_weight * prior``.
        """
        s, e = window.start, window.end
        feeds = {
            STYLE: front[STYLE],
            F0: np.ascontiguousarray(front[F0][:, :, s:e]),
            FEATURES: np.ascontiguousarray(front[FEATURES][:, :, s:e]),
            PHASE_INPUT: offsets[s].reshape(1, 1, HARMONICS),
            LOCAL_WEIGHT: np.array(1.0 - prior_weight, np.float32),
            PRIOR_WEIGHT: np.array(prior_weight, np.float32),
        }
        zero = np.zeros((1, 1, 1), np.float32)
        for name in self.stat_names:
            feeds[name + PRIOR_SUFFIX] = prior[name] if prior is not None else zero
        outputs = self.generator_session.run(
            [split.AUDIO, *(name + LOCAL_SUFFIX for name in self.stat_names)], feeds)
        audio = np.asarray(outputs[0], dtype=np.float32).ravel()
        return audio, dict(zip(self.stat_names, outputs[1:], strict=True))

    # -- streaming --------------------------------------------------------------------------

    def stream(self, tokens: np.ndarray, style: np.ndarray, speed: float) -> Iterator[np.ndarray]:
        """Yield the chunk's audio in pieces, one per window, as soon as each is decoded.

        Concatenated, the pieces cover frames ``[begin, finish)`` of the chunk (see
        :meth:`span`). Timings land in :attr:`last_stats`.
        """
        stats = WindowStats()
        self.last_stats = stats
        started = time.perf_counter()
        front = self.front(tokens, style, speed)
        offsets = phase_offsets(front[F0])
        windows = self.plan(front)
        stats.front_s = time.perf_counter() - started
        stats.windows = windows
        stats.frames = int(front[F0].shape[-1])
        stats.skipped_frames = stats.frames - (windows[-1].last - windows[0].first)
        fade_in = np.sin(np.linspace(0, np.pi / 2, self.crossfade, dtype=np.float32)) ** 2
        tail = np.zeros(0, np.float32)
        carried, seen = self.prior, (self.prior_frames if self.prior is not None else 0.0)
        for window in windows:
            began = time.perf_counter()
            weight = seen / (seen + window.frames) if self.stats == "cumulative" else 0.0
            audio, local = self.run_window(front, offsets, window, carried, weight)
            if self.stats == "cumulative":
                # Count each frame once: only the span this window keeps joins the running mean.
                kept = window.last - window.first
                carried = local if carried is None else {
                    name: (carried[name] * seen + local[name] * kept) / (seen + kept)
                    for name in self.stat_names}
                seen += kept
            keep_from = (window.first - window.start) * FRAME_SAMPLES
            keep_to = (window.last - window.start) * FRAME_SAMPLES
            piece = audio[keep_from:keep_to].copy()
            if tail.size:  # raised-cosine crossfade (gains sum to one) with the last lookahead
                n = min(tail.size, piece.size)
                piece[:n] = piece[:n] * fade_in[:n] + tail[:n] * fade_in[::-1][:n]
            tail = audio[keep_to:keep_to + self.crossfade]
            stats.window_s.append(time.perf_counter() - began)
            yield piece

    def decode(self, tokens: np.ndarray, style: np.ndarray, speed: float) -> np.ndarray:
        """All pieces of :meth:`stream` joined."""
        pieces = list(self.stream(tokens, style, speed))
        return np.concatenate(pieces) if pieces else np.zeros(0, np.float32)

    def unsplit(self, front: dict[str, np.ndarray]) -> tuple[np.ndarray, Stats]:
        """The whole chunk through the windowed graph as one window: the unsplit generator's
        audio (bit-exact) and its exact whole-chunk statistics."""
        total = int(front[F0].shape[-1])
        offsets = np.zeros((total + 1, HARMONICS), np.float32)
        return self.run_window(front, offsets, Window(0, 0, total, total))


def calibrate(decoder: WindowedDecoder, chunks: list[tuple[np.ndarray, np.ndarray, float]],
              ) -> Stats:
    """A statistics prior: the exact whole-chunk statistics of ``(tokens, style, speed)``
    chunks, averaged with each chunk weighted by its frame count.

    This runs the full generator on every chunk (as slow as unsplit synthesis), so do it once
    per voice and keep the result.
    """
    if not chunks:
        raise ValueError("calibrate needs at least one (tokens, style, speed) chunk")
    total: Stats = {}
    frames = 0
    for tokens, style, speed in chunks:
        front = decoder.front(tokens, style, speed)
        _, local = decoder.unsplit(front)
        count = int(front[F0].shape[-1])
        for name, value in local.items():
            total[name] = total.get(name, 0.0) + value.astype(np.float64) * count
        frames += count
    return {name: (value / frames).astype(np.float32) for name, value in total.items()}


__all__ = [
    "STATS_MODES", "Window", "WindowError", "WindowStats", "WindowedDecoder", "add_stats_inputs",
    "calibrate", "plan_windows", "stat_names", "windowed_graph_path",
]
