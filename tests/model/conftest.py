"""The model tier: the real Kokoro-82M graph (int8 from PyPI, voices from npm). Every test here
is marked ``model``."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent

# The tier runs one file per worker (`--dist loadfile`), and the workers take files in
# collection order (`--no-loadscope-reorder`), so the longest files go first and the short ones
# fill the gaps at the end: without this the last worker finished ~50 s after the first. The
# order is by each file's time on a fresh machine (three workers, cold caches): 103, 89, 80,
# 67, 62, 57 and 56 s; the rest keep their alphabetical order after them. A file missing here
# only runs later; nothing depends on the order.
LONGEST_FIRST = ("test_docs.py", "test_profiling.py", "test_precisions.py", "test_decoding.py",
                 "test_batch.py", "test_split.py", "test_api.py")


def _rank(item: pytest.Item) -> int:
    path = Path(str(item.fspath))
    if HERE not in path.parents:
        return -1  # another tier's test (a run of all tests): it keeps its place
    return LONGEST_FIRST.index(path.name) if path.name in LONGEST_FIRST else len(LONGEST_FIRST)


def pytest_collection_modifyitems(items):
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.model)
    items.sort(key=_rank)  # stable: each file's tests keep their order
