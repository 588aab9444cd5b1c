"""Shared fixtures: one warm real synthesizer per test session (the model is slow on CPU)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def synth():
    from kokoro_lab import Synthesizer

    return Synthesizer()


def fake_phonemize(text: str) -> str:
    """A stand-in for espeak in fast planner tests: letters and punctuation, one per phoneme."""
    kept = "".join(ch for ch in text.lower() if ch.isalpha() or ch in " ,.!?;:—–")
    return " ".join(kept.split())
