"""``%%speak`` where users listen: JupyterLab, Notebook 7 and Voila in Chromium, read back from
the page.

What the page played comes from the player's own registry (``window.__kokoroLab``): one engine
per player, with a record per scheduled chunk (Web Audio start time and duration) and the
figures it measured (first audible sample after the cell ran, stalls, seconds played). Those
are what a listener got, so those are what these tests assert.
"""

from __future__ import annotations

import re
import time

from kokoro_lab.lab.jupyter.page import (
    cell,
    open_notebook,
    press_run,
    run,
    run_all,
    wait_done,
    wait_players,
)
from tests.ui.checks import check_played_out

# Three sentences (~480 phonemes): several chunks however fast the machine is.
PARAGRAPH = (
    "The lighthouse keeper climbed the narrow spiral stairs at dusk, counting every one of the "
    "hundred and twelve steps as his father had taught him to do when he was a boy. "
    "Far below the gallery, the grey waves folded over the black rocks in long and patient "
    "lines, and the wind carried the smell of salt and rain across the empty harbour. "
    "He trimmed the wick, lit the great lamp, and watched its beam sweep out across the water "
    "towards the ships that were still making their way home before the storm."
)
TWO_SENTENCES = PARAGRAPH.split(" He trimmed")[0]


def heard_all(state: list[dict], count: int) -> bool:
    return len(state) >= count and all(p["phase"] == "done" for p in state[:count])


def speak_when_warm(lab, browser, name: str, speak_cell: str):
    """A notebook that loads the extension and warms the model (run, untimed), then runs
    ``speak_cell`` as its third cell; returns the page as that cell starts."""
    url = lab.notebook(name, ["%load_ext kokoro_lab", "%speak --wait --no-play --no-plot Warm up.",
                              speak_cell])
    page = open_notebook(browser, url)
    run(page, 0)
    run(page, 1)  # the model is loaded and warm before anything is timed
    press_run(page, 2)
    return page


def test_run_all_makes_every_speaking_cell_heard(lab, launch, artifacts):
    """Run All: a paragraph, a cell that blocks the kernel, a --wait cell, a cell that waits on
    its own speech, and a last %%speak. Each is heard, in order, none over another; the
    paragraph plays while the busy cell still runs."""
    url = lab.notebook("run_all.ipynb", [
        "%load_ext kokoro_lab",
        f"%%speak -o para\n{TWO_SENTENCES}",
        # busy until well after the paragraph's first chunk exists, however slow the machine
        "import time\nwhile not para.chunks: time.sleep(0.05)\ntime.sleep(8)",
        "%speak --wait -o waited Waiting cells are heard too.",
        "from kokoro_lab.notebook import current_magics\n"
        "same = current_magics().say('And a cell that waits on its own speech.').result\n"
        "same.wait(300).state",
        "%%speak -o last\nThe last cell speaks after all the others.",
    ])
    browser = launch(autoplay=True)
    try:
        page = open_notebook(browser, url, height=2600)
        started = page.evaluate("performance.now()")
        run_all(page)
        busy_done = None
        deadline = time.monotonic() + 300
        while busy_done is None and time.monotonic() < deadline:
            if re.search(r"\[\d+\]", cell(page, 2).locator(".jp-InputPrompt").inner_text()):
                busy_done = page.evaluate("performance.now()")
            time.sleep(0.2)
        state = wait_players(page, lambda s: heard_all(s, 4), 400, "run-all")
        page.screenshot(path=str(artifacts / "run-all.png"), full_page=True)
        para, waited, same, last = state[:4]
        assert para["log"][0]["scheduled_ms"] < busy_done, (
            "the paragraph waited for the busy cell: first chunk scheduled "
            f"{para['log'][0]['scheduled_ms'] - started:.0f} ms after Run All, the busy cell "
            f"ended at {busy_done - started:.0f} ms")
        for player in state[:4]:
            check_played_out(player)
        # One after another, in the order the cells ran, never over each other.
        for ahead, queued in zip(state[:4], state[1:4], strict=False):
            assert queued["after"] == ahead["stream"]
            end = ahead["log"][-1]["start"] + ahead["log"][-1]["duration"]
            assert queued["log"][0]["start"] >= end, (ahead["label"], queued["label"])
        assert para["heard"]["since"] == "cell ran"
        # The kernel got the page's figures once it was free: one measured truth.
        check_in_kernel(page, "print(para.heard['played_s'], last.heard['played_s'])",
                        expect=[para["heard"]["played_s"], last["heard"]["played_s"]])
    finally:
        browser.close()


