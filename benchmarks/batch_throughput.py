"""Batch throughput: seconds of audio rendered per wall-clock second, one process vs two workers.

Renders the same corpus of short sentences three ways on this machine, each into a fresh
directory with the real int8 model on CPU:

* ``1 process``: in this process, ONNX Runtime using every core;
* ``2 processes``: the local process pool, two workers with ``cores // 2`` threads each;
* ``dask 2 workers``: a ``LocalCluster`` of two single-threaded worker processes.

Two figures per run: ``end_to_end`` (all audio / wall time of the ``render`` call, including
starting processes and loading the model; what a user waits for) and ``steady`` (audio finished
after the first item / time from the first item to the last, which leaves the start-up out).
The Dask cluster is started and warmed before its timed run, as a long-lived cluster would be.

The load average before and after is recorded: on a shared machine the numbers are noisy.

    python benchmarks/batch_throughput.py [--items 12] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from kokoro_lab.batch import read_manifest, render
from kokoro_lab.batch._local import cpu_count

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "She sells sea shells by the quiet shore.",
    "Rain is expected later in the afternoon.",
    "Please remember to bring your notebook tomorrow.",
    "The library opens at nine every morning.",
    "A cold wind blew across the empty field.",
    "He painted the small fence a bright green.",
    "Our train leaves the station in ten minutes.",
    "Fresh bread smells wonderful in the kitchen.",
    "The children laughed at the clever puppet.",
    "Turn off the lights before you leave.",
    "Mountains rise beyond the distant valley.",
    "We watched the stars until midnight.",
    "The meeting has been moved to Friday.",
    "Music drifted softly through the open window.",
    "Every answer raises a new question.",
]


def steady_throughput(out: Path) -> float:
    """Audio finished after the first item, over the time from the first finish to the last."""
    records = [r for r in read_manifest(out / "manifest.jsonl").values() if r["status"] == "ok"]
    records.sort(key=lambda r: r["finished_at"])
    if len(records) < 2:
        return float("nan")
    first = datetime.fromisoformat(records[0]["finished_at"])
    last = datetime.fromisoformat(records[-1]["finished_at"])
    span = (last - first).total_seconds()
    return sum(r["duration_s"] for r in records[1:]) / span if span > 0 else float("nan")


def run(name: str, corpus: list[str], scratch: Path, **options) -> dict:
    out = scratch / name.replace(" ", "-")
    shutil.rmtree(out, ignore_errors=True)
    report = render(corpus, out, audio_format="wav", progress=False, **options)
    if report.failed:
        raise RuntimeError(f"{name}: {report.failed} items failed: {report.failures}")
    row = {
        "config": name,
        "items": report.rendered,
        "audio_s": round(report.audio_s, 2),
        "wall_s": round(report.wall_s, 2),
        "end_to_end_audio_s_per_s": round(report.audio_s_per_s, 3),
        "steady_audio_s_per_s": round(steady_throughput(out), 3),
        "items_per_s": round(report.items_per_s, 3),
        "worker_processes": len({r["worker"] for r in
                                 read_manifest(out / "manifest.jsonl").values()}),
    }
    print(f"{name:<16} {row['audio_s']:>6.1f} s audio in {row['wall_s']:>6.1f} s   "
          f"end-to-end {row['end_to_end_audio_s_per_s']:.3f}   "
          f"steady {row['steady_audio_s_per_s']:.3f} audio-s/s", flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=12)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--skip-dask", action="store_true")
    args = parser.parse_args(argv)
    corpus = [SENTENCES[i % len(SENTENCES)] for i in range(args.items)]
    cores = cpu_count()
    load_before = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory(prefix="kokoro-batch-bench-") as tmp:
        scratch = Path(tmp)
        rows.append(run("1 process", corpus, scratch, workers=1, threads=cores))
        rows.append(run("2 processes", corpus, scratch, workers=2))
        if not args.skip_dask:
            from distributed import Client, LocalCluster

            with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                              host="127.0.0.1", dashboard_address=None) as cluster, \
                    Client(cluster) as client:
                render(["Warm up.", "Warm up again."], scratch / "warm", client=client,
                       audio_format="wav", progress=False)  # load the model on both workers
                rows.append(run("dask 2 workers", corpus, scratch, client=client))
    load_after = os.getloadavg()
    result = {
        "benchmark": "batch_throughput",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cores": cores, "platform": platform.platform(),
                    "python": sys.version.split()[0],
                    "load_average_before": [round(x, 2) for x in load_before],
                    "load_average_after": [round(x, 2) for x in load_after]},
        "model": {"precision": "int8", "provider": "cpu"},
        "corpus": {"items": len(corpus), "words": sum(len(s.split()) for s in corpus)},
        "runs": rows,
        "note": ("end_to_end includes process start and model load; steady leaves them out. "
                 "A load average above the core count means other work shared the CPU and the "
                 "figures are noisy."),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / "batch_throughput.json"
    target.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"→ {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
