"""Judges by ear for the profile: PESQ-WB against reference renderings, DNSMOS, and WER.

The rules this module implements:

* **The reference is fp32 on the CPU, rendered by kokoro-onnx.** A reference rendering of a
  text is kokoro-onnx's ``Kokoro.create`` running the **fp32** graph on the **CPU**: fp32 is the
  closest this project gets to the original float model (see docs/precisions.md), the CPU is
  deterministic and everywhere, and kokoro-onnx is an independent implementation of the
  pipeline around the model (its own batching, trimming and pauses), so a fault in kokoro_lab's
  own code cannot hide in the yardstick. Where fp32 cannot be derived (no ``onnx`` package) the
  int8 graph stands in, and the reference's label says so.
* **PESQ-WB compares chunk with chunk.** Each chunk a row streamed is compared with the
  reference rendering of that chunk's text, whole (one model call); the row shows the mean and
  the lowest over its chunks (chunks under 0.25 s, too short for PESQ, are left out). Measured
  here, PESQ against the *whole text* rendered at once cannot align a streamed rendering's
  pauses and re-phrased pieces: 1.03–1.25 for int8 streams of texts of 3 to 16 words, while the
  same chunks score 1.3–4.4 chunk by chunk and an fp32 stream scores 4.64 on every chunk. So
  PESQ-WB hears what the precision and the provider do to the sound of a chunk; what the
  chunk plan does to the whole (fragmentation) is heard by DNSMOS, which needs no reference.
* **DNSMOS and WER judge the whole utterance**, the streamed output a listener would get, and
  the reference rendering of the *whole text* is judged the same way: its DNSMOS and WER are
  the bar the rows are read against (a streamed row whose DNSMOS OVRL falls below it is
  paying for its cuts).
* **References are cached** per text, voice, speed, language and graph file (its name, size
  and modification time), in memory and as ``.npy`` files under the asset cache
  (``references/``), so re-profiling a text costs nothing more than the judges.
* **Each row is judged on its last measured run.**
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np

from ..engine import assets
from ..engine.metrics import SAMPLE_RATE, Chunk, Result
from ..engine.sessions import SESSIONS
from ..engine.voices import Voice, VoiceBank, parse

REFERENCE_PRECISION = "fp32"
REFERENCE_PROVIDER = "cpu"
REFERENCE_VERSION = 1  # bump when the way the reference is rendered changes: old files are unused
CACHE_FOLDER = "references"
# The figures a judged row gains (the run log stores them under these names).
QUALITY_FIGURES = ("wer", "pesq_wb", "pesq_wb_min", "pesq_chunks", "dnsmos_ovrl", "dnsmos_sig",
                   "dnsmos_bak", "dnsmos_p808")
MIN_PESQ_SAMPLES = SAMPLE_RATE // 4  # PESQ needs a quarter of a second on both sides

_MEMORY: dict[str, np.ndarray] = {}
_MEMORY_LOCK = threading.Lock()


@dataclass
class Reference:
    """The rendering every row is compared with, and its own scores."""

    audio: np.ndarray = field(repr=False)
    label: str  # what it is, in words (shown under the table)
    precision: str
    cached: bool  # read from the cache rather than rendered now
    scores: dict[str, float] = field(default_factory=dict)  # its own WER and DNSMOS, if judged


def reference_precision() -> tuple[str, str]:
    """(the precision the reference uses here, why if it is not fp32)."""
    try:
        assets.model_path(REFERENCE_PRECISION)  # derives it the first time
    except (ImportError, NotImplementedError, assets.AssetError, OSError) as error:
        return "int8", f"fp32 not available here: {error}"
    return REFERENCE_PRECISION, ""


def _cache_key(text: str, voice: Voice, speed: float, lang: str, model: Path) -> str:
    stat = model.stat()
    identity = {
        "version": REFERENCE_VERSION, "text": text, "voice": [list(p) for p in voice.parts],
        "speed": round(float(speed), 4), "lang": lang,
        "model": [model.name, stat.st_size, stat.st_mtime_ns],
        "voices": assets.voices_path().name, "kokoro_onnx": metadata.version("kokoro-onnx"),
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:32]


def _render(text: str, voice: Voice, speed: float, lang: str, precision: str) -> np.ndarray:
    """kokoro-onnx ``create`` on the whole text, on our cached CPU session of ``precision``."""
    from kokoro_onnx import Kokoro

    loaded = SESSIONS.get(precision, REFERENCE_PROVIDER)
    voices = assets.voices_path()
    kokoro = Kokoro.from_session(loaded.session, str(voices))
    style = VoiceBank(voices).table(voice)  # a blend is a style table like any voice
    audio, _rate = kokoro.create(text, style, speed=speed, lang=lang)
    return np.asarray(audio, dtype=np.float32)


def reference_rendering(text: str, voice: str | Voice = "af_heart", speed: float = 1.0,
                        lang: str | None = None) -> Reference:
    """The reference rendering of ``text`` (see the module's rules), from the cache when there."""
    spec = parse(voice)
    lang = lang or spec.lang
    precision, why = reference_precision()
    model = assets.model_path(precision)
    key = _cache_key(text, spec, speed, lang, model)
    path = assets.cache_dir() / CACHE_FOLDER / f"{key}.npy"
    label = (f"kokoro-onnx create, {precision} graph on {REFERENCE_PROVIDER}"
             + (f" ({why})" if why else ""))
    with _MEMORY_LOCK:
        audio = _MEMORY.get(key)
    cached = audio is not None or path.is_file()
    if audio is None and cached:
        audio = np.load(path)
    if audio is None:
        audio = _render(text, spec, speed, lang, precision)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f"{key}.{os.getpid()}.tmp.npy")
        np.save(temporary, audio)
        temporary.replace(path)  # whole files only: a reader never sees half of one
    with _MEMORY_LOCK:
        _MEMORY[key] = audio
    return Reference(audio=audio, label=label, precision=precision, cached=cached)


