"""``kokoro-lab tune``: measure the engine's tunings on this machine and keep the best that
passes by ear.

The rules:

* Every candidate (a graph variant with its session settings, :func:`candidates`) is timed on
  this machine against ``tuning="off"`` (the released graph, plain settings), interleaved run
  by run so a noisy neighbour hurts both alike: the generator's milliseconds per second of
  audio on held-out sentences, and the first chunk's time to its first audible sample.
* Every candidate carries a certificate before it can win: PESQ-WB of each chunk against the
  released graph's rendering of the same chunk (mean ≥ :data:`PESQ_MEAN_BAR`, every chunk ≥
  :data:`PESQ_MIN_BAR`; moving the vocoder to fp16 scores ~4.3) and DNSMOS OVRL of the joined
  chunks no lower than the released graph's by more than :data:`DNSMOS_SLACK`, on texts and
  voices no variant was built or calibrated on (:data:`TEXTS`, :data:`VOICES`). A candidate
  that fails to build or to pass is never used, and the table says why.
* The winner is the fastest candidate that passed; it is saved as this machine's profile
  (:mod:`kokoro_lab.engine.tuning`) unless the machine was busy: when other processes used more
  than :data:`BUSY_SHARE` of the CPU while it measured (the load average would count tune's own
  work), the figures are reported as noisy and nothing is saved unless ``force``.
* ``budget_s`` bounds the whole run: candidates not reached are listed as not measured.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from dataclasses import dataclass, field, replace

import numpy as np

from .. import quality
from ..engine import Synthesizer, Tuning
from ..engine.files import display_path
from ..engine.graphs.variants import VARIANTS
from ..engine.metrics import SAMPLE_RATE, first_audible_sample
from ..engine.split import F0
from ..engine.tuning import OFF, cpu_fingerprint, save_profile

PESQ_MEAN_BAR, PESQ_MIN_BAR = 4.0, 3.6
DNSMOS_SLACK = 0.02
BUSY_SHARE = 0.25  # other processes' share of all cores above which timings are noisy
# Held out: no variant is built or calibrated on these (calibration uses lab.texts.LONG).
TEXTS = (
    "When the ferry finally pulled away from the pier, the passengers crowded along the rail.",
    "A boy in a yellow coat waved at the gulls until his mother called him inside.",
    "By the time the island appeared, low and green on the horizon, most of them slept.",
)
VOICES = ("af_heart", "bf_emma", "am_michael")
FIRST_TEXT = "The harbor lights came on one by one, and the fishermen walked home slowly."


@dataclass
class TuneRow:
    """What one candidate measured, and whether it may be used."""

    tuning: Tuning
    ms_per_audio_s: float | None = None  # generator time per second of audio (median)
    speedup: float | None = None  # against tuning="off", same runs interleaved
    first_audible_ms: float | None = None
    pesq_mean: float | None = None
    pesq_min: float | None = None
    dnsmos_delta: float | None = None
    passed: bool = False
    note: str = ""


@dataclass
class TuneReport:
    rows: list[TuneRow]
    winner: TuneRow | None
    others_busy: float  # share of the CPU other processes used while tune measured
    noisy: bool
    saved: str | None = None
    cpu: dict = field(default_factory=cpu_fingerprint)

    def markdown(self) -> str:
        lines = [f"CPU: {self.cpu['model']} ({self.cpu['cores']} cores; "
                 f"{', '.join(self.cpu['features']) or 'no listed features'})",
                 f"other processes used {self.others_busy:.0%} of the CPU while tune measured"
                 + (" — NOISY: figures are not trustworthy" if self.noisy else ""), "",
                 "| tuning | generator ms per s of audio | speed-up | first audible ms | "
                 "PESQ-WB mean (min) | DNSMOS Δ | verdict |", "|---|---:|---:|---:|---:|---:|---|"]
        for row in self.rows:
            lines.append(
                f"| {row.tuning.name} | {_num(row.ms_per_audio_s, 0)} | "
                f"{_num(row.speedup, 2, 'x')} | {_num(row.first_audible_ms, 0)} | "
                f"{_num(row.pesq_mean, 2)} ({_num(row.pesq_min, 2)}) | "
                f"{_num(row.dnsmos_delta, 3, signed=True)} | "
                f"{'**winner**' if row is self.winner else 'pass' if row.passed else 'no'}"
                f"{': ' + row.note if row.note else ''} |")
        lines.append("")
        lines.append(f"saved as this machine's profile: {display_path(self.saved)}"
                     if self.saved else
                     "no profile saved")
        return "\n".join(lines)


def _num(value, digits: int, suffix: str = "", signed: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:+.{digits}f}{suffix}" if signed else f"{value:.{digits}f}{suffix}"


def candidates() -> list[Tuning]:
    """Every graph variant and spinning setting, the likeliest winners first (so a short budget
    measures those): idle threads that sleep matter on a CPU shared with the browser."""
    names = [name for name in reversed(list(VARIANTS)) if name != "released"]
    out = [Tuning(variant=name, spinning=False, name=f"{name}, no spinning",
                  source="kokoro-lab tune") for name in names]
    out += [Tuning(variant=name, name=name, source="kokoro-lab tune") for name in names]
    out.append(Tuning(name="released, no spinning", spinning=False, source="kokoro-lab tune"))
    return out


def tune(budget_s: float = 300.0, *, save: bool = True, force: bool = False,
         progress: bool = True, repeats: int = 3) -> TuneReport:
    """Measure :func:`candidates` against ``tuning="off"`` and keep the fastest that passes."""
    started = time.monotonic()
    others = _OtherProcesses()
    baseline = _Measured(OFF)
    rows: list[TuneRow] = []
    for index, tuning in enumerate(candidates()):
        if time.monotonic() - started > budget_s:
            rows.append(TuneRow(tuning, note="not measured (time budget)"))
            continue
        _say(progress, f"[{index + 1}/{len(candidates())}] {tuning.name} …")
        rows.append(_measure(tuning, baseline, repeats))
    busy = others.share()
    passing = [r for r in rows if r.passed]
    winner = min(passing, key=lambda r: r.ms_per_audio_s, default=None)
    report = TuneReport(rows=[baseline.row(), *rows], winner=winner, others_busy=busy,
                        noisy=busy > BUSY_SHARE)
    if winner is not None and save and (force or not report.noisy):
        chosen = replace(winner.tuning, figures={
            "ms_per_audio_s": winner.ms_per_audio_s, "speedup": winner.speedup,
            "first_audible_ms": winner.first_audible_ms, "pesq_mean": winner.pesq_mean,
            "dnsmos_delta": winner.dnsmos_delta})
        report.saved = str(save_profile(chosen))
    return report


class _Measured:
    """One tuning's synthesizer and what it made (the baseline is measured with each
    candidate, interleaved)."""

    def __init__(self, tuning: Tuning):
        self.tuning = tuning
        self.synth = Synthesizer(tuning=tuning, cache=False)
        self.times: list[float] = []
        self.first: list[float] = []
        self._chunks: dict[tuple[str, str], np.ndarray] | None = None

    def chunks(self) -> dict[tuple[str, str], np.ndarray]:
        """Each held-out (text, voice) rendered as one chunk (speech only), made once."""
        if self._chunks is None:
            self._chunks = {}
            for voice in VOICES:
                for text in TEXTS:
                    chunk = self.synth.render(text, voice)
                    self._chunks[(text, voice)] = chunk.audio[: chunk.speech_samples]
        return self._chunks

    def time_once(self) -> None:
        """One timed pass: generator ms per second of audio, and the first audible sample."""
        decoder = self.synth.decoder_for()
        spent = seconds = 0.0
        for text in TEXTS:
            tokens, style = self.synth.model_inputs(self.synth.phonemize(text, "en-us"),
                                                    self.synth.resolve_voice("af_heart"))
            front = decoder.front({"tokens": tokens, "style": style,
                                   "speed": np.array([1.0], np.float32)})
            frames = np.arange(decoder.first_frame(tokens, front), front[F0].shape[-1])
            start = time.perf_counter()
            audio = decoder.generate(front, frames)
            spent += time.perf_counter() - start
            seconds += len(audio) / SAMPLE_RATE
        self.times.append(spent * 1000 / seconds)
        with self.synth.stream(FIRST_TEXT) as stream:
            first = next(stream)
        hit = first_audible_sample(first.audio) or 0
        self.first.append(first.ready_ms + hit / SAMPLE_RATE * 1000)

    def row(self) -> TuneRow:
        return TuneRow(self.tuning, ms_per_audio_s=_median(self.times), speedup=1.0,
                       first_audible_ms=_median(self.first), pesq_mean=None, passed=True,
                       note="the reference")


def _measure(tuning: Tuning, baseline: _Measured, repeats: int) -> TuneRow:
    try:
        candidate = _Measured(tuning)
    except Exception as error:  # a variant that does not build is reported, never used
        return TuneRow(tuning, note=f"failed to build: {type(error).__name__}: {error}")
    mine: list[float] = []
    theirs: list[float] = []
    for _ in range(repeats):  # interleaved: both feel the same neighbours
        for measured, into in ((candidate, mine), (baseline, theirs)):
            measured.time_once()
            into.append(measured.times[-1])
    row = TuneRow(tuning, ms_per_audio_s=_median(mine), first_audible_ms=_median(
        candidate.first))
    row.speedup = _median(theirs) / row.ms_per_audio_s
    _judge(row, candidate.chunks(), baseline.chunks())
    return row


@dataclass
class Certificate:
    """What the judges heard of a rendering against the released graph's, and why it fails
    (empty when it passes)."""

    pesq_mean: float
    pesq_min: float
    dnsmos_delta: float
    failures: list[str]


def certify(made: dict, reference: dict) -> Certificate:
    """PESQ-WB per chunk against the released graph's rendering of the same (text, voice),
    DNSMOS of the joined chunks against the released graph's, each against its bar."""
    scores = [quality.pesq_wb(reference[key], made[key]) for key in reference]
    pause = np.zeros(SAMPLE_RATE // 4, np.float32)
    joined = [np.concatenate([np.concatenate([a, pause]) for a in audio.values()])
              for audio in (made, reference)]
    found = Certificate(float(np.mean(scores)), float(np.min(scores)),
                        quality.dnsmos(joined[0])["ovrl"] - quality.dnsmos(joined[1])["ovrl"], [])
    if found.pesq_mean < PESQ_MEAN_BAR or found.pesq_min < PESQ_MIN_BAR:
        found.failures.append(f"PESQ-WB {found.pesq_mean:.2f} (min {found.pesq_min:.2f}) under "
                              f"the bar {PESQ_MEAN_BAR} ({PESQ_MIN_BAR})")
    if found.dnsmos_delta < -DNSMOS_SLACK:
        found.failures.append(f"DNSMOS {found.dnsmos_delta:+.3f} below the released graph")
    return found


def _judge(row: TuneRow, made: dict, reference: dict) -> None:
    """The certificate (:func:`certify`), and a candidate slower than the released graph
    fails too."""
    found = certify(made, reference)
    row.pesq_mean, row.pesq_min, row.dnsmos_delta = (found.pesq_mean, found.pesq_min,
                                                     found.dnsmos_delta)
    why = list(found.failures)
    if row.speedup is not None and row.speedup < 1.0:
        why.append("slower than the released graph here")
    row.passed = not why
    row.note = "; ".join(why)


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


class _OtherProcesses:
    """How much of the CPU processes other than this one (and its children) use from now on."""

    def __init__(self):
        import psutil

        self._psutil = psutil
        self.started = time.monotonic()
        self.total, self.own = self._times()

    def _times(self) -> tuple[float, float]:
        total = self._psutil.cpu_times()
        own = self._psutil.Process().cpu_times()
        return (total.user + total.system + getattr(total, "nice", 0.0),
                own.user + own.system + own.children_user + own.children_system)

    def share(self) -> float:
        total, own = self._times()
        wall = (time.monotonic() - self.started) * (os.cpu_count() or 1)
        return max(0.0, (total - self.total) - (own - self.own)) / wall if wall > 0 else 0.0


def _say(progress: bool, text: str) -> None:
    if progress:
        print(text, file=sys.stderr, flush=True)


__all__ = ["BUSY_SHARE", "DNSMOS_SLACK", "PESQ_MEAN_BAR", "PESQ_MIN_BAR", "Certificate",
           "TuneReport", "TuneRow", "candidates", "certify", "tune"]
