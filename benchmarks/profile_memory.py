"""What a judged ``%speak_profile`` leaves in a kernel, and what ``%unload_ext`` gives back.

The question (issue 18): after ``%speak_profile --quality`` a notebook kernel holds the
profile's sessions and judges only while it runs; once its figures are out, the kernel's RSS
should be within 150 MB of a warm kernel that had only spoken. Run in an IPython shell (the
magics as a notebook kernel runs them, without a browser), in a fresh process:

1. ``%load_ext kokoro_lab`` and a ``%speak --wait --no-play --no-plot``: the warm figure;
2. ``%speak_profile -r 1 --quality --no-figures`` on a short sentence: RSS after it;
3. ``%unload_ext kokoro_lab``: RSS after it.

Each reading follows a ``gc.collect()``. ::

    flock /tmp/kokoro-timing.lock .venv/bin/python benchmarks/profile_memory.py

writes ``benchmarks/results/profile_memory.{json,md}``.
"""

from __future__ import annotations

import argparse
import gc
import os
from pathlib import Path

import psutil
from IPython.testing.globalipapp import start_ipython

from kokoro_lab.lab.results import write_results

RESULTS = Path(__file__).parent / "results"
TARGET_MB = 150
TEXT = "Hello there, how are you today."


def rss_mb() -> float:
    gc.collect()
    return psutil.Process().memory_info().rss / 2**20


def measure(text: str) -> dict:
    """RSS readings (MB) of one IPython shell through warm-up, profile and unload."""
    shell = start_ipython()
    shell.run_line_magic("load_ext", "kokoro_lab")
    shell.run_line_magic("speak", "--wait --no-play --no-plot Warm up.")
    readings = {"warm": rss_mb()}
    shell.run_line_magic("load_ext", "kokoro_lab.notebook.profile_magic")
    shell.run_line_magic("config", "ProfileMagics.progress = False")
    shell.run_line_magic("speak_profile", f"-r 1 --quality --no-figures {text}")
    readings["after_profile"] = rss_mb()
    shell.run_line_magic("unload_ext", "kokoro_lab")
    readings["after_unload"] = rss_mb()
    return readings


def markdown(report: dict) -> str:
    warm = report["rss_mb"]["warm"]
    rows = [("warm kernel (`%load_ext kokoro_lab`, one `%speak`)", "warm"),
            ("after `%speak_profile -r 1 --quality`", "after_profile"),
            ("after `%unload_ext kokoro_lab`", "after_unload")]
    lines = ["# What a judged profile leaves in a kernel", "",
             "Regenerate: `flock /tmp/kokoro-timing.lock .venv/bin/python "
             f"benchmarks/profile_memory.py`. One IPython shell, text {report['text']!r}; RSS "
             f"after `gc.collect()`; load average {report['load']}.", "",
             "| moment | RSS MB | over warm MB |", "|---|---:|---:|"]
    for label, key in rows:
        value = report["rss_mb"][key]
        lines.append(f"| {label} | {value:.0f} | {value - warm:+.0f} |")
    above = report["rss_mb"]["after_profile"] - warm
    verdict = "met" if above <= TARGET_MB else "NOT met"
    lines += ["", f"Target: within {TARGET_MB} MB of the warm kernel after the profile: "
              f"{above:+.0f} MB, {verdict}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--text", default=TEXT)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    report = {"text": args.text, "load": [round(x, 2) for x in os.getloadavg()],
              "rss_mb": measure(args.text)}
    write_results(args.out, "profile_memory", report, markdown(report))


if __name__ == "__main__":
    main()
