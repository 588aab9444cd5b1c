"""The first chunk's latency breakdown, stage by stage and op by op, before and after tuning.

For a held-out paragraph's first chunk this runs :func:`kokoro_lab.profiling.profile_ops` with
``tuning="off"`` (the released graph, plain settings) and with this machine's tuning
(``"auto"``: the profile ``kokoro-lab tune`` saved, else the built-in choice), in one process,
and writes ``benchmarks/results/op_profile.{json,md}``: the mission's latency breakdown table
(text processing, phonemes, synthesis, buffering) and the op tables.

    flock /tmp/kokoro-timing.lock .venv/bin/python benchmarks/op_profile.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

from kokoro_lab.engine import Synthesizer
from kokoro_lab.engine.tuning import cpu_fingerprint
from kokoro_lab.lab.texts import HOLDOUT
from kokoro_lab.profiling import profile_ops

RESULTS = Path(__file__).parent / "results"
# The mission's four rows, from the stages profile_ops times.
BREAKDOWN = {"text processing": ("text",), "phonemes": ("phonemes",),
             "synthesis": ("inputs", "front", "generator", "finish"), "buffering": ("hand-off",)}


def breakdown(stages: dict[str, float]) -> dict[str, float]:
    return {row: sum(stages[s] for s in parts) for row, parts in BREAKDOWN.items()}


def markdown(runs: dict) -> str:
    names = list(runs)
    lines = ["# First-chunk latency breakdown", "",
             f"Machine: {runs[names[0]]['cpu']['model']} ({runs[names[0]]['cpu']['cores']} "
             f"cores), load average {os.getloadavg()[0]:.2f}. First chunk of the held-out "
             f"paragraph: {runs[names[0]]['chunk_text']!r}. Regenerate: "
             "`.venv/bin/python benchmarks/op_profile.py`.", "",
             "| stage | " + " | ".join(f"{n} (ms)" for n in names) + " |",
             "|---|" + "---:|" * len(names)]
    for row in BREAKDOWN:
        lines.append(f"| {row} | " + " | ".join(f"{runs[n]['breakdown'][row]:.1f}"
                                                  for n in names) + " |")
    lines.append("| **total** | " + " | ".join(f"**{sum(runs[n]['breakdown'].values()):.1f}**"
                                                for n in names) + " |")
    for name in names:
        lines += ["", f"## {name}: {runs[name]['tuning']}", "", runs[name]["markdown"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    runs = {}
    for name in ("off", "auto"):
        synth = Synthesizer(tuning=name, cache=False)
        report = profile_ops(HOLDOUT, repeats=args.repeats, synth=synth)
        runs[f"tuning={name}"] = {
            **report.as_dict(), "tuning": synth.tuning.label, "cpu": cpu_fingerprint(),
            "breakdown": breakdown(report.stages), "markdown": report.markdown(),
            "python": platform.python_version()}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "op_profile.json").write_text(json.dumps(runs, indent=1, default=str))
    (RESULTS / "op_profile.md").write_text(markdown(runs))
    print(markdown(runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
