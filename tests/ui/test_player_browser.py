"""``%%speak`` end to end: JupyterLab in Chromium, audio scheduled by Web Audio, read back.

What the page reports comes from the player's own registry, ``window.__kokoroLab``: one engine
per player with a record per scheduled chunk (Web Audio start time and duration, and the page
clock when the chunk arrived and when it was scheduled).
"""

from __future__ import annotations

import time
import warnings

from tests.ui.jupyter_page import cell, focus, open_notebook, poll, run

# Three sentences, long enough together (~480 phonemes) that the engine needs at least three
# chunks however fast the machine is (its chunks stop growing at EFFICIENT_CAP phonemes).
PARAGRAPH = (
    "The lighthouse keeper climbed the narrow spiral stairs at dusk, counting every one of the "
    "hundred and twelve steps as his father had taught him to do when he was a boy. "
    "Far below the gallery, the grey waves folded over the black rocks in long and patient "
    "lines, and the wind carried the smell of salt and rain across the empty harbour. "
    "He trimmed the wick, lit the great lamp, and watched its beam sweep out across the water "
    "towards the ships that were still making their way home before the storm."
)
GAPLESS_S = 0.002
TTFA_SLACK_MS = 300

# The state of the player in a cell, as the test needs it.
READ_PLAYER = """(index) => {
  const cell = document.querySelectorAll('.jp-Notebook .jp-Cell')[index];
  const root = cell && cell.querySelector('.kokoro-player');
  const lab = window.__kokoroLab;
  const e = root && lab && lab.players[root.dataset.playerId];
  if (!e) return null;
  const stream = e.streams.get(e.current);
  return {
    phase: root.dataset.phase,
    audioState: root.dataset.audioState,
    enableVisible: !root.querySelector('.kl-enable').hidden,
    fullVisible: !root.querySelector('.kl-full').hidden,
    now: lab.ctx ? lab.ctx.currentTime : null,
    playerId: e.playerId,
    log: e.log.filter((r) => r.stream === e.current),
    endInfo: stream ? stream.endInfo : null,
    chunks: stream ? stream.chunks.size : 0,
    errors: e.errors,
  };
}"""


def check_gapless(log: list[dict], end: dict, table: str) -> None:
    """Each chunk starts where the previous one ended (±2 ms).

    The one exception is a chunk that reached the page after the previous one had finished
    playing, which only happens when synthesis itself fell behind real time (an overloaded
    machine): the engine's own playback simulation then reports underruns too, and the page
    must have started that chunk as soon as it came. With an engine that kept up, no gap is
    allowed at all.
    """
    for previous, current in zip(log, log[1:], strict=False):
        previous_end = previous["start"] + previous["duration"]
        if abs(current["start"] - previous_end) <= GAPLESS_S:
            continue
        assert end["engine_underruns"] > 0, f"gap before chunk {current['seq']}:\n{table}"
        # When the previous chunk ended, on the page's clock, and was this chunk there yet?
        ended_ms = previous["scheduled_ms"] + (previous_end - previous["now"]) * 1000
        assert current["underrun"] and current["received_ms"] >= ended_ms - 5, (
            f"the player left a gap before chunk {current['seq']} it already had:\n{table}")
        warnings.warn(f"synthesis fell behind real time (engine underruns: "
                      f"{end['engine_underruns']}); see the schedule:\n{table}", stacklevel=2)


def describe(log: list[dict], started: float) -> str:
    """The schedule as a table, for failure messages."""
    lines = ["seq  arrived_ms  scheduled_ms  start_s  duration_s  underrun  gap_ms"]
    lines += [f"{r['seq']:>3}  {r['received_ms'] - started:>10.0f}  "
              f"{r['scheduled_ms'] - started:>12.0f}  {r['start']:>7.3f}  {r['duration']:>10.3f}  "
              f"{r['underrun']!s:>8}  {r['gap'] * 1000:>6.0f}" for r in log]
    return "\n".join(lines)


