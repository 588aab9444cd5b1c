"""Where the first chunk's time goes, stage by stage and op by op.

The rules:

* **Stages** are timed on the engine's own path for the first chunk a stream would make of the
  text: text processing (normalising the text and planning the first chunk), phonemes (the
  phonemizer's calls while planning), model inputs (tokens and the style row), the front
  stage (text encoder, durations, F0), the generator (the vocoder, on the frames the decoder
  keeps), finishing (trim, fades, pause and the words' timings) and the hand-off (chunk made →
  the stream's consumer has it). Each is the median of ``repeats`` warm runs.
* **Ops** come from ONNX Runtime's own profiler: a fresh profiled session on each graph file the
  decoder runs (the same file, threads and options as the engine's), fed the very inputs of the
  timed runs; one warm-up run is dropped, then kernel time is summed per op type and divided by
  the runs. ``share`` is of the model's kernel time (all stages), so rows add up to 1.
* The chunk cache is off: every figure is a synthesis.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..engine import Synthesizer
from ..engine.chunking import ChunkPlanner
from ..engine.files import display_path
from ..engine.finish import finish_chunk
from ..engine.request import check_text
from ..engine.sessions import create_session
from ..engine.split import DURATIONS, F0, FRAME_SAMPLES, SAMPLE_RATE
from ..engine.words import chunk_words

STAGES = ("text", "phonemes", "inputs", "front", "generator", "finish", "hand-off")
MODEL_STAGES = ("front", "generator", "model")


@dataclass
class OpRow:
    """One op type in one stage: kernel milliseconds per run and share of the model's time."""

    stage: str
    op_type: str
    nodes: int
    ms: float
    share: float = 0.0


@dataclass
class OpsProfile:
    """The first chunk's breakdown: stage times (engine path) and op rows (ORT profiler)."""

    text: str
    chunk_text: str
    precision: str
    provider: str
    decoder: str
    graphs: list[str]
    threads: int
    repeats: int
    frames: int  # vocoder frames decoded
    audio_s: float  # seconds of audio the chunk holds
    stages: dict[str, float] = field(default_factory=dict)  # stage -> ms (median)
    rows: list[OpRow] = field(default_factory=list)

    @property
    def model_ms(self) -> float:
        """Kernel time of the model's stages, per run (the sum of the op rows)."""
        return sum(row.ms for row in self.rows)

    def stage_ops(self, stage: str) -> list[OpRow]:
        return [row for row in self.rows if row.stage == stage]

    def markdown(self, top: int = 8) -> str:
        total = sum(self.stages.values())
        lines = [f"**First chunk** {self.chunk_text!r}: {self.audio_s:.2f} s of audio, "
                 f"{self.frames} vocoder frames; {self.precision}/{self.provider}, decoder "
                 f"{self.decoder}, {self.threads} threads, median of {self.repeats} warm runs",
                 "", "| stage | ms | share |", "|---|---:|---:|"]
        for stage, ms in self.stages.items():
            lines.append(f"| {stage} | {ms:.1f} | {ms / total:.0%} |" if total else
                         f"| {stage} | {ms:.1f} | – |")
        lines.append(f"| **total** | **{total:.1f}** | |")
        for stage in MODEL_STAGES:
            rows = self.stage_ops(stage)
            if not rows:
                continue
            lines += ["", f"| {stage}: op type | nodes | ms per run | share of model |",
                      "|---|---:|---:|---:|"]
            for row in rows[:top]:
                lines.append(f"| {row.op_type} | {row.nodes} | {row.ms:.1f} | {row.share:.0%} |")
            rest = rows[top:]
            if rest:
                lines.append(f"| {len(rest)} more | {sum(r.nodes for r in rest)} | "
                             f"{sum(r.ms for r in rest):.1f} | "
                             f"{sum(r.share for r in rest):.0%} |")
        return "\n".join(lines)

    _repr_markdown_ = markdown

    def as_dict(self) -> dict:
        return {**{k: v for k, v in self.__dict__.items() if k != "rows"},
                "model_ms": self.model_ms, "rows": [row.__dict__ for row in self.rows]}

    def to_dataframe(self):
        """One row per (stage, op type) (needs pandas)."""
        import pandas as pd

        return pd.DataFrame.from_records([row.__dict__ for row in self.rows])

    def figure(self):
        """A plotly bar per stage, the model's stages split by op type (see
        :func:`kokoro_lab.profiling.plots.ops_figure`)."""
        from .plots import ops_figure

        return ops_figure(self)


