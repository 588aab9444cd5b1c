"""Memory and throughput of a long read: RSS per chunk of a 100,000-character stream.

The question (issue 11, item 5): does the process's memory stay bounded while a long text is
read, chunk after chunk, each chunk a new input length? ONNX Runtime's CPU arena keeps every
block it grew unless runs ask it to shrink back
(:data:`kokoro_lab.engine.sessions.ARENA_SHRINKAGE`), and glibc keeps what is freed in
per-thread arenas unless asked to trim (:func:`kokoro_lab.engine.sessions.release_freed_memory`);
both cost speed, as the next run faults its memory in again. Configurations:

* ``engine`` (as shipped): one CPU arena shared by every session, extended by what a run asks
  for (:func:`kokoro_lab.engine.sessions.shared_cpu_arena`), shrunk after every run, the
  allocator trimmed after every chunk;
* ``own arenas``: each session its own default arena, shrunk and trimmed the same way;
* ``before``: each session its own default arena, never shrunk or trimmed, lane chunks up to
  the efficiency cap instead of :data:`~kokoro_lab.engine.scheduling.LANE_CAP` (the engine
  before issue 11).

Each runs in its own process (RSS never goes down within one), alternating, and reports:

* ``warm_mb``: RSS after the synthesizer is built and warmed,
* ``rss_mb``: RSS after each chunk; the target is ≤ 100 MB growth from chunk 5 to chunk 60 and
  ≤ 350 MB above warm. A single reading also holds the working set of the runs in flight at
  that moment, which comes and goes, so ``floor_growth_mb`` compares the lowest reading of
  five chunks in a row (chunks 5–9 against the last five): what accumulates,
* ``throughput``: seconds of audio made per wall-clock second over chunks 5 to the end (the
  consumer reads as fast as chunks come, so this is the engine's speed, lanes included).

Timing figures need the timing lock (docs/benchmarks.md)::

    flock /tmp/kokoro-timing.lock nice -n 0 .venv/bin/python benchmarks/memory_long_read.py

writes ``benchmarks/results/memory_long_read.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from kokoro_lab.lab.results import write_results
from kokoro_lab.lab.texts import long_read

RESULTS = Path(__file__).parent / "results"
CHARS = 100_000
FROM_CHUNK = 5


MODES = ("engine", "own arenas", "before")


def measure(chunks: int, mode: str) -> dict:
    """One configuration, in this process: RSS after each chunk and the throughput."""
    import onnxruntime as ort
    import psutil

    from kokoro_lab.engine import chunking, scheduling, sessions, stream, synthesizer

    if mode != "engine":
        sessions.SHARED_ARENA = False
    if mode == "before":
        synthesizer.release_freed_memory = lambda: None
        stream.run_options = ort.RunOptions
        scheduling.LANE_CAP = chunking.EFFICIENT_CAP
    process = psutil.Process()
    synth = synthesizer.Synthesizer(cache=False)
    warm = process.memory_info().rss / 2**20
    rss, audio_s, started = [], 0.0, None
    stream = synth.stream(long_read(CHARS))
    for chunk in stream:
        rss.append(round(process.memory_info().rss / 2**20, 1))
        if chunk.index == FROM_CHUNK:
            started, audio_s = time.perf_counter(), 0.0
        audio_s += chunk.audio_ms / 1000
        if chunk.index + 1 >= chunks:
            break
    elapsed = time.perf_counter() - started
    stream.cancel()
    return {"mode": mode, "warm_mb": round(warm, 1), "rss_mb": rss,
            "growth_mb": round(rss[-1] - rss[FROM_CHUNK], 1),
            "floor_growth_mb": round(min(rss[-5:]) - min(rss[FROM_CHUNK:FROM_CHUNK + 5]), 1),
            "above_warm_mb": round(max(rss) - warm, 1),
            "throughput": round(audio_s / elapsed, 3), "chunks": len(rss)}


def markdown(report: dict) -> str:
    lines = [
        "# Memory of a long read", "",
        f"{report['chunks']} chunks of a {CHARS:,}-character stream, int8, CPU, "
        f"{report['machine']['cores']} cores; load average {report['load_start']} → "
        f"{report['load_end']}.", "",
        f"| configuration | warm MB | RSS chunk {FROM_CHUNK} | RSS last | growth from chunk "
        f"{FROM_CHUNK} MB | floor growth MB | max above warm MB | throughput (audio s / s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in report["runs"]:
        lines.append(
            f"| {run['mode']} | {run['warm_mb']:.0f} | "
            f"{run['rss_mb'][FROM_CHUNK]:.0f} | {run['rss_mb'][-1]:.0f} | {run['growth_mb']:.0f} "
            f"| {run['floor_growth_mb']:.0f} | {run['above_warm_mb']:.0f} | "
            f"{run['throughput']:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--modes", default="engine,own arenas,before",
                        help=f"comma-separated, of: {', '.join(MODES)}")
    parser.add_argument("--one", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.one:  # a child process: one configuration, JSON on stdout
        print(json.dumps(measure(args.chunks, args.one)))
        return
    modes = args.modes.split(",")
    load_start = [round(x, 2) for x in os.getloadavg()]
    runs = []
    for repeat in range(args.repeats):
        for mode in (modes if repeat % 2 == 0 else modes[::-1]):
            out = subprocess.run(
                [sys.executable, __file__, "--one", mode, "--chunks", str(args.chunks)],
                check=True, capture_output=True, text=True).stdout
            runs.append(json.loads(out.strip().splitlines()[-1]))
            print(mode, {k: v for k, v in runs[-1].items() if k != "rss_mb"}, flush=True)
    report = {"machine": {"cores": os.cpu_count()}, "chunks": args.chunks,
              "load_start": load_start, "load_end": [round(x, 2) for x in os.getloadavg()],
              "runs": runs}
    write_results(args.out, "memory_long_read", report, markdown(report))


if __name__ == "__main__":
    main()
