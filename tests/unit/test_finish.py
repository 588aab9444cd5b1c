"""Finishing a chunk's raw output: a stream's first chunk starts at its sound, later chunks keep
the silence kokoro-onnx's trim leaves (it is part of the pause the listener hears)."""

from __future__ import annotations

import numpy as np

from kokoro_lab.engine.finish import LEAD_IN_S, finish_chunk, sound_onset
from kokoro_lab.engine.metrics import SAMPLE_RATE

LEAD_IN = int(LEAD_IN_S * SAMPLE_RATE)


def raw_chunk(hiss_samples: int = 4000) -> tuple[np.ndarray, int]:
    """Model-like output: a silent pad, hiss kokoro-onnx's trim keeps (-64 dBFS, within its
    60 dB of the peak) but no ear hears, then a word; returns it and the word's first sample."""
    pad = np.zeros(6000, np.float32)
    hiss = np.where(np.arange(hiss_samples) % 2, 6e-4, -6e-4).astype(np.float32)
    word = (0.3 * np.sin(np.arange(9000) * 0.05)).astype(np.float32) + np.float32(0.01)
    return np.concatenate([pad, hiss, word, pad]), pad.size + hiss.size


def first_loud(audio: np.ndarray) -> int:
    return sound_onset(audio)


def test_a_stream_opening_chunk_starts_just_before_its_sound():
    raw, word = raw_chunk()
    later = finish_chunk(raw, "sentence", 1.0)
    opening = finish_chunk(raw, "sentence", 1.0, opens_stream=True)
    assert first_loud(later.audio) > 2000  # the trim kept most of the hiss
    assert first_loud(opening.audio) == LEAD_IN  # 10 ms of it is left before the sound
    # trim_start still places the audio in the raw output: word timings stay right
    onset = sound_onset(raw)
    assert word - int(0.005 * SAMPLE_RATE) < onset <= word
    assert opening.trim_start + first_loud(opening.audio) == onset
    assert later.trim_start + first_loud(later.audio) == onset
    cut = first_loud(later.audio) - LEAD_IN
    np.testing.assert_array_equal(opening.audio[100:opening.speech_samples - 100],
                                  later.audio[cut + 100:later.speech_samples - 100])
    assert abs(opening.audio[0]) < 1e-3  # still faded in


def test_a_click_at_the_edge_is_not_sound():
    raw, word = raw_chunk()
    raw[6004:6006] = 0.007  # two samples, as the vocoder can leave at a cut edge
    opening = finish_chunk(raw, "sentence", 1.0, opens_stream=True)
    assert first_loud(opening.audio) == LEAD_IN
    assert opening.trim_start + first_loud(opening.audio) == sound_onset(raw)


def test_nothing_is_cut_when_the_sound_starts_at_once_or_never():
    raw, word = raw_chunk(hiss_samples=0)
    raw = raw[word:]
    assert np.array_equal(finish_chunk(raw, "word", 1.0, opens_stream=True).audio,
                          finish_chunk(raw, "word", 1.0).audio)
    quiet = np.full(3000, 1e-4, np.float32)
    assert np.array_equal(finish_chunk(quiet, "word", 1.0, opens_stream=True).audio,
                          finish_chunk(quiet, "word", 1.0).audio)
