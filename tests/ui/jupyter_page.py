"""Driving a JupyterLab notebook page as a user would: open it, run cells, poll a widget.

Shared by the browser tests so each one states only what it checks.
"""

from __future__ import annotations

import re
import time

from tests.ui.conftest import ARTIFACTS


def open_notebook(browser, url: str, init_script: str | None = None, height: int = 1600):
    page = browser.new_page(viewport={"width": 1280, "height": height})
    if init_script:
        page.add_init_script(init_script)
    page.goto(url, timeout=120_000)
    page.wait_for_selector(".jp-Notebook .jp-Cell .cm-content", timeout=120_000)
    # The kernel is up when the status bar says so.
    page.get_by_text(re.compile(r"\| Idle")).first.wait_for(timeout=120_000)
    return page


def cell(page, index: int):
    return page.locator(".jp-Notebook .jp-Cell").nth(index)


def focus(page, index: int) -> None:
    cell(page, index).locator(".cm-content").click()


def wait_done(page, index: int, timeout_s: float = 240) -> None:
    """Until the cell's prompt shows an execution count (``[*]`` means running)."""
    prompt = cell(page, index).locator(".jp-InputPrompt")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if re.search(r"\[\d+\]", prompt.inner_text()):
            return
        time.sleep(0.25)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"failed-cell-{index}.png"))
    raise AssertionError(f"cell {index} did not finish: {prompt.inner_text()!r} "
                         f"(screenshot in {ARTIFACTS})")


def press_run(page, index: int) -> None:
    """Shift+Enter in a cell, retried once if JupyterLab had not taken the key yet."""
    prompt = cell(page, index).locator(".jp-InputPrompt")
    for _ in range(2):
        focus(page, index)
        page.keyboard.press("Shift+Enter")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if re.search(r"\[(\*|\d+)\]", prompt.inner_text()):
                return
            time.sleep(0.1)


def run(page, index: int, timeout_s: float = 240) -> None:
    press_run(page, index)
    wait_done(page, index, timeout_s)


def poll(page, read_script: str, index: int, until, timeout_s: float) -> dict:
    """Evaluate ``read_script`` on cell ``index`` until ``until(state)`` holds."""
    deadline = time.monotonic() + timeout_s
    state = None
    while time.monotonic() < deadline:
        state = page.evaluate(read_script, index)
        if state and until(state):
            return state
        time.sleep(0.2)
    raise AssertionError(f"the widget in cell {index} never reached the expected state: {state}")
