"""Where users listen: ``%%speak`` in JupyterLab in Chromium, measured by the page.

The figures are what the page played (the player's own measurements, the same ones it shows
and reports to the kernel): first audible sample after the cell ran, stalls (count, total,
largest gap), seconds played, and where the first sound's time went (kernel and page steps).
Scenarios, each beside the engine's own figure from the same kernel:

* ``warm_paragraph``: a 3-sentence paragraph in a warm kernel, run a few times with the chunk
  cache off (every chunk synthesized), each run paired with the engine alone on the same
  paragraph in the same kernel right after it (no player: first chunk made + its first audible
  sample; "over engine" is the median of the pairs' differences); then once more with the cache
  on: a re-run cell heard from the cache;
* ``after_busy_cell``: one short sentence right after a 30 s busy cell (the speech before the
  busy cell has played out by then);
* ``fresh_kernel``: Run All on a fresh kernel (``%load_ext`` then ``%%speak``);
* ``long_300_words``: a 300-word text in a warm kernel while another process keeps one core
  busy (``python -c 'while True: pass'``).

It also reads the page's own main-thread CPU (Chrome's ``TaskDuration``) per second of audio
played, the kernel CPU the notebook layer spent (chart, player hand-off), and kokoro-onnx's
``create_stream`` time to its first chunk on the paragraph in the same kernel (engine-level:
kokoro-onnx has no notebook player) for the ratio. Writes
``benchmarks/results/notebook_e2e.{json,md}``.

    flock /tmp/kokoro-timing.lock .venv/bin/python benchmarks/notebook_e2e.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from kokoro_lab.lab.jupyter.page import cell, open_notebook, press_run, run, run_all, wait_players
from kokoro_lab.lab.jupyter.servers import jupyter_server, launch_chromium
from kokoro_lab.lab.texts import LONG, PARAGRAPH

OUT = Path(__file__).resolve().parent / "results"
TARGETS = {"warm_over_engine_ms": 100, "warm_first_audible_ms": 800, "after_busy_ms": 1000,
           "fresh_kernel_ms": 3500, "long_largest_stall_ms": 500}
WARM_UP = "%speak --wait --no-play --no-plot Warm up."
SHORT = "And this sentence comes after the busy cell."


def kernel_figures(name: str) -> str:
    """A cell printing, as JSON, the kernel's own figures for the result in variable ``name``."""
    return (
        "import json\n"
        f"s = {name}._feeder\n"
        "print(json.dumps({'chunks': len(s.result.chunks), 'model_wait_ms': s.model_wait_ms,\n"
        "  'first_chunk_synthesis_ms': s.result.chunks[0].synthesis_ms,\n"
        "  'engine_first_audio_ms': s.result.timings['engine_first_audio_ms'],\n"
        "  'chart_cpu_ms': 1000 * (s.chart.draw_cpu_s if s.chart else 0),\n"
        "  'player_cpu_ms': 1000 * (s.player.push_cpu_s if s.player else 0),\n"
        "  'heard': s.result.heard}))"
    )


ENGINE_ALONE = (  # the same paragraph, the same warm kernel, no notebook layer at all
    "import json, time\n"
    "from kokoro_lab.engine.metrics import first_audible_sample\n"
    "from kokoro_lab.notebook import current_magics\n"
    "synth = current_magics().synth\n"
    "cache, synth.cache = synth.cache, None\n"
    "started = time.perf_counter()\n"
    "with synth.stream(PARAGRAPH) as stream:\n"
    "    first = next(stream)\n"
    "synth.cache = cache\n"
    "hit = first_audible_sample(first.audio) or 0\n"
    "print(json.dumps({'engine_first_audible_ms': (first.finished - started) * 1000 + hit / 24}))"
)
KOKORO_ONNX_FIRST_CHUNK = (  # top-level `async for`: the kernel's own event loop runs it
    "import json, time\n"
    "from kokoro_onnx import Kokoro\n"
    "from kokoro_lab import assets\n"
    "ko = Kokoro(str(assets.model_path('int8')), str(assets.voices_path()))\n"
    "started = time.perf_counter()\n"
    "async for _samples, _rate in ko.create_stream(PARAGRAPH, voice='af_heart'):\n"
    "    first_chunk_ms = (time.perf_counter() - started) * 1000\n"
    "    break\n"
    "print(json.dumps({'kokoro_onnx_first_chunk_ms': first_chunk_ms}))"
)


