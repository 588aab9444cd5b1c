"""Helpers the tiers' conftests share: the order in which xdist hands out their tests."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pytest


def longest_first(items: list[pytest.Item], folder: Path, longest: Sequence[str],
                  name_of: Callable[[pytest.Item], str]) -> None:
    """Sort ``items`` in place so ``folder``'s tests come in the order of ``longest`` (their
    names by ``name_of``; names not listed after them, in collection order).

    The workers take tests in collection order, so the longest start first and the short ones
    fill the gaps at the end (longest processing time first, the classic greedy schedule).
    Tests of other folders (a run of every tier) keep their place ahead; the sort is stable.
    """
    def rank(item: pytest.Item) -> int:
        if folder not in Path(str(item.fspath)).parents:
            return -1
        name = name_of(item)
        return longest.index(name) if name in longest else len(longest)

    items.sort(key=rank)