def save(page) -> None:
    """Save the notebook (Ctrl+S) and wait until JupyterLab says it is saved."""
    page.keyboard.press("Escape")
    page.keyboard.press("Control+s")
    page.wait_for_function(
        "!document.querySelector('.lm-TabBar-tab.jp-mod-current.jp-mod-dirty')", timeout=30_000)


def check_in_kernel(page, code: str, expect: list[float]) -> None:
    """Append a cell, run it, and compare the numbers it prints with ``expect``."""
    cell(page, page.locator(".jp-Notebook .jp-Cell").count() - 1).locator(
        ".jp-InputPrompt").click()  # command mode on the last cell
    page.keyboard.press("b")  # a new cell below it
    index = page.locator(".jp-Notebook .jp-Cell").count() - 1
    page.keyboard.press("Enter")
    page.keyboard.type(code)
    page.keyboard.press("Shift+Enter")
    wait_done(page, index)
    printed = cell(page, index).locator(".jp-OutputArea").inner_text().split()
    values = [float(v) for v in printed[:len(expect)]]
    assert values == [round(v, 3) for v in expect], (printed, expect)


# The audio clock, the live schedule, every chunk's word start times and the highlighted word.
READ_CAPTIONS = """() => {
  const lab = window.__kokoroLab;
  const root = document.querySelector('.kokoro-player');
  if (!lab || !lab.ctx || !root) return null;
  const e = lab.players[root.dataset.playerId];
  const stream = e && e.streams.get(e.current);
  const box = root.querySelector('.kl-captions');
  if (!stream || !box) return null;
  const words = {};
  for (const [seq, chunk] of stream.chunks) words[seq] = (chunk.meta.words || []).map((w) => w[1]);
  return {
    t: parseFloat(box.dataset.wordClock), shown: box.dataset.wordAt || '',
    text: box.dataset.word || '',
    log: e.log.filter((r) => r.stream === e.current).map((r) => [r.seq, r.start, r.duration]),
    words, phase: e.state().phase,
  };
}"""


def _words_on_clock(sample: dict) -> list[tuple[tuple[int, int], float]]:
    """Every word of the scheduled chunks, in order: ((chunk seq, word index), its start on the
    page's audio clock)."""
    return [((seq, index), start + offset)
            for seq, start, _ in sorted(sample["log"])
            for index, offset in enumerate(sample["words"].get(str(seq), []))]


def test_a_warm_paragraph_plays_back_to_back_and_lights_the_word_heard(lab, launch, artifacts):
    """A warm kernel speaks two sentences. Every chunk that arrived in time is scheduled where
    the last one ended and the page's stall count is its schedule's; sampled while it plays,
    the word lit under the player is exactly the one whose span holds the audio clock the view
    drew that frame for (the page reports both), and it walks through the text (issue 13); the
    chart is drawn. How fast it is heard is the benchmark's figure, not asserted here."""
    text = f"{PARAGRAPH.split('. Far')[0]}. Far below the gallery, the grey waves folded."
    browser = launch(autoplay=True)
    try:
        page = speak_when_warm(lab, browser, "warm.ipynb", f"%%speak -o warm\n{text}")
        samples = []
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            sample = page.evaluate(READ_CAPTIONS)
            if sample and sample["phase"] == "playing" and sample["shown"] and sample["t"] > 0:
                samples.append(sample)
            if sample and sample["phase"] == "done":
                break
            time.sleep(0.15)
        (player,) = wait_players(page, lambda s: heard_all(s, 1), 300, "warm")
        chart = cell(page, 2).locator(".js-plotly-plot")
        chart.first.wait_for(timeout=60_000)  # drawn off the audio's path: it may come later
        cell(page, 2).locator(".jp-Cell-outputWrapper").screenshot(
            path=str(artifacts / "warm-paragraph.png"))
        check_played_out(player)
        print(f"warm paragraph heard: {player['heard']}")
        assert player["heard"]["since"] == "cell ran"
        steps = [step for step, _ in player["heard"]["breakdown"]]
        assert steps[-4:] == ["sent to the page", "received by the page", "scheduled",
                              "audible"], steps
        assert chart.count() == 1 and chart.bounding_box()["height"] > 200
        assert samples, "no frame sampled while playing"
        shown_positions = set()
        for sample in samples:
            words = _words_on_clock(sample)
            order = [key for key, _ in words]
            shown = order.index(tuple(int(x) for x in sample["shown"].split(":")))
            # the word the frame's clock is in: the last one started by then
            heard = max((i for i, (_, start) in enumerate(words) if start <= sample["t"]),
                        default=None)
            assert shown == heard, (
                f"lit word #{shown} ({sample['text']!r}) while the clock is in word #{heard} "
                f"at t={sample['t']:.3f}")
            shown_positions.add(shown)
        assert len(shown_positions) >= 2, shown_positions  # it walks through the text
    finally:
        browser.close()


