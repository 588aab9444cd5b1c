"""A chunk's raw model output made playable: silence trimmed, edges faded, the pause added.

The rule: the model pads every chunk with silence, so the silence is trimmed (kokoro-onnx's
own trim), the first and last :data:`FADE_S` are faded so that joins never click, and the pause
the chunk's boundary asks for is appended (a sentence end pauses longer than a clause, a cut
between words hardly at all), scaled by the speaking speed.

A stream's *first* chunk also starts at its sound: :data:`LEAD_IN_S` before the first 5 ms
louder than :data:`SILENT` (-60 dBFS RMS; the vocoder can leave a two-sample click at the
edge, which is not sound). kokoro-onnx's trim decides in 2048-sample frames against
the chunk's peak, and keeps up to ~0.2 s of silence before the first word ("Most people never
think": 180 ms under -74 dBFS). Nothing plays before that chunk, so its silence is only wait
added to the time to first sound; later chunks keep theirs, which the listener hears as part of
the pause between chunks.
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
SILENT = 0.001  # an RMS under this (-60 dBFS) is silence to the ear
ONSET_WINDOW_S = 0.005  # sound is SILENT exceeded over this long, not a click
LEAD_IN_S = 0.01  # what a stream's first chunk keeps before its sound onset


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


def sound_onset(audio: np.ndarray) -> int | None:
    """The first sample whose next :data:`ONSET_WINDOW_S` are louder than :data:`SILENT` (RMS),
    or None: a click of a sample or two at a cut edge is not sound."""
    width = int(ONSET_WINDOW_S * SAMPLE_RATE)
    if audio.size < width:
        return None
    energy = np.concatenate([[0.0], np.cumsum(np.square(audio, dtype=np.float64))])
    loud = np.flatnonzero(energy[width:] - energy[:-width] > width * SILENT ** 2)
    return int(loud[0]) if loud.size else None


def start_at_sound(audio: np.ndarray) -> int:
    """Samples of ``audio`` before :data:`LEAD_IN_S` ahead of its :func:`sound_onset` (0 when
    it has none)."""
    onset = sound_onset(audio)
    return 0 if onset is None else max(0, onset - int(LEAD_IN_S * SAMPLE_RATE))


def finish_chunk(raw: np.ndarray, boundary: str, speed: float,
                 opens_stream: bool = False) -> FinishedAudio:
    """Trim the model's silent pads, fade the edges and add the pause the boundary asks for;
    a chunk that ``opens_stream`` also starts at its sound (see the module docstring)."""
    pause = pause_s(boundary, speed)
    if raw.size == 0:
        return FinishedAudio(raw, 0.0, 0, 0)
    trimmed, (head, _) = trim_silence(raw)
    if opens_stream:
        cut = start_at_sound(trimmed)
        trimmed, head = trimmed[cut:], int(head) + cut
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


__all__ = ["FADE_S", "LEAD_IN_S", "SILENT", "FinishedAudio", "finish_audio", "finish_chunk",
           "pause_s", "sound_onset", "start_at_sound"]
