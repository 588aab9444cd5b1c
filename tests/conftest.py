"""Shared fixtures: one warm real synthesizer per test session (the model is slow on CPU)."""

from __future__ import annotations

import os

import pytest

# DNSMOS averages 16 start offsets by default (a model run each); the tests judge pipelines, not
# the judge's own spread, so 4 will do (the judge's rules are unit-tested on their own).
os.environ.setdefault("KOKORO_LAB_DNSMOS_OFFSETS", "4")


@pytest.fixture(scope="session")
def synth():
    """Cache off: a test that speaks a text another test spoke must still synthesize it (the
    cache's own tests turn it on for themselves)."""
    from kokoro_lab import Synthesizer

    return Synthesizer(cache=False)


def fake_phonemize(text: str) -> str:
    """A stand-in for espeak in fast planner tests: letters and punctuation, one per phoneme."""
    kept = "".join(ch for ch in text.lower() if ch.isalpha() or ch in " ,.!?;:—–")
    return " ".join(kept.split())


def ipython_shell():
    """IPython's test shell, shared by every test module in the process.

    ``start_ipython`` returns the shell only on its first call in a process (later calls return
    None), so later callers fall back to the running instance.
    """
    from IPython.testing import globalipapp

    # After its first call, globalipapp rebinds its module-level get_ipython to the shell's.
    return globalipapp.start_ipython() or globalipapp.get_ipython()
