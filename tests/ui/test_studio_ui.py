"""The Studio in JupyterLab in Chromium: it renders, speaks from its own controls, and reports
bad values in the panel.

The page is driven as a user would: pick a voice in the panel's drop-down, press its Speak
button, type a bad blend in the spec box. What played is read back from the player's registry
(``window.__kokoroLab``), and what the engine made from the kernel (a cell printing the result).
"""

from __future__ import annotations

import json

from kokoro_lab.lab.jupyter.page import cell, open_notebook, poll, run
from kokoro_lab.notebook.studio import voice_label
from tests.ui.checks import check_continuity

TEXT = "Hello there. Nice to meet you."

# The Studio panel's player in a cell: what the browser scheduled for the current stream.
READ_STUDIO = """(index) => {
  const cell = document.querySelectorAll('.jp-Notebook .jp-Cell')[index];
  const studio = cell && cell.querySelector('.kokoro-studio');
  if (!studio) return null;
  const root = studio.querySelector('.kokoro-player');
  const lab = window.__kokoroLab;
  const e = root && lab && lab.players[root.dataset.playerId];
  const stream = e ? e.streams.get(e.current) : null;
  const select = studio.querySelector('.kl-studio-voice select');
  return {
    voices: select ? select.options.length : 0,
    providers: Array.from(studio.querySelectorAll('.kl-studio-provider option'))
      .map((o) => o.textContent),
    notes: (studio.querySelector('.kl-studio-notes') || {}).textContent || '',
    status: (studio.querySelector('.kl-studio-status') || {}).textContent || '',
    error: (studio.querySelector('.kl-studio-error') || {}).textContent || '',
    chart: !!studio.querySelector('.js-plotly-plot'),
    captionWords: Array.from(studio.querySelectorAll('.kl-captions .kl-word'))
      .map((w) => w.textContent),
    phase: root ? root.dataset.phase : null,
    log: e ? e.log.filter((r) => r.stream === e.current) : [],
    endInfo: stream ? stream.endInfo : null,
    errors: e ? e.errors : [],
    stops: Array.from(studio.querySelectorAll('button'))
      .filter((b) => b.offsetParent !== null && /Stop/.test(b.textContent)).length,
    timeline: Array.from(studio.querySelectorAll('.js-plotly-plot text'))
      .map((t) => t.textContent).filter((t) => t.startsWith('Timeline')),
  };
}"""

# What sticks out of the cell's output area: the area's sideways scroll, and the panel's
# controls whose right edge passes the area's (the chart is the latency chart's own).
READ_OVERFLOW = """(index) => {
  const cell = document.querySelectorAll('.jp-Notebook .jp-Cell')[index];
  const area = cell.querySelector('.jp-OutputArea-output');
  const right = area.getBoundingClientRect().right;
  const outside = Array.from(cell.querySelectorAll('.kokoro-studio *'))
    .filter((el) => !el.closest('.widget-output') && el.getBoundingClientRect().width > 0
      && el.getBoundingClientRect().right > right + 1)
    .map((el) => el.className || el.tagName);
  return {scroll: area.scrollWidth - area.clientWidth, outside: outside.slice(0, 8)};
}"""


# Whether the blend weight slider is live: the kernel enables it when a second voice is picked,
# so its state in the page is the kernel's answer to that pick.
READ_BLEND_LIVE = """(index) => {
  const cell = document.querySelectorAll('.jp-Notebook .jp-Cell')[index];
  const readout = cell && cell.querySelector('.kl-studio-blend .widget-readout');
  return readout ? {live: readout.contentEditable === 'true'} : null;
}"""


