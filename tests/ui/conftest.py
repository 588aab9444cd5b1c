"""Browser tests: real JupyterLab, Notebook 7 and Voila on loopback, driven in Debian's Chromium
by Playwright (see :mod:`kokoro_lab.lab.jupyter.servers`). Screenshots go to ``artifacts/ui/``
(kept by CI).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from kokoro_lab.lab.jupyter import page
from kokoro_lab.lab.jupyter.servers import CHROMIUM, jupyter_server, launch_chromium
from tests.tiers import longest_first

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts" / "ui"
page.ARTIFACTS = ARTIFACTS  # failed waits leave their screenshots beside the others
os.environ.setdefault("KOKORO_LAB_SERVER_LOGS", str(ARTIFACTS))  # and the servers' logs


# Each test's time in fresh-machine runs (three workers), longest first: a reload that plays a
# paragraph twice (~62 s) down to the Studio (~20 s). See tests.tiers.longest_first.
LONGEST_FIRST = (
    "test_a_reloaded_page_plays_a_live_stream_and_offers_a_finished_one",
    "test_run_all_makes_every_speaking_cell_heard",
    "test_run_all_on_a_shipped_notebook_is_heard",
    "test_a_warm_paragraph_plays_back_to_back_and_lights_the_word_heard",
    "test_a_page_reloaded_before_saving_plays_nothing_unseen",
    "test_blocked_autoplay_shows_enable_audio_then_plays",
    "test_voila_offers_what_was_made_with_its_chart",
    "test_notebook7_run_all_is_heard",
    "test_studio_renders_and_speaks_in_chromium",
)


def pytest_collection_modifyitems(items):
    for item in items:
        if Path(str(item.fspath)).parent == Path(__file__).parent:
            item.add_marker(pytest.mark.ui)
            item.add_marker(pytest.mark.model)
    longest_first(items, Path(__file__).parent, LONGEST_FIRST, lambda item: item.originalname)


def _needs_browser() -> None:
    if shutil.which(CHROMIUM) is None and not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="session")
def lab():
    _needs_browser()
    with jupyter_server("lab") as server:
        yield server


@pytest.fixture(scope="session")
def notebook7():
    _needs_browser()
    with jupyter_server("notebook") as server:
        yield server


@pytest.fixture(scope="session")
def voila():
    _needs_browser()
    with jupyter_server("voila") as server:
        yield server


@pytest.fixture(scope="session")
def playwright_instance():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


@pytest.fixture
def launch(playwright_instance):
    """Start Chromium (``autoplay=False``: the desktop autoplay rule)."""
    return lambda autoplay: launch_chromium(playwright_instance, autoplay)


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


def pytest_terminal_summary(terminalreporter):
    """Dialogs JupyterLab opened by itself and the tests dismissed (see page.dismiss_dialog)."""
    for text in page.DIALOGS:
        terminalreporter.write_line(f"dismissed a JupyterLab dialog: {text}")
