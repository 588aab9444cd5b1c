"""The shipped notebooks, as a new user runs them: opened in JupyterLab, Run All, fresh kernel.

Every player a notebook shows must end heard from its first chunk to its last (or stopped, where
the notebook stops it on purpose), every cell must run without an error, and a screenshot of the
whole page is kept in ``artifacts/ui/`` to look at. ``profiling.ipynb`` has no player (it profiles
providers and precisions) and is run headless by ``tests/test_notebooks.py``.
"""

from __future__ import annotations

import shutil
import time

import pytest

from kokoro_lab.lab.jupyter.page import open_notebook, players, run_all, wait_done, wait_kernel_idle
from tests.ui.checks import check_played_out
from tests.ui.conftest import ROOT

# notebook → players that speak under Run All, the labels of those it stops on purpose, and
# players that wait for a click (the voice map's); compare_voices cards are clips, not players
NOTEBOOKS = {
    "quickstart.ipynb": (4, set(), 0),
    "read_aloud.ipynb": (2, {"stopped early"}, 0),
    "voices.ipynb": (1, set(), 1),
}
ENDED = ("done", "stopped")


def _copy_into(root, name: str) -> None:
    shutil.copy(ROOT / "notebooks" / name, root / name)
    (root / "docs").mkdir(exist_ok=True)
    shutil.copy(ROOT / "docs" / "sample.txt", root / "docs" / "sample.txt")


def _last_code_cell(page) -> int:
    """Index (among all cells) of the notebook's last code cell: Run All is over when it is."""
    kinds = page.locator(".jp-Notebook .jp-Cell").evaluate_all(
        "cells => cells.map((c) => c.classList.contains('jp-CodeCell'))")
    return max(i for i, code in enumerate(kinds) if code)


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_run_all_on_a_shipped_notebook_is_heard(name, lab, launch, artifacts):
    expected, stopped_on_purpose, on_click = NOTEBOOKS[name]
    _copy_into(lab.root, name)
    browser = launch(autoplay=True)
    try:
        page = open_notebook(browser, lab.url_for(name), height=4000)
        run_all(page)
        wait_done(page, _last_code_cell(page), 600)
        wait_kernel_idle(page)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            state = players(page)
            spoke = [p for p in state if p["phase"] != "idle"]
            if len(spoke) >= expected and all(p["phase"] in ENDED for p in spoke):
                break
            time.sleep(0.5)
        page.screenshot(path=str(artifacts / f"run-all-{name}.png"), full_page=True)
        errors = page.locator(".jp-OutputArea-output[data-mime-type*='error']").all_inner_texts()
        assert not errors, errors
        assert len(spoke) >= expected, [p["status"] for p in state]
        assert len(state) - len(spoke) == on_click, [p["status"] for p in state]
        for player in spoke:
            if player["label"] in stopped_on_purpose:
                assert player["phase"] == "stopped", player["status"]
                continue
            assert player["phase"] == "done", (player["label"], player["status"])
            check_played_out(player)
    finally:
        browser.close()
