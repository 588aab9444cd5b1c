"""Helpers the unit and model tests of batch share."""

from __future__ import annotations

import wave
from pathlib import Path

import pytest

from kokoro_lab.batch import (
    read_manifest,
)
from kokoro_lab.engine import SAMPLE_RATE

# Short, distinct utterances (2-3 words): the real model takes about a second for each here.
PHRASES = [
    "Good morning.", "Hello there, friend.", "See you soon.", "Thank you kindly.",
    "The sun shines.", "Bring the cup.", "Open the door.", "It is raining.",
    "Turn left.", "Birds sing.", "Call me later.", "Seven boats.",
    "Read aloud.", "Lunch time.", "Quiet, please.", "The train left.",
    "Dogs bark.", "Pass the salt.", "Water the plants.", "Nice to meet you.",
]


UNSPEAKABLE = "🙂🙂"


def duration_of(path: Path) -> float:
    """Seconds of audio in a FLAC or WAV file, read back from the file itself."""
    if path.suffix == ".flac":
        import soundfile

        info = soundfile.info(str(path))
        assert info.samplerate == SAMPLE_RATE and info.channels == 1
        return info.frames / info.samplerate
    with wave.open(str(path)) as audio:
        assert audio.getframerate() == SAMPLE_RATE and audio.getnchannels() == 1
        return audio.getnframes() / audio.getframerate()


def check_outputs(out: Path, texts: dict[str, str], bad: set[str] = frozenset()) -> dict:
    """Every good item: status ok, its file exists, is non-empty, matches the manifest's
    duration and size, and is plausibly long for its words; every bad item: failed + error."""
    records = read_manifest(out / "manifest.jsonl")
    assert set(records) == set(texts)
    for item_id, text in texts.items():
        record = records[item_id]
        assert record["text"] == text
        if item_id in bad:
            assert record["status"] == "failed" and record["error"], record
            continue
        assert record["status"] == "ok", record
        path = out / record["path"]
        assert path.is_file() and path.stat().st_size == record["bytes"] > 0
        seconds = duration_of(path)
        assert seconds == pytest.approx(record["duration_s"], abs=1e-3)
        words = len(text.split())
        assert 0.15 * words < seconds < 1.0 + 0.9 * words, (text, seconds)
        assert record["synthesis_s"] > 0 and record["worker"]
    return records