def test_studio_renders_and_speaks_in_chromium(lab, launch, artifacts):
    url = lab.notebook("studio.ipynb", [
        "%load_ext kokoro_lab",
        "%speak --wait --no-play --no-plot Warm up.",
        f"%speak_studio -o st {TEXT}",
        "import json; print(json.dumps([[c.index, c.voice, c.speed, c.text, c.ready_ms, "
        "c.audio_ms] for c in st.result.chunks]), st.result.state)",
        "import json; from kokoro_lab.engine.sessions import available_providers; "
        "print(json.dumps(available_providers()))",
    ])
    browser = launch(autoplay=True)
    try:
        page = open_notebook(browser, url, height=1800)
        run(page, 0)
        run(page, 1)  # the model is loaded and warm before the panel speaks
        run(page, 2)
        state = poll(page, READ_STUDIO, 2, lambda s: s["voices"] and s["phase"] is not None, 60)
        assert state["voices"] == 54, state  # every stock voice, grouped, in the picker
        run(page, 4)
        providers = json.loads(cell(page, 4).locator(".jp-OutputArea-output").inner_text())
        assert state["providers"] == providers  # only what this machine can run
        if "cuda" not in providers:
            assert "cuda" in state["notes"]  # … and why the others are missing

        studio = cell(page, 2).locator(".kokoro-studio")
        # ipywidgets' <select> options carry the labels (grouped names), not the values.
        studio.locator(".kl-studio-voice select").select_option(label=voice_label("bf_emma"))
        studio.locator(".kl-studio-voice2 select").select_option(label=voice_label("af_heart"))
        poll(page, READ_BLEND_LIVE, 2, lambda blend: blend["live"], 30)
        fits = page.evaluate(READ_OVERFLOW, 2)
        assert fits == {"scroll": 0, "outside": []}, fits  # long labels stay inside
        # Speak at once, as a quick user does: ipywidgets may still hold "(none)" in the page
        # (a control's next change waits for the kernel's answer to its last one), but the
        # Speak button carries the page's controls with its click, so the kernel speaks what
        # the panel shows.
        studio.locator(".kl-studio-voice2 select").select_option(label="(none)")
        studio.locator(".kl-studio-speak button").click()
        playing = poll(page, READ_STUDIO, 2, lambda s: s["phase"] in ("playing", "done"), 120)
        assert playing["stops"] <= 1, playing  # one Stop: the player's, while it plays
        state = poll(page, READ_STUDIO, 2,
                     lambda s: s["phase"] == "done" and "complete" in s["status"], 240)
        assert state["stops"] == 0 and state["chart"]  # nothing left to stop; the chart drawn
        assert state["timeline"] == ["Timeline since Speak was pressed"], state["timeline"]
        # the Studio's player shows the text with its words, as %%speak's does (issue 13)
        assert state["captionWords"] and state["captionWords"][0] in TEXT, state["captionWords"]
        log, end = state["log"], state["endInfo"]
        assert not state["errors"], state["errors"]
        assert len(log) >= 2 and end["chunks"] == len(log) and not end["cancelled"], state
        assert [r["seq"] for r in log] == list(range(len(log)))
        cell(page, 2).locator(".jp-Cell-outputWrapper").screenshot(
            path=str(artifacts / "studio-cell.png"))

        # What the kernel made from the panel's state: the voice picked in the browser.
        run(page, 3)
        printed = cell(page, 3).locator(".jp-OutputArea-output").inner_text().strip()
        rows, result_state = printed.rsplit(" ", 1)
        chunks = json.loads(rows)
        assert result_state == "complete" and len(chunks) == len(log)
        assert all(voice == "bf_emma" and speed == 1.0 for _, voice, speed, *_ in chunks)
        assert " ".join(chunk[3] for chunk in chunks).split() == TEXT.split()
        check_continuity(log)  # back to back wherever a chunk arrived in time
        print(f"studio: {len(log)} chunks, browser underruns "
              f"{sum(r['underrun'] for r in log)}, engine ready_ms "
              f"{[round(c[4]) for c in chunks]}, audio_ms {[round(c[5]) for c in chunks]}")

        # A bad blend typed in the spec box: a message in the panel, nothing raised.
        spec = studio.locator(".kl-studio-spec input")
        spec.fill("af_heart:0,bf_emma:0")
        spec.press("Enter")
        state = poll(page, READ_STUDIO, 2, lambda s: "sum to a positive number" in s["error"], 30)
        fits = page.evaluate(READ_OVERFLOW, 2)
        assert fits == {"scroll": 0, "outside": []}, fits  # typing does not widen the panel
        spec.fill("af_hart")
        spec.press("Enter")
        state = poll(page, READ_STUDIO, 2, lambda s: "unknown voice 'af_hart'" in s["error"], 30)
        assert "did you mean af_heart" in state["error"]
        assert not cell(page, 2).locator(".jp-RenderedText[data-mime-type="
                                         "'application/vnd.jupyter.stderr']").count()
        cell(page, 2).locator(".jp-Cell-outputWrapper").screenshot(
            path=str(artifacts / "studio-bad-value.png"))
    finally:
        browser.close()
