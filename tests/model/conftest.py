"""The model tier: the real Kokoro-82M graph (int8 from PyPI, voices from npm). Every test here
is marked ``model``."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items):
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.model)
