"""A chunk's raw model output made playable: silence trimmed, edges faded, the pause added.

The rule: the model pads every chunk with silence, so the silence is trimmed (kokoro-onnx's
own trim), the first and last :data:`FADE_S` are faded so that joins never click, and the pause
the chunk's boundary asks for is appended (a sentence end pauses longer than a clause, a cut
between words hardly at all), scaled by the speaking speed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from kokoro_onnx.trim import trim as trim_silence

from .metrics import SAMPLE_RATE

SENTENCE_PAUSE_S = 0.25
CLAUSE_PAUSE_S = 0.1
WORD_PAUSE_S = 0.02
FADE_S = 0.004  # short fades at chunk edges so joins never click


@dataclass
class FinishedAudio:
    """A chunk's playable audio and where its speech sits in the raw output."""

    audio: np.ndarray  # trimmed, faded, with the boundary pause appended
    pause_s: float
    trim_start: int  # raw samples the trim removed before the speech
    speech_samples: int  # samples of ``audio`` before the pause


def pause_s(boundary: str, speed: float) -> float:
    """The pause after a chunk that ends on ``boundary`` (sentence, clause or word)."""
    base = {"sentence": SENTENCE_PAUSE_S, "clause": CLAUSE_PAUSE_S}.get(boundary, WORD_PAUSE_S)
    return base / speed


def finish_chunk(raw: np.ndarray, boundary: str, speed: float) -> FinishedAudio:
    """Trim the model's silent pads, fade the edges and add the pause the boundary asks for."""
    pause = pause_s(boundary, speed)
    if raw.size == 0:
        return FinishedAudio(raw, 0.0, 0, 0)
    trimmed, (head, _) = trim_silence(raw)
    audio = np.array(trimmed, dtype=np.float32)
    fade = min(int(FADE_S * SAMPLE_RATE), len(audio) // 2)
    if fade:
        ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
        audio[:fade] *= ramp
        audio[-fade:] *= ramp[::-1]
    speech = len(audio)
    audio = np.concatenate([audio, np.zeros(int(pause * SAMPLE_RATE), np.float32)])
    return FinishedAudio(audio, pause, int(head), speech)


def finish_audio(raw: np.ndarray, boundary: str, speed: float) -> tuple[np.ndarray, float]:
    """:func:`finish_chunk`'s audio and pause (seconds)."""
    finished = finish_chunk(raw, boundary, speed)
    return finished.audio, finished.pause_s


__all__ = ["FADE_S", "FinishedAudio", "finish_audio", "finish_chunk", "pause_s"]