def chunk_pesq(chunks: Sequence[Chunk], voice: str | Voice, speed: float = 1.0,
               lang: str | None = None) -> dict[str, float]:
    """PESQ-WB of each chunk against the reference rendering of its text: mean, lowest, and
    how many chunks were long enough to judge."""
    from .. import quality

    scores = []
    for chunk in chunks:
        try:
            reference = reference_rendering(chunk.text, voice, speed, lang)
        except ValueError:  # kokoro-onnx found nothing to say in it: no reference to judge by
            continue
        if min(len(chunk.audio), len(reference.audio)) >= MIN_PESQ_SAMPLES:
            scores.append(quality.pesq_wb(reference.audio, chunk.audio))
    if not scores:
        return {"pesq_wb": float("nan"), "pesq_wb_min": float("nan"), "pesq_chunks": 0.0}
    return {"pesq_wb": float(np.mean(scores)), "pesq_wb_min": float(min(scores)),
            "pesq_chunks": float(len(scores))}


def listen(audio: np.ndarray, text: str) -> dict[str, float]:
    """The judges that hear a whole utterance: WER against ``text`` and DNSMOS."""
    from .. import quality

    samples = np.asarray(audio, dtype=np.float32)
    scores = {"wer": quality.intelligibility(samples, text)}
    scores.update({f"dnsmos_{name}": value for name, value in quality.dnsmos(samples).items()})
    return scores


def judge(result: Result, text: str, voice: str | Voice, speed: float = 1.0,
          lang: str | None = None) -> dict[str, float]:
    """Every judge on one streamed rendering: WER, DNSMOS, and PESQ-WB chunk by chunk."""
    return {**listen(result.audio, text), **chunk_pesq(result.chunks, voice, speed, lang)}


def whole_text_reference(text: str, voice: str | Voice = "af_heart", speed: float = 1.0,
                         lang: str | None = None) -> Reference:
    """The reference rendering of the whole text, judged: the bar for DNSMOS and WER."""
    reference = reference_rendering(text, voice, speed, lang)
    reference.scores = listen(reference.audio, text)
    return reference


def release_judges() -> None:
    """Forget the remembered reference renderings and the judges' models (after a judged
    profile: they are loaded again by the next one)."""
    from .. import quality

    with _MEMORY_LOCK:
        _MEMORY.clear()
    quality.release()


# -- how judged figures are printed ----------------------------------------------------------


def _figure(scores: dict, key: str, digits: int = 2) -> str:
    number = scores.get(key)
    return "–" if number is None or number != number else f"{number:.{digits}f}"


def quality_cells(scores: dict) -> str:
    """A row's WER, PESQ-WB (mean and lowest chunk) and DNSMOS as table cells ("–" for what
    was not judged)."""
    dnsmos = " / ".join(_figure(scores, f"dnsmos_{k}") for k in ("ovrl", "sig", "p808"))
    pesq = f"{_figure(scores, 'pesq_wb')} ({_figure(scores, 'pesq_wb_min')})"
    return f" {_figure(scores, 'wer')} | {pesq} | {dnsmos} |"


def reference_note(reference: dict) -> str:
    """The lines under a judged table: what PESQ-WB compared against, and the bar for DNSMOS
    and WER (the whole text rendered by the reference)."""
    dnsmos = " / ".join(_figure(reference, f"dnsmos_{k}") for k in ("ovrl", "sig", "p808"))
    return (f"*PESQ-WB (1–4.64): each chunk against the same text rendered whole by "
            f"{reference['label']}, mean (lowest chunk). The whole text rendered the same way "
            f"scores WER {_figure(reference, 'wer')} and DNSMOS OVRL / SIG / P.808 {dnsmos}: "
            "the bar for those columns. Each cell is judged on its last measured run.*")


__all__ = ["QUALITY_FIGURES", "Reference", "chunk_pesq", "judge", "listen", "quality_cells",
           "reference_note", "reference_precision", "reference_rendering", "release_judges",
           "whole_text_reference"]
