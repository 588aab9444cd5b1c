"""Is the OpenVINO runtime a faster CPU backend for the vocoder here? Measured, not assumed.

Issue 12 measured OpenVINO reading the derived fp32 graph with the bf16 inference hint at 0.70×
ONNX Runtime int8's time on an AVX512-BF16 CPU. This script times the generator stage (the
vocoder, most of a chunk's cost) on this machine, in one process, interleaved, 2 threads:

* ONNX Runtime, int8 generator (the engine's default) and fp32 generator,
* OpenVINO (PyPI ``openvino``) on the fp32 generator with the ``f32`` and ``bf16`` inference
  precision hints,

on the front-stage outputs of a 4-word phrase and of a sentence, and judges each output by
PESQ-WB against ONNX Runtime int8's. The engine offers a backend only where it wins here by
measurement and passes that judge; the CPU's flags are recorded (bf16 needs ``avx512_bf16`` or
AMX to be native).

    flock /tmp/kokoro-timing.lock nice -n 0 .venv/bin/python benchmarks/openvino_generator.py

writes ``benchmarks/results/openvino_generator.{json,md}``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np

from kokoro_lab import quality
from kokoro_lab.engine import Synthesizer, assets, split
from kokoro_lab.engine.sessions import session_options
from kokoro_lab.lab.results import write_results

RESULTS = Path(__file__).parent / "results"
TEXTS = {"4 words": "The old lighthouse stood",
         "sentence": "Nobody in the village remembered when the light had last failed."}
THREADS = 2


def cpu_flags() -> list[str]:
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("flags")).split(":", 1)[1].split()
    except (OSError, StopIteration):
        return []
    return sorted(f for f in flags if f.startswith(("avx512_bf16", "amx", "avx512_vnni")))


def runners(int8: split.SplitPaths, fp32: split.SplitPaths) -> dict:
    import onnxruntime as ort
    import openvino as ov

    found = {}
    for name, paths in (("onnxruntime int8", int8), ("onnxruntime fp32", fp32)):
        session = ort.InferenceSession(str(paths.generator), session_options(THREADS),
                                       providers=["CPUExecutionProvider"])
        found[name] = lambda feeds, s=session: s.run([split.AUDIO], feeds)[0]
    core = ov.Core()
    model = core.read_model(str(fp32.generator))
    for hint in ("f32", "bf16"):
        compiled = core.compile_model(model, "CPU", {
            "INFERENCE_PRECISION_HINT": hint, "INFERENCE_NUM_THREADS": THREADS,
            "PERFORMANCE_HINT": "LATENCY"})
        request = compiled.create_infer_request()
        found[f"openvino fp32, {hint} hint"] = \
            lambda feeds, r=request: next(iter(r.infer(feeds).values()))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    load_start = [round(x, 2) for x in os.getloadavg()]
    synth = Synthesizer(warm_up=False, cache=False)
    int8 = split.split_paths("int8")
    fp32 = split.split_model(assets.model_path("fp32"))
    front = split.SplitSession(int8, threads=THREADS)
    voice = synth.resolve_voice("af_heart")
    backends = runners(int8, fp32)
    rows = []
    for case, text in TEXTS.items():
        tokens, style = synth.model_inputs(synth.phonemize(text, "en-us"), voice)
        outputs = front.front(tokens, style, 1.0)
        feeds = {name: outputs[name] for name in split.BOUNDARY}
        times: dict[str, list[float]] = {name: [] for name in backends}
        audio = {name: np.asarray(run(feeds), np.float32).ravel()
                 for name, run in backends.items()}  # also the warm-up run
        for _ in range(args.repeats):
            for name, run in backends.items():
                started = time.perf_counter()
                run(feeds)
                times[name].append((time.perf_counter() - started) * 1000)
        reference = audio["onnxruntime int8"]
        base = statistics.median(times["onnxruntime int8"])
        for name in backends:
            median = statistics.median(times[name])
            rows.append({"case": case, "frames": int(feeds[split.F0].shape[-1]),
                         "backend": name, "median_ms": median, "min_ms": min(times[name]),
                         "vs_ort_int8": median / base,
                         "pesq_vs_ort_int8": (quality.pesq_wb(reference, audio[name])
                                              if name != "onnxruntime int8" else None)})
            print(rows[-1], flush=True)
    report = {"cpu_flags": cpu_flags(), "threads": THREADS, "repeats": args.repeats,
              "load_start": load_start, "load_end": [round(x, 2) for x in os.getloadavg()],
              "rows": rows}
    lines = ["# OpenVINO vs ONNX Runtime on the vocoder", "",
             f"Generator stage, {THREADS} threads, median of {args.repeats} interleaved runs; "
             f"CPU flags {', '.join(report['cpu_flags']) or 'none of avx512_bf16/amx'}; load "
             f"average {report['load_start']} → {report['load_end']}.", "",
             "| case | frames | backend | median ms | × ORT int8 | PESQ-WB vs ORT int8 |",
             "|---|---:|---|---:|---:|---:|"]
    for row in rows:
        pesq = "–" if row["pesq_vs_ort_int8"] is None else f"{row['pesq_vs_ort_int8']:.2f}"
        lines.append(f"| {row['case']} | {row['frames']} | {row['backend']} | "
                     f"{row['median_ms']:.0f} | {row['vs_ort_int8']:.2f} | {pesq} |")
    write_results(args.out, "openvino_generator", report, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
