"""The model tier: the real Kokoro-82M graph (int8 from PyPI, voices from npm). Every test here
is marked ``model``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tiers import longest_first

HERE = Path(__file__).parent

# The tier runs one file per worker (`--dist loadfile`), in collection order
# (`--no-loadscope-reorder`), longest first (see tests.tiers.longest_first): with xdist's own
# order, by test count, the last worker finished ~50 s after the first. The order is each
# file's time on a fresh machine (three workers, cold caches, two runs): from ~90 s for the
# docs to ~10 s for the word timings. A new file not listed runs last.
LONGEST_FIRST = (
    "test_docs.py", "test_profiling.py", "test_precisions.py", "test_decoding.py",
    "test_split.py", "test_batch.py", "test_api.py", "test_intelligibility.py", "test_magic.py",
    "test_notebooks.py", "test_memory.py", "test_player_protocol.py", "test_engine.py",
    "test_variants.py", "test_words.py", "test_studio.py", "test_words_engine.py")


def pytest_collection_modifyitems(items):
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.model)
    longest_first(items, HERE, LONGEST_FIRST, lambda item: Path(str(item.fspath)).name)