def test_a_reloaded_page_plays_a_live_stream_and_offers_a_finished_one(lab, launch, artifacts):
    browser = launch(autoplay=True)
    try:
        page = speak_when_warm(lab, browser, "reload.ipynb", f"%%speak -o long\n{PARAGRAPH}")
        wait_players(page, lambda s: s and s[0]["log"], 120, "first-chunk")
        save(page)  # a reload shows the notebook as saved: its outputs hold the player's view
        # well into the stream: a page is a late joiner once it comes more than LATE_JOIN_MS
        # (4 s, extension/src/audio.js) after the request
        time.sleep(4.0)
        page.reload()
        state = wait_players(page, lambda s: s and s[0]["phase"] in ("playing", "done"), 120,
                             "reloaded-live")
        assert state[0]["log"][0]["seq"] == 0  # from its start
        state = wait_players(page, lambda s: heard_all(s, 1), 300, "reloaded-done")
        check_played_out(state[0])
        assert state[0]["heard"]["late_join"] is True
        save(page)
        page.reload()  # now it has ended: offered, with the chart as it ended
        state = wait_players(page, lambda s: s and s[0]["phase"] == "offered", 120, "offered")
        assert state[0]["fullVisible"] and not state[0]["log"]  # nothing auto-played
        assert "press ▶ below to listen" in state[0]["status"]
        chart = page.locator(".js-plotly-plot")
        chart.first.wait_for(timeout=30_000)
        traces = page.evaluate("document.querySelector('.js-plotly-plot').data.length")
        assert traces >= 3  # synthesis and audio bars, and the synthesis lane at least
        page.screenshot(path=str(artifacts / "reloaded-offered.png"), full_page=True)
    finally:
        browser.close()


# Every engine on the page and what it scheduled, whether or not a view shows it.
READ_ENGINES = """() => Object.values((window.__kokoroLab || {players: {}}).players)
  .map((e) => ({views: e.views.size, scheduled: e.log.length, phase: e.state().phase}))"""


def test_a_page_reloaded_before_saving_plays_nothing_unseen(lab, launch, artifacts):
    """Reloaded while speaking, before the notebook was saved: the cell shows no output, so no
    player and no Stop; the restored player must stay silent rather than play unseen."""
    browser = launch(autoplay=True)
    try:
        page = speak_when_warm(lab, browser, "unsaved.ipynb", f"%%speak -o live\n{PARAGRAPH}")
        wait_players(page, lambda s: s and s[0]["log"], 120, "first-chunk")
        page.reload()  # not saved: the notebook on disk has no outputs
        page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
        deadline = time.monotonic() + 8
        engines = []
        while time.monotonic() < deadline:
            engines = page.evaluate(READ_ENGINES)
            assert all(e["scheduled"] == 0 for e in engines), engines
            time.sleep(0.5)
        assert page.locator(".kokoro-player").count() == 0
        assert all(e["views"] == 0 for e in engines), engines
        page.screenshot(path=str(artifacts / "reloaded-unsaved.png"), full_page=True)
    finally:
        browser.close()