def printed_json(page, index: int):
    text = cell(page, index).locator(".jp-OutputArea").inner_text()
    return json.loads(text.strip().splitlines()[-1])


def done(count: int):
    return lambda s: len(s) >= count and all(p["phase"] == "done" for p in s[:count])


def heard_of(player: dict) -> dict:
    return {**player["heard"], "status": player["status"]}


class PageCpu:
    """The page's main-thread busy time (Chrome's TaskDuration), read around a case."""

    def __init__(self, page):
        self.cdp = page.context.new_cdp_session(page)
        self.cdp.send("Performance.enable")

    def seconds(self) -> float:
        metrics = self.cdp.send("Performance.getMetrics")["metrics"]
        return next(m["value"] for m in metrics if m["name"] == "TaskDuration")


def warm_paragraph(server, browser, repeats: int) -> dict:
    url = server.notebook("e2e_warm.ipynb", [
        "%load_ext kokoro_lab", WARM_UP, "%config SpeakMagics.cache = False",
        f"%%speak -o warm\n{PARAGRAPH}", kernel_figures("warm"),
        f"PARAGRAPH = {PARAGRAPH!r}\n{ENGINE_ALONE}", KOKORO_ONNX_FIRST_CHUNK,
        "%config SpeakMagics.cache = True",
    ])
    page = open_notebook(browser, url)
    for index in range(3):
        run(page, index)
    cpu, runs, page_cpu, engine = PageCpu(page), [], [], []
    for _ in range(repeats):
        before = cpu.seconds()
        press_run(page, 3)  # the same cell again: its previous speech is over by now
        time.sleep(0.5)
        (player,) = wait_players(page, done(1), 300, "warm")
        runs.append(heard_of(player))
        page_cpu.append((cpu.seconds() - before) / max(player["heard"]["played_s"], 1e-3))
        time.sleep(1.0)
        # The engine alone right after each heard run, so each pair meets the same machine
        # (a shared machine's speed drifts by ~100 ms between minutes)
        run(page, 5, timeout_s=600)
        engine.append(printed_json(page, 5)["engine_first_audible_ms"])
    run(page, 4)
    kernel = printed_json(page, 4)
    run(page, 6, timeout_s=600)
    reference = printed_json(page, 6)
    run(page, 7)
    for _ in range(2):  # cache on: made once more, then heard again from memory
        press_run(page, 3)
        time.sleep(0.5)
        (cached,) = wait_players(page, done(1), 300, "cached")
        time.sleep(1.0)
    page.close()
    return {"runs": runs, "kernel": kernel, "engine_first_audible_ms": engine, **reference,
            "cached": heard_of(cached),
            "page_cpu_ms_per_audio_s": round(1000 * statistics.median(page_cpu), 1)}


def after_busy_cell(server, browser) -> dict:
    url = server.notebook("e2e_busy.ipynb", [
        "%load_ext kokoro_lab", WARM_UP, f"%%speak -o para\n{PARAGRAPH}",
        "import time; time.sleep(30)", f"%%speak -o after\n{SHORT}",
    ])
    page = open_notebook(browser, url)
    run_all(page)
    state = wait_players(page, done(2), 600, "busy")
    page.close()
    return {"paragraph": heard_of(state[0]), "after_busy_cell": heard_of(state[1])}


def fresh_kernel(server, browser) -> dict:
    url = server.notebook("e2e_fresh.ipynb", [
        "%load_ext kokoro_lab", f"%%speak -o fresh\n{PARAGRAPH}", "fresh.wait(600);",
        kernel_figures("fresh"),
    ])
    page = open_notebook(browser, url)
    run_all(page)
    (player,) = wait_players(page, done(1), 600, "fresh")
    time.sleep(2.0)
    run(page, 3)
    kernel = printed_json(page, 3)
    page.close()
    return {"heard": heard_of(player), "kernel": kernel}


@contextmanager
def one_core_busy():
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield
    finally:
        burner.kill()
        burner.wait()


def long_text(server, browser) -> dict:
    url = server.notebook("e2e_long.ipynb", [
        "%load_ext kokoro_lab", WARM_UP, "%config SpeakMagics.cache = False",
        f"%%speak -o long\n{LONG}", kernel_figures("long"),
    ])
    page = open_notebook(browser, url)
    for index in range(3):
        run(page, index)
    with one_core_busy():
        press_run(page, 3)
        (player,) = wait_players(page, done(1), 900, "long")
    time.sleep(1.0)
    run(page, 4)
    kernel = printed_json(page, 4)
    page.close()
    return {"heard": heard_of(player), "kernel": kernel, "words": len(LONG.split())}


