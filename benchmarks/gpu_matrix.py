"""The whole provider × precision matrix on a GPU machine, in one go, under a time budget.

    python benchmarks/gpu_matrix.py --out benchmarks/results/gpu

Steps (each skipped, and said so, once the budget is spent; the default fits in 8 minutes):

1. build the derived fp32/fp16 graphs (cached by the int8 file's hash), timed;
2. ``kokoro_lab.profiling.profile`` over every available provider of cuda, tensorrt (only with
   ``--tensorrt``: its engine builds per input shape can take minutes) and cpu × int8, fp32,
   fp16 → ``profile.html`` (figures), ``profile.md``, ``profile.json``;
3. the placement audit of every cell that ran → ``audit.md`` (int8 on CUDA should show its
   integer ops on the CPU);
4. raw model-call timings against token count, with and without I/O binding, for the GPU
   cells → ``raw.json`` and ``raw.md``.

The run log goes to ``OUT/runs.sqlite`` (``KOKORO_LAB_DATA``), so the figures can be compared
with a CPU machine's log by ``kokoro-lab runs --with OUT/runs.sqlite``. On a machine without
a GPU the script still runs (CPU only) and the GPU rows say why they are absent.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

TEXT = ("The quick brown fox jumps over the lazy dog. It was a bright cold day in April, and "
        "the clocks were striking thirteen. Please call Stella and ask her to bring these "
        "things with her from the store.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/gpu"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--budget-s", type=float, default=420.0,
                        help="stop starting new steps after this many seconds")
    parser.add_argument("--tensorrt", action="store_true", help="include TensorRT")
    parser.add_argument("--precisions", default="int8,fp32,fp16")
    parser.add_argument("--providers", default=None, help="default: cuda[,tensorrt],cpu")
    parser.add_argument("--text", default=TEXT)
    args = parser.parse_args(argv)

    args.out.mkdir(parents=True, exist_ok=True)
    os.environ["KOKORO_LAB_DATA"] = str(args.out.resolve())
    from kokoro_lab import assets
    from kokoro_lab.engine.sessions import available_providers
    from kokoro_lab.profiling import audit, profile
    from kokoro_lab.profiling.raw import raw_timings

    started = time.perf_counter()
    log: list[str] = []

    def note(message: str) -> None:
        line = f"[{time.perf_counter() - started:6.1f} s] {message}"
        print(line, flush=True)
        log.append(line)

    def budget_left() -> float:
        return args.budget_s - (time.perf_counter() - started)

    precisions = [p for p in args.precisions.split(",") if p]
    wanted = args.providers.split(",") if args.providers else (
        ["cuda"] + (["tensorrt"] if args.tensorrt else []) + ["cpu"])
    note(f"onnxruntime providers here: {', '.join(available_providers())}")

    # 1. derived graphs
    for precision in precisions:
        t0 = time.perf_counter()
        try:
            path = assets.model_path(precision)
            note(f"{precision} graph ready in {time.perf_counter() - t0:.1f} s: {path.name}")
        except Exception as error:  # reported, and the profile shows the cell as absent
            note(f"{precision} graph not available: {error}")

    # 2. the matrix
    report = profile(args.text, providers=wanted, precisions=precisions, repeats=args.repeats,
                     progress=False)
    note(f"profile done: {len(report.cells)} cells ran, {len(report.absent)} absent")
    report.write_html(args.out / "profile.html")
    (args.out / "profile.md").write_text(report.markdown() + "\n", encoding="utf-8")
    (args.out / "profile.json").write_text(json.dumps(report.as_dict(), indent=1, default=str),
                                           encoding="utf-8")

    # 3. placement
    audits = []
    for cell in report.cells:
        if budget_left() < 30:
            note(f"budget spent: audit of {cell.key} skipped")
            continue
        placement = audit(cell.precision, cell.provider, warn=False)
        audits.append(placement.markdown(top=10))
        note(f"audit {cell.key}: CPU share {placement.cpu_share():.0%}")
    (args.out / "audit.md").write_text("\n\n".join(audits) + "\n", encoding="utf-8")

    # 4. raw timings with and without I/O binding, GPU cells first
    raw = []
    for cell in sorted(report.cells, key=lambda c: c.provider == "cpu"):
        if budget_left() < 60:
            note(f"budget spent: raw timings of {cell.key} skipped")
            continue
        lengths = (16, 64, 128, 256, 510) if cell.provider != "cpu" else (16, 64)
        rows = raw_timings(cell.precision, cell.provider, lengths=lengths, repeats=3)
        raw += [{**row.__dict__, "rtf": row.rtf} for row in rows]
        note(f"raw timings {cell.key}: " + ", ".join(
            f"{r.tokens}{'b' if r.io_binding else ''}={r.median_ms:.0f}ms" for r in rows))
    (args.out / "raw.json").write_text(json.dumps(raw, indent=1), encoding="utf-8")
    lines = ["| provider | precision | tokens | I/O binding | median ms | RTF |",
             "|---|---|---:|---|---:|---:|"]
    lines += [f"| {r['provider']} | {r['precision']} | {r['tokens']} | "
              f"{'yes' if r['io_binding'] else 'no'} | {r['median_ms']:.1f} | {r['rtf']:.4f} |"
              for r in raw]
    (args.out / "raw.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    note(f"done; results in {args.out}")
    (args.out / "log.txt").write_text("\n".join(log) + "\n", encoding="utf-8")
    return 0 if report.cells else 1


if __name__ == "__main__":
    sys.exit(main())
