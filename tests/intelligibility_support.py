"""Helpers the unit and model tests of intelligibility share."""

from __future__ import annotations

from kokoro_lab import quality

SR = quality.SAMPLE_RATE


# Short, phonetically varied sentences; the last one is long enough to be streamed in chunks.
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Please call Stella and ask her to bring these things from the store.",
    "It was a bright cold day in April, and the clocks were striking thirteen.",
]
