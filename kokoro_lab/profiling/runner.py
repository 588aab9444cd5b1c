"""The profile runner: providers × precisions, measured side by side in one process.

The rules it implements:

* Every cell (provider, precision) that can run is loaded first, timing the session load and
  the process memory it added (psutil RSS delta), then warmed up with the text itself, so no
  measured run pays for first-run allocations.
* Measured runs *alternate* between cells (the order rotates each repeat), so drift in the
  machine's state (thermal, other processes) spreads over all cells instead of biasing one.
* A cell that cannot run is not silently dropped: it becomes an :class:`Absent` row that says
  why (provider not in this onnxruntime build, CUDA failed to start, graph not derivable …).
* Each measured run is a real stream through the engine: time to first audio and underruns
  come from the engine's simulated playback, RTF is synthesis time over audio time.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..engine import Synthesizer, assets, sessions
from ..engine.sessions import SESSIONS, ProviderUnavailable
from .judges import (
    QUALITY_FIGURES,
    judge,
    quality_cells,
    reference_note,
    release_judges,
    whole_text_reference,
)

DEFAULT_PRECISIONS = ("int8", "fp32", "fp16")
GPU_PROVIDERS = ("cuda", "tensorrt")
# Figures summarised per cell (median with min–max spread) and logged to the run log.
FIGURES = ("first_audio_ms", "first_chunk_ms", "rtf", "synthesis_ms", "audio_ms", "total_ms",
           "underrun_ms")


@dataclass
class Absent:
    """A requested cell that did not run, and why."""

    provider: str
    precision: str
    reason: str


@dataclass
class Measurement:
    """One measured stream of the text on one cell."""

    repeat: int
    order: int  # position in this repeat's rotation
    figures: dict[str, float]
    chunks: list[dict]  # per-chunk records, times relative to the stream's start in ms


@dataclass
class Cell:
    """One (provider, precision) pair that ran."""

    provider: str
    precision: str
    model: str  # honest label of the graph
    load_ms: float
    load_rss_mb: float | None  # None: the session was already loaded before this profile
    active_providers: list[str]
    warmup_ms: float = 0.0
    runs: list[Measurement] = field(default_factory=list)
    quality: dict[str, float] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.provider}/{self.precision}"

    def values(self, figure: str) -> list[float]:
        return [m.figures[figure] for m in self.runs if figure in m.figures]

    def spread(self, figure: str) -> dict[str, float]:
        values = self.values(figure)
        if not values:
            return {"median": float("nan"), "min": float("nan"), "max": float("nan")}
        return {"median": statistics.median(values), "min": min(values), "max": max(values)}

    def summary(self) -> dict:
        row = {"provider": self.provider, "precision": self.precision, "model": self.model,
               "load_ms": round(self.load_ms, 1), "load_rss_mb": self.load_rss_mb,
               "runs": len(self.runs)}
        for figure in FIGURES:
            s = self.spread(figure)
            row[figure] = s["median"]
            row[f"{figure}_min"], row[f"{figure}_max"] = s["min"], s["max"]
        row.update(self.quality)
        return row

    def median_run(self, figure: str = "rtf") -> Measurement | None:
        """The measured run whose ``figure`` is the median (for timelines)."""
        if not self.runs:
            return None
        ordered = sorted(self.runs, key=lambda m: m.figures.get(figure, 0.0))
        return ordered[(len(ordered) - 1) // 2]


@dataclass
class ProfileReport:
    """Everything one :func:`profile` call measured."""

    text: str
    voice: str
    repeats: int
    cells: list[Cell]
    absent: list[Absent]
    machine: dict
    batch: str | None = None  # the run-log batch id, when logged
    run_log: str | None = None
    # quality=True: what PESQ-WB compared against, and that rendering's own WER and DNSMOS
    reference: dict | None = None

    def summary(self) -> list[dict]:
        """One row per cell that ran (median and spread of each figure), then absent rows."""
        rows = [cell.summary() for cell in self.cells]
        rows += [{"provider": a.provider, "precision": a.precision, "absent": a.reason}
                 for a in self.absent]
        return rows

    def chunk_records(self) -> list[dict]:
        """Every measured chunk, with its cell and repeat (for RTF-against-length plots)."""
        out = []
        for cell in self.cells:
            for m in cell.runs:
                out += [{"provider": cell.provider, "precision": cell.precision,
                         "repeat": m.repeat, **c} for c in m.chunks]
        return out

    def absent_groups(self) -> list[tuple[str, list[str], str]]:
        """Absent cells grouped by (provider, reason): a missing CUDA is one line, not three."""
        groups: dict[tuple[str, str], list[str]] = {}
        for a in self.absent:
            groups.setdefault((a.provider, a.reason), []).append(a.precision)
        return [(provider, precisions, reason)
                for (provider, reason), precisions in groups.items()]

    def to_dataframe(self):
        """The summary as a pandas DataFrame (needs pandas)."""
        import pandas as pd

        return pd.DataFrame.from_records(self.summary())

    def fastest(self, figure: str = "rtf") -> Cell | None:
        ran = [c for c in self.cells if c.runs]
        return min(ran, key=lambda c: c.spread(figure)["median"]) if ran else None

    @property
    def judged(self) -> bool:
        """True when the cells carry quality figures (``quality=True``)."""
        return any(cell.quality for cell in self.cells)

    def markdown(self) -> str:
        """The summary table: speed figures, then (when judged) quality figures, per cell."""
        quality = self.judged
        head = "| provider | precision | first audio ms | RTF | load ms | load MB |"
        rule = "|---|---|---:|---:|---:|---:|"
        if quality:
            head += " WER | PESQ-WB mean (min) | DNSMOS OVRL / SIG / P.808 |"
            rule += "---:|---:|---|"
        lines = [head + " model |", rule + "---|"]
        for cell in self.cells:
            mb = "cached" if cell.load_rss_mb is None else f"{cell.load_rss_mb:.0f}"
            row = (f"| {cell.provider} | {cell.precision} | "
                   f"{_spread_text(cell, 'first_audio_ms', 0)} | {_spread_text(cell, 'rtf', 3)} | "
                   f"{cell.load_ms:.0f} | {mb} |")
            if quality:
                row += quality_cells(cell.quality)
            lines.append(f"{row} {cell.model} |")
        dashes = "| — " * (7 if quality else 4)
        for provider, precisions, reason in self.absent_groups():
            lines.append(f"| {provider} | {', '.join(precisions)} {dashes}| absent: {reason} |")
        if quality and self.reference:
            lines += ["", reference_note(self.reference)]
        return "\n".join(lines)

    def figures(self) -> dict:
        """The plotly figures (see :mod:`kokoro_lab.profiling.plots`)."""
        from . import plots

        return plots.figures(self)

    def write_html(self, path: str | os.PathLike) -> Path:
        """All figures and the summary table in one self-contained HTML file."""
        from . import plots

        return plots.write_html(self, path)

    def as_dict(self) -> dict:
        return {"text": self.text, "voice": self.voice, "repeats": self.repeats,
                "machine": self.machine, "batch": self.batch, "reference": self.reference,
                "cells": [asdict(c) for c in self.cells],
                "absent": [asdict(a) for a in self.absent]}

    def _repr_markdown_(self) -> str:
        return self.markdown()

    def __repr__(self) -> str:
        return (f"<ProfileReport {len(self.cells)} cells ran, {len(self.absent)} absent, "
                f"{self.repeats} repeats>")


def _spread_text(cell: Cell, figure: str, digits: int) -> str:
    """The median, with the min–max range when there was more than one measured run."""
    s = cell.spread(figure)
    median = f"{s['median']:.{digits}f}"
    if len(cell.values(figure)) < 2:
        return median
    return f"{median} ({s['min']:.{digits}f}–{s['max']:.{digits}f})"


# ---------------------------------------------------------------------------------------------


def model_label(precision: str) -> str:
    """Where the graph of ``precision`` comes from, in words."""
    env = assets.model_env_var(precision)
    if os.environ.get(env):
        return f"{precision}, user file (${env}: {Path(os.environ[env]).name})"
    try:
        from ..engine.precisions import describe_precision

        return describe_precision(precision)
    except (ImportError, ValueError):
        return precision


def _rss_mb() -> float | None:
    try:
        import psutil
    except ImportError:
        return None
    return psutil.Process().memory_info().rss / 2**20


def default_providers() -> list[str]:
    """What this build offers, plus the GPU providers so their absence is explained."""
    out = list(sessions.available_providers())
    out += [p for p in GPU_PROVIDERS if p not in out]
    return out


def _load_cell(provider: str, precision: str, threads: int | None) -> Cell | Absent:
    """Resolve the graph and load the session, or say why the cell cannot run."""
    try:
        sessions.check_available(provider)
    except ProviderUnavailable as error:
        return Absent(provider, precision, str(error))
    try:
        assets.model_path(precision)  # may derive the graph the first time (not timed)
    except NotImplementedError as error:
        return Absent(provider, precision, f"{precision} graph not available: {error}")
    except (assets.AssetError, OSError) as error:
        return Absent(provider, precision, f"{precision} graph not available: {error}")
    before_count, before_rss = len(SESSIONS), _rss_mb()
    try:
        loaded = SESSIONS.get(precision, provider, threads=threads)
    except ProviderUnavailable as error:
        return Absent(provider, precision, str(error))
    fresh = len(SESSIONS) > before_count
    after_rss = _rss_mb()
    rss = after_rss - before_rss if fresh and before_rss is not None else None
    return Cell(provider=provider.lower(), precision=precision, model=model_label(precision),
                load_ms=loaded.load_ms, load_rss_mb=rss,
                active_providers=list(loaded.active_providers))


class _Progress:
    """tqdm when it is installed (a widget in notebooks), otherwise one line per step."""

    def __init__(self, total: int, enabled: bool):
        self.bar = None
        self.enabled = enabled
        self.done, self.total = 0, total
        if not enabled:
            return
        try:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc="profile", unit="run")
        except ImportError:
            self.bar = None

    def step(self, label: str) -> None:
        self.done += 1
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.set_postfix_str(label)
            self.bar.update(1)
        else:
            print(f"[{self.done}/{self.total}] {label}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _measure(synth: Synthesizer, cell: Cell, text: str, voice: str) -> tuple[dict, list, object]:
    result = synth.synthesize(text, voice=voice, precision=cell.precision,
                              provider=cell.provider)
    playback = result.playback
    synthesis = sum(c.synthesis_ms for c in result.chunks)
    audio = sum(c.audio_ms for c in result.chunks)
    figures = {
        "first_audio_ms": playback.first_audio_ms,
        "first_chunk_ms": playback.first_chunk_ms,
        "total_ms": playback.total_ms,
        "underrun_ms": playback.underrun_ms,
        "synthesis_ms": synthesis,
        "audio_ms": audio,
        "rtf": synthesis / audio if audio else float("inf"),
        "chunks": float(len(result.chunks)),
    }
    chunks = [{
        "index": c.index, "phonemes": c.phoneme_count,
        "start_ms": (c.started - c.queued) * 1000, "ready_ms": c.ready_ms,
        "synthesis_ms": c.synthesis_ms, "audio_ms": c.audio_ms, "rtf": c.rtf,
    } for c in result.chunks]
    return figures, chunks, result


def profile(
    text: str,
    providers: list[str] | tuple[str, ...] | None = None,
    precisions: list[str] | tuple[str, ...] | None = None,
    repeats: int = 3,
    *,
    voice: str = "af_heart",
    progress: bool = True,
    log: bool = True,
    quality: bool = False,
    threads: int | None = None,
    run_log: str | os.PathLike | None = None,
) -> ProfileReport:
    """Run ``text`` on every provider × precision, ``repeats`` times each, alternating.

    ``providers`` defaults to what this onnxruntime build offers plus the GPU providers (shown
    as absent with the reason when they cannot run); ``precisions`` to int8, fp32 and fp16.
    ``quality=True`` judges each cell's last measured run by ear (see
    :mod:`kokoro_lab.profiling.judges`): WER of an independent ASR, PESQ-WB of each chunk
    against the same chunk rendered by kokoro-onnx on the fp32 graph on the CPU (cached),
    DNSMOS OVRL, SIG, BAK and P.808; ``report.reference`` holds the scores of the whole text
    rendered that way, the bar the rows are read against.
    It is slow: a transcription and two judges per cell. ``log=False`` keeps the run out of
    the run log.
    """
    if not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive integer, got {repeats!r}")
    providers = list(providers) if providers is not None else default_providers()
    precisions = list(precisions) if precisions is not None else list(DEFAULT_PRECISIONS)
    if not providers or not precisions:
        raise ValueError("give at least one provider and one precision")
    for precision in precisions:
        if precision not in assets.PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; choose from "
                             f"{', '.join(assets.PRECISIONS)}")
    for provider in providers:
        sessions.provider_name(provider)  # unknown names are a typo: raise, don't mark absent
    if not isinstance(text, str) or not text.strip():
        raise ValueError("text must be a non-empty string")
    before = SESSIONS.keys()  # what the profile adds (cells, lanes, the judges' reference) goes

    from .runlog import machine_info

    cells: list[Cell] = []
    absent: list[Absent] = []
    for provider in dict.fromkeys(p.lower() for p in providers):
        for precision in dict.fromkeys(precisions):
            loaded = _load_cell(provider, precision, threads)
            (cells if isinstance(loaded, Cell) else absent).append(loaded)
    report = ProfileReport(text=text, voice=voice, repeats=repeats, cells=cells, absent=absent,
                           machine=machine_info())
    if not cells:
        SESSIONS.drop(SESSIONS.keys() - before)
        return report

    first = cells[0]
    synth = Synthesizer(precision=first.precision, provider=first.provider, threads=threads,
                        warm_up=False, cache=False)  # every run is synthesized
    synth.resolve_voice(voice)  # a bad voice fails before any work
    bar = _Progress(len(cells) * (repeats + 1), progress)
    last_results = {}
    try:
        for cell in cells:
            started = time.perf_counter()
            _measure(synth, cell, text, voice)
            cell.warmup_ms = (time.perf_counter() - started) * 1000
            bar.step(f"warm-up {cell.key}")
        for repeat in range(repeats):
            shift = repeat % len(cells)
            for order, cell in enumerate(cells[shift:] + cells[:shift]):
                figures, chunks, result = _measure(synth, cell, text, voice)
                cell.runs.append(Measurement(repeat, order, figures, chunks))
                last_results[cell.key] = result
                bar.step(f"{cell.key} #{repeat + 1}")
        if quality:
            _add_quality(report, last_results)
    finally:
        bar.close()
        # A profile's sessions (other precisions, the judges' reference) and judges are
        # hundreds of MB each: given back, so a kernel is as big after a profile as before.
        del synth, last_results
        if quality:
            release_judges()
        SESSIONS.drop(SESSIONS.keys() - before)  # then collects and trims, the judges' too
    if log:
        _log(report, run_log)
    return report


def _add_quality(report: ProfileReport, results: dict) -> None:

    reference = whole_text_reference(report.text, report.voice)
    report.reference = {"label": reference.label, "precision": reference.precision,
                        **reference.scores}
    for cell in report.cells:
        result = results[cell.key]
        finite = bool(np.isfinite(result.audio).all())
        # Audio with NaNs cannot be judged: the row says so instead of failing the profile.
        cell.quality = (judge(result, report.text, report.voice) if finite
                        else dict.fromkeys(QUALITY_FIGURES, float("nan")))
        cell.quality["finite"] = float(finite)


def _log(report: ProfileReport, path) -> None:
    from .runlog import RunLog, new_batch

    log = RunLog(path)
    batch = new_batch()
    for cell in report.cells:
        summary = cell.summary()
        figures = {k: v for k, v in summary.items()
                   if isinstance(v, (int, float)) and k not in ("runs",)}
        figures.update(runs=len(cell.runs), warmup_ms=cell.warmup_ms, repeats=report.repeats)
        if report.reference:  # the bar the quality figures are read against, on every row
            figures.update({f"reference_{k}": v for k, v in report.reference.items()
                            if isinstance(v, (int, float))})
        log.record("profile", cell.provider, cell.precision, figures, model=cell.model,
                   text=report.text, batch=batch)
    report.batch, report.run_log = batch, str(log.path)


__all__ = ["Absent", "Cell", "Measurement", "ProfileReport", "default_providers", "model_label",
           "profile"]
