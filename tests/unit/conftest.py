"""The unit tier: no model, no browser. Every test here is marked ``unit``, and starting an
ONNX Runtime session on the Kokoro model fails (a test that needs one belongs in
``tests/model``); building and hashing asset files is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items):
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.unit)
    # A test that compiles on first use (numba, ~12 s on a fresh machine) starts first: its
    # worker compiles while the others run the rest, instead of the tier waiting for it at the
    # end. The sort is stable, so the rest keep their order.
    items.sort(key=lambda item: item.get_closest_marker("compiles") is None)


@pytest.fixture(autouse=True)
def _no_model(monkeypatch):
    from kokoro_lab.engine import sessions

    def refuse(model, *args, **kwargs):
        raise AssertionError(f"the unit tier starts no session on {model}: move this test to "
                             "tests/model")

    monkeypatch.setattr(sessions, "create_session", refuse)