def summarise(results: dict) -> dict:
    warm = results["warm_paragraph"]
    firsts = [r["first_audible_ms"] for r in warm["runs"]]
    engines = warm["engine_first_audible_ms"]
    engine = statistics.median(engines)
    pairs = zip(warm["runs"], engines, strict=True)
    over = statistics.median(run["first_audible_ms"] - alone for run, alone in pairs)
    long = results["long_300_words"]["heard"]
    after = results["after_busy_cell"]["after_busy_cell"]
    kernel_cpu = [results[name]["kernel"]["chart_cpu_ms"] + results[name]["kernel"]
                  ["player_cpu_ms"] for name in ("warm_paragraph", "fresh_kernel",
                                                  "long_300_words")]
    median = statistics.median(firsts)
    return {
        "engine_alone_first_audible_ms": round(engine),
        "warm_paragraph_first_audible_ms_median": median,
        "warm_paragraph_first_audible_ms_max": max(firsts),
        "warm_paragraph_over_engine_ms": round(over),  # median of the paired differences
        "warm_paragraph_stalls_max": max(r["stalls"] for r in warm["runs"]),
        "warm_paragraph_first_sound_steps": warm["runs"][0].get("breakdown"),
        "rerun_cached_first_audible_ms": warm["cached"]["first_audible_ms"],
        "after_busy_cell_first_audible_ms": after["first_audible_ms"],
        "after_busy_cell_since": after["since"],
        "after_busy_cell_steps": after.get("breakdown"),
        "fresh_kernel_first_audible_ms": results["fresh_kernel"]["heard"]["first_audible_ms"],
        "fresh_kernel_model_wait_ms": round(results["fresh_kernel"]["kernel"]["model_wait_ms"]),
        "long_one_core_busy_stalls": long["stalls"], "long_stall_ms": long["stall_ms"],
        "long_largest_gap_ms": long["largest_gap_ms"],
        "kokoro_onnx_create_stream_first_chunk_ms": round(warm["kokoro_onnx_first_chunk_ms"]),
        "ratio_kokoro_onnx_first_chunk_over_heard_first_audible":
            round(warm["kokoro_onnx_first_chunk_ms"] / median, 1),
        "page_cpu_ms_per_audio_s": warm["page_cpu_ms_per_audio_s"],
        "notebook_layer_kernel_cpu_ms_per_utterance_median": round(
            statistics.median(kernel_cpu), 1),
        "targets": TARGETS,
    }


def markdown(summary: dict, meta: dict) -> str:
    lines = ["# Notebook end to end: what the page played (JupyterLab, Chromium)", "",
             f"{meta['when']} · {meta['machine']} · load average {meta['load_start']} → "
             f"{meta['load_end']}", "", "| figure | value |", "|---|---|"]
    for key, value in summary.items():
        if key != "targets":
            lines.append(f"| {key.replace('_', ' ')} | {value} |")
    lines += ["", "Targets: warm paragraph first audible ≤ engine alone + 100 ms and ≤ 800 ms, "
              "no stall; the speech after a busy cell heard ≤ 1.0 s after it starts; a fresh "
              "kernel's first cell heard ≤ 3.5 s; 300 words with one core busy: no stall "
              "over 0.5 s. kokoro-onnx's figure is engine-level (time to its first chunk in the "
              "same kernel); ours is heard in the page.", "",
              "Reproduce: `flock /tmp/kokoro-timing.lock .venv/bin/python "
              "benchmarks/notebook_e2e.py`"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="warm paragraph runs")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    meta = {"when": time.strftime("%Y-%m-%d %H:%M"), "load_start": _load(),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores"}
    results: dict = {}
    with jupyter_server("lab") as server, sync_playwright() as p:
        browser = launch_chromium(p, autoplay=True)
        try:
            results["warm_paragraph"] = warm_paragraph(server, browser, args.repeats)
            results["after_busy_cell"] = after_busy_cell(server, browser)
            results["fresh_kernel"] = fresh_kernel(server, browser)
            results["long_300_words"] = long_text(server, browser)
        finally:
            browser.close()
    meta["load_end"] = _load()
    summary = summarise(results)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "notebook_e2e.json").write_text(
        json.dumps({"meta": meta, "summary": summary, "results": results}, indent=2) + "\n")
    (args.out / "notebook_e2e.md").write_text(markdown(summary, meta))
    print(markdown(summary, meta))


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


if __name__ == "__main__":
    main()