def test_speak_streams_gaplessly_in_chromium(lab, launch, artifacts):
    url = lab.notebook("speak.ipynb", [
        "%load_ext kokoro_lab",
        "%speak --wait --no-play --no-plot Warm up.",
        f"%%speak -o res\n{PARAGRAPH}",
        "res.player",
        "res.wait(60); print(res.timings)",
    ])
    browser = launch(autoplay=True)
    try:
        page = open_notebook(browser, url)
        run(page, 0)
        run(page, 1)  # the model is loaded and warm before anything is timed
        focus(page, 2)
        started = page.evaluate("performance.now()")
        page.keyboard.press("Shift+Enter")
        state = poll(page, READ_PLAYER, 2, lambda s: s["phase"] == "done", 240)
        # The CI artifact, taken before any assertion so a failure has its picture too.
        time.sleep(1.0)  # let the chart draw its last update
        cell(page, 2).locator(".jp-Cell-outputWrapper").screenshot(
            path=str(artifacts / "speak-cell.png"))
        log, end = state["log"], state["endInfo"]
        assert not state["errors"], state["errors"]
        assert len(log) >= 3, log
        assert [r["seq"] for r in log] == list(range(len(log)))
        assert end["chunks"] == len(log) and not end["cancelled"]
        check_gapless(log, end, describe(log, started))
        # Audio time really advanced: every source played to its end in the audio clock.
        assert state["now"] >= log[-1]["start"] + log[-1]["duration"] - 0.01
        assert state["fullVisible"]  # the whole utterance stays playable, with a WAV

        # The same player displayed again: a second view, one engine, no second audio.
        run(page, 3)
        views = page.locator(".kokoro-player")
        assert views.count() == 2
        assert views.nth(1).locator(".kl-note").is_visible()
        again = page.evaluate(READ_PLAYER, 3)
        assert again["playerId"] == state["playerId"] and len(again["log"]) == len(log)

        # Latency: Shift+Enter → first chunk scheduled, against the engine's own first audio.
        run(page, 4)
        kernel_timings = cell(page, 4).locator(".jp-OutputArea").inner_text()
        first_scheduled_ms = log[0]["scheduled_ms"] - started
        print(f"first chunk scheduled {first_scheduled_ms:.0f} ms after Shift+Enter; engine "
              f"first audio {end['first_audio_ms']:.0f} ms; kernel: {kernel_timings}\n"
              + describe(log, started))
        assert first_scheduled_ms <= end["first_audio_ms"] + TTFA_SLACK_MS, (
            f"first chunk scheduled {first_scheduled_ms:.0f} ms after Shift+Enter, engine time "
            f"to first audio {end['first_audio_ms']:.0f} ms; kernel timings {kernel_timings}")
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
        focus(page, 2)
        page.keyboard.press("Shift+Enter")  # runs the sleep, then moves to the %%speak cell
        page.keyboard.press("Shift+Enter")
        # The activation from those key presses has expired when, after the 7 s sleep, the
        # player creates its AudioContext: the browser keeps it suspended.
        state = poll(page, READ_PLAYER, 3, lambda s: s["phase"] == "blocked", 180)
        assert page.evaluate("window.__autoplayBlocked") is True
        assert state["enableVisible"] and state["audioState"] == "suspended"
        assert state["log"] == []  # nothing scheduled while blocked; the queue is kept
        cell(page, 3).locator(".jp-Cell-outputWrapper").screenshot(
            path=str(artifacts / "blocked-cell.png"))
        cell(page, 3).locator(".kl-enable").click()
        state = poll(page, READ_PLAYER, 3, lambda s: s["phase"] == "done", 120)
        log = state["log"]
        assert state["audioState"] == "running" and len(log) >= 1
        assert [r["seq"] for r in log] == list(range(state["chunks"]))
        check_gapless(log, state["endInfo"], describe(log, 0))
        assert state["now"] >= log[-1]["start"] + log[-1]["duration"] - 0.01
    finally:
        browser.close()
