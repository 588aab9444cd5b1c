"""Driving a notebook page as a user would: open it, run cells (one, or Run All), read the
players' state back from the page.

Shared by the browser tests (``tests/ui``) and ``benchmarks/notebook_e2e.py`` so each states
only what it checks. Works in JupyterLab and Notebook 7 (same cell DOM); players are also read
in Voila. A failed wait leaves a screenshot in :data:`ARTIFACTS` (``$KOKORO_LAB_ARTIFACTS``, by
default ``artifacts/ui`` under the working directory).
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

ARTIFACTS = Path(os.environ.get("KOKORO_LAB_ARTIFACTS", "artifacts/ui"))

# Every player on the page, in document order (one entry per player, however many views):
# its phase, what the page measured it played, and its schedule.
READ_PLAYERS = """() => {
  const lab = window.__kokoroLab;
  if (!lab) return [];
  const seen = new Set();
  const out = [];
  for (const root of document.querySelectorAll('.kokoro-player')) {
    const id = root.dataset.playerId;
    const e = lab.players[id];
    if (!e || seen.has(id)) continue;
    seen.add(id);
    const state = e.state();
    const stream = e.streams.get(e.current);
    const full = root.querySelector('.kl-full');
    out.push({
      playerId: id, phase: state.phase, audioState: state.audioState, label: state.label,
      heard: state.heard, chunks: state.chunks, total: state.totalChunks,
      made: state.receivedSeconds, status: root.querySelector('.kl-status').textContent,
      enableVisible: !root.querySelector('.kl-enable').hidden,
      fullVisible: !!full && !full.hidden,
      now: lab.ctx ? lab.ctx.currentTime : null,
      log: e.log.filter((r) => r.stream === e.current),
      after: stream ? stream.after : null, stream: e.current,
      errors: e.errors,
    });
  }
  return out;
}"""


def open_notebook(browser, url: str, init_script: str | None = None, height: int = 1600):
    page = browser.new_page(viewport={"width": 1280, "height": height})
    if init_script:
        page.add_init_script(init_script)
    page.goto(url, timeout=120_000)
    page.wait_for_selector(".jp-Notebook .jp-CodeCell .cm-content", timeout=120_000)
    if page.evaluate(CONNECT_KERNEL) == "started":
        dismiss_dialog(page, timeout_s=0)  # the question it had asked is answered
    wait_kernel_idle(page)
    return page


# The notebook's own kernel, from JupyterLab's application object (exposed by the servers in
# servers.py). On a loaded machine JupyterLab can finish opening a notebook with no kernel (its
# kernel list came too late to pick one) and asks with a dialog; the status bar still reads
# "Idle". Here the session itself is read, and its kernel started when it has none.
CONNECT_KERNEL = """async () => {
  const app = window.jupyterapp;
  const context = app && app.shell.currentWidget && app.shell.currentWidget.sessionContext;
  if (!context) return "no application";
  await Promise.race([context.ready, new Promise((resolve) => setTimeout(resolve, 30000))]);
  let started = "connected";
  if (!context.session || !context.session.kernel) {
    await context.changeKernel({ name: "python3" });
    started = "started";
  }
  for (let i = 0; i < 1200 && context.session.kernel.status !== "idle"; i++) {
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return started;
}"""


def wait_kernel_idle(page, timeout_s: float = 120) -> None:
    """JupyterLab's status bar says "| Idle"; Notebook 7's kernel indicator says "Idle"."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if page.get_by_text(re.compile(r"\| Idle")).count() or page.locator(
                ".jp-NotebookKernelStatus-idle, [data-status='idle']").count():
            return
        time.sleep(0.25)
    raise AssertionError("the kernel never became idle")


def run_all(page) -> None:
    """Run > Run All Cells, from the menu bar (JupyterLab and Notebook 7); retried once if the
    first cell did not start (a menu opened while the page was still settling)."""
    first = page.locator(".jp-Notebook .jp-CodeCell").first.locator(".jp-InputPrompt")
    for _ in range(3):
        dismiss_dialog(page)
        menu = page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).first
        item = page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).first
        if not (_click(menu) and _click(item)):
            dismiss_dialog(page, timeout_s=0)
            continue
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if re.search(r"\[(\*|\d+)\]", first.inner_text()):
                return
            time.sleep(0.1)
        page.keyboard.press("Escape")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "failed-run-all.png"))
    dialog = page.locator(".jp-Dialog")
    shown = " ".join(dialog.first.inner_text().split()) if dialog.count() else "none"
    raise AssertionError(f"Run All Cells did not start the notebook (dialog now: {shown}; "
                         f"dismissed before: {DIALOGS})")


DIALOGS: list[str] = []  # the text of every dialog dismissed, for the failure report


def dismiss_dialog(page, timeout_s: float = 10) -> None:
    """A modal dialog JupyterLab opened by itself (seen on a loaded machine as the page settles)
    would swallow the clicks: wait a little for it to go, then dismiss it with its default
    button, keeping its text in :data:`DIALOGS` and a screenshot."""
    dialog = page.locator(".jp-Dialog")
    deadline = time.monotonic() + timeout_s
    while dialog.count() and time.monotonic() < deadline:
        time.sleep(0.25)
    if not dialog.count():
        return
    text = " ".join(dialog.first.inner_text().split())
    DIALOGS.append(text)
    print(f"dismissed a JupyterLab dialog: {text}", flush=True)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"dialog-{len(DIALOGS)}.png"))
    choice = dialog.first.locator("select")
    if choice.count():  # "Select Kernel": keep the notebook's running kernel, never "No Kernel"
        options = [o.strip() for o in choice.first.locator("option").all_inner_texts()]
        name = page.url.split("?")[0].rsplit("/", 1)[-1]
        running = [o for o in options if o.startswith(f"{name} (")]
        python = [o for o in options if o.startswith("Python")]
        if running or python:
            choice.first.select_option(label=(running or python)[0])
    button = dialog.first.locator(".jp-Dialog-footer .jp-mod-accept")
    if button.count():
        button.first.click()
    else:
        page.keyboard.press("Escape")


def players(page) -> list[dict]:
    return page.evaluate(READ_PLAYERS)


def wait_players(page, until, timeout_s: float, what: str = "") -> list[dict]:
    """Poll every player on the page until ``until(players)`` holds."""
    deadline = time.monotonic() + timeout_s
    state: list[dict] = []
    while time.monotonic() < deadline:
        state = players(page)
        if until(state):
            return state
        time.sleep(0.25)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"failed-players{'-' + what if what else ''}.png"),
                    full_page=True)
    raise AssertionError(f"players never reached the expected state ({what}): "
                         + "; ".join(f"{p['phase']} {p['status']!r}" for p in state))


def cell(page, index: int):
    return page.locator(".jp-Notebook .jp-Cell").nth(index)


def focus(page, index: int) -> None:
    dismiss_dialog(page, timeout_s=2)
    target = cell(page, index).locator(".cm-content")
    if not _click(target):
        dismiss_dialog(page, timeout_s=0)
        target.click(timeout=10_000)


def _click(locator) -> bool:
    """Click ``locator``; False when a dialog that opened meanwhile took the click."""
    try:
        locator.click(timeout=10_000)
    except Exception as error:
        if "intercepts pointer events" not in str(error):
            raise
        return False
    return True


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