def test_notebook7_run_all_is_heard(notebook7, launch, artifacts):
    url = notebook7.notebook("nb7.ipynb", [
        "%load_ext kokoro_lab",
        "%%speak -o one\nNotebook seven plays this while the next cell is busy.",
        "import time; time.sleep(6)",
        "%%speak -o two\nAnd this one after it.",
    ])
    browser = launch(autoplay=True)
    try:
        page = open_notebook(browser, url)
        run_all(page)
        state = wait_players(page, lambda s: heard_all(s, 2), 300, "notebook7")
        page.screenshot(path=str(artifacts / "notebook7.png"), full_page=True)
        for player in state:
            check_played_out(player)
        assert state[1]["after"] == state[0]["stream"]
    finally:
        browser.close()


def test_voila_offers_what_was_made_with_its_chart(voila, launch, artifacts):
    url = voila.notebook("voila.ipynb", [
        "%load_ext kokoro_lab",
        "%%speak -o said\nVoila runs the notebook before any browser connects.",
        "said.wait(300); print(said.state)",
    ])
    browser = launch(autoplay=True)
    try:
        page = browser.new_page(viewport={"width": 1100, "height": 1000})
        page.goto(url, timeout=300_000)
        state = wait_players(page, lambda s: s and s[0]["phase"] == "offered", 300, "voila")
        player = state[0]
        assert player["fullVisible"] and player["chunks"] == player["total"] > 0
        assert player["made"] > 1.0
        page.wait_for_function(
            "Number.isFinite(document.querySelector('.kokoro-player audio').duration)",
            timeout=30_000)
        duration = page.evaluate("document.querySelector('.kokoro-player audio').duration")
        assert abs(duration - player["made"]) < 0.05  # the whole utterance, one press away
        chart = page.locator(".js-plotly-plot")
        chart.first.wait_for(timeout=60_000)
        assert chart.first.bounding_box()["height"] > 200
        page.screenshot(path=str(artifacts / "voila.png"), full_page=True)
    finally:
        browser.close()


# Headless Chromium lets every AudioContext start, whatever --autoplay-policy says, so the
# page gets Chrome's desktop rule back from this init script: a context may start only within
# 5 s of a trusted user input (transient activation); otherwise it starts suspended and only a
# later trusted click lets resume() through. The player's own code runs unchanged.
AUTOPLAY_POLICY = """(() => {
  const Native = window.AudioContext;
  const ACTIVATION_MS = 5000;
  let lastInput = -Infinity;
  for (const type of ["keydown", "mousedown", "pointerdown", "click"]) {
    window.addEventListener(type, (e) => { if (e.isTrusted) lastInput = performance.now(); }, true);
  }
  const active = () => performance.now() - lastInput < ACTIVATION_MS;
  window.AudioContext = class extends Native {
    constructor(...args) {
      super(...args);
      window.__autoplayBlocked = !active();
      if (window.__autoplayBlocked) super.suspend();
    }
    resume() {
      if (!active()) return Promise.reject(new DOMException("autoplay blocked", "NotAllowedError"));
      return super.resume();
    }
  };
})();"""


def test_blocked_autoplay_shows_enable_audio_then_plays(lab, launch, artifacts):
    url = lab.notebook("blocked.ipynb", [
        "%load_ext kokoro_lab",
        "%speak --wait --no-play --no-plot Warm up.",
        "import time; time.sleep(7)",
        "%%speak --no-plot\nAudio waits for a click. Then it plays.",
    ])
    browser = launch(autoplay=False)
    try:
        page = open_notebook(browser, url, init_script=AUTOPLAY_POLICY)
        run(page, 0)
        run(page, 1)
        press_run(page, 2)  # runs the sleep, then the %%speak cell below it
        press_run(page, 3)
        # The activation from those key presses has expired when, after the 7 s sleep, the
        # player creates its AudioContext: the browser keeps it suspended.
        (player,) = wait_players(page, lambda s: s and s[0]["phase"] == "blocked", 180,
                                 "blocked")
        assert page.evaluate("window.__autoplayBlocked") is True
        assert player["enableVisible"] and player["audioState"] == "suspended"
        assert player["log"] == []  # nothing scheduled while blocked; the queue is kept
        cell(page, 3).locator(".jp-Cell-outputWrapper").screenshot(
            path=str(artifacts / "blocked-cell.png"))
        cell(page, 3).locator(".kl-enable").click()
        (player,) = wait_players(page, lambda s: heard_all(s, 1), 120, "enabled")
        assert player["audioState"] == "running"
        check_played_out(player)
    finally:
        browser.close()