def profile_ops(text: str, voice: str = "af_heart", speed: float = 1.0, *,
                precision: str = "int8", provider: str = "cpu", decoder: str | None = None,
                threads: int | None = None, repeats: int = 5,
                synth: Synthesizer | None = None) -> OpsProfile:
    """Profile the first chunk of ``text``: stage times on the engine's path, op rows from
    ONNX Runtime's profiler. ``synth`` (with its cache off) may be passed to reuse its warm
    sessions; otherwise one is made for ``precision``, ``provider``, ``decoder``, ``threads``.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    synth = synth or Synthesizer(precision, provider, threads=threads, cache=False,
                                 **({"decoder": decoder} if decoder else {}))
    request = synth.request(text, voice, speed)
    engine = synth.decoder_for(request.decoder, request.precision, request.provider)
    stages: dict[str, list[float]] = defaultdict(list)
    for _ in range(repeats + 1):  # the first pass warms the phonemizer and the sessions
        chunk, inputs, front, frames, audio = _first_chunk(synth, engine, request, stages)
    stages = {stage: values[1:] for stage, values in stages.items()}
    stages["hand-off"] = _hand_off(synth, request, repeats)
    profile = OpsProfile(
        text=text, chunk_text=chunk.text, precision=engine.precision, provider=engine.provider,
        decoder=engine.mode, graphs=[display_path(s.graph) for s in engine.sessions],
        threads=engine.threads, repeats=repeats, frames=len(frames),
        audio_s=len(audio) / SAMPLE_RATE,
        stages={stage: statistics.median(stages[stage]) for stage in STAGES})
    profile.rows = _op_rows(engine, inputs, front, frames, repeats)
    return profile


def _first_chunk(synth, engine, request, stages):
    """One pass over the first chunk's stages, each timed into ``stages``."""
    clock = time.perf_counter
    phonemizing = [0.0]

    def phonemize(piece: str) -> str:
        started = clock()
        try:
            return synth.phonemize(piece, request.lang)
        finally:
            phonemizing[0] += clock() - started

    t0 = clock()
    cleaned = check_text(request.text)
    planner = ChunkPlanner(cleaned, phonemize, cleaned=True)
    chunk = planner.next_chunk(1)
    t1 = clock()
    tokens, style = synth.model_inputs(chunk.phonemes, request.voice)
    inputs = {"tokens": tokens, "style": style,
              "speed": np.array([request.speed], np.float32)}
    t2 = clock()
    if engine.mode == "full":
        audio, durations = engine.sessions[0].session.run(["audio", DURATIONS], inputs)
        front, frames, raw = {DURATIONS: durations}, np.arange(len(audio.ravel()) //
                                                                FRAME_SAMPLES), audio.ravel()
        t3 = t4 = clock()
    else:
        front = engine.front(inputs)
        t3 = clock()
        begin = engine.first_frame(tokens, front)
        frames = np.arange(begin, int(front[F0].shape[-1]))
        raw = engine.generate(front, frames)
        t4 = clock()
    finished = finish_chunk(raw, chunk.boundary, request.speed, opens_stream=True)
    chunk_words(chunk.text, chunk.phonemes, np.asarray(front[DURATIONS]).ravel(),
                finished.trim_start, finished.speech_samples,
                phonemize=lambda piece: synth.phonemize(piece, request.lang))
    t5 = clock()
    for stage, seconds in zip(("text", "phonemes", "inputs", "front", "generator", "finish"),
                              (t1 - t0 - phonemizing[0], phonemizing[0], t2 - t1, t3 - t2,
                               t4 - t3, t5 - t4), strict=True):
        stages[stage].append(seconds * 1000)
    return chunk, inputs, front, frames, finished.audio


def _hand_off(synth: Synthesizer, request, repeats: int) -> list[float]:
    """Milliseconds from a stream's first chunk being made to its consumer having it."""
    waits = []
    for _ in range(repeats):
        stream = synth.stream(request)
        first = next(stream)
        waits.append((time.perf_counter() - first.finished) * 1000)
        stream.cancel()
        stream.join(30)
    return waits


def _op_rows(engine, inputs, front, frames, repeats: int) -> list[OpRow]:
    """Kernel time per (stage, op type), per run, from profiled twins of the engine's
    sessions fed the same inputs."""
    feeds = {}
    if engine.mode == "full":
        feeds["model"] = inputs
    else:
        feeds["front"] = inputs
        feeds["generator"] = engine.generator_feeds(front, frames)
    rows: list[OpRow] = []
    with tempfile.TemporaryDirectory(prefix="kokoro-lab-ops-") as folder:
        for (stage, feed), loaded in zip(feeds.items(), engine.sessions, strict=True):
            session, _ = create_session(Path(loaded.graph), loaded.provider, loaded.threads,
                                        profile_prefix=str(Path(folder) / stage),
                                        custom_ops=loaded.custom_ops)
            for _ in range(repeats + 1):
                session.run(None, feed)
            with open(session.end_profiling(), encoding="utf-8") as events:
                rows += kernel_rows(stage, json.load(events), repeats)
    total = sum(row.ms for row in rows) or 1.0
    for row in rows:
        row.share = row.ms / total
    return sorted(rows, key=lambda r: (MODEL_STAGES.index(r.stage), -r.ms))


def kernel_rows(stage: str, events: list[dict], runs: int) -> list[OpRow]:
    """Per op type: nodes and kernel milliseconds per run over the last ``runs`` model runs of
    an ORT profile (earlier runs are warm-up)."""
    spans = sorted((e["ts"], e["ts"] + e["dur"]) for e in events
                   if e.get("cat") == "Session" and e.get("name") == "model_run")[-runs:]
    if not spans:
        return []
    totals: dict[str, float] = defaultdict(float)
    nodes: dict[str, set[str]] = defaultdict(set)
    for event in events:
        name = event.get("name", "")
        if event.get("cat") != "Node" or not name.endswith("_kernel_time"):
            continue
        ts = event.get("ts", 0)
        if not any(start <= ts <= end for start, end in spans):
            continue
        op = event.get("args", {}).get("op_name", "?")
        totals[op] += float(event.get("dur", 0)) / 1000
        nodes[op].add(name)
    return [OpRow(stage, op, len(nodes[op]), ms / len(spans)) for op, ms in totals.items()]


__all__ = ["STAGES", "OpRow", "OpsProfile", "kernel_rows", "profile_ops"]
