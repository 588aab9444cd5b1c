"""``kokoro-lab bench``: kokoro_lab against kokoro-onnx, same model, voice and texts, one process.

The rule: speed claims are ratios measured in the same run. Each repeat runs every system on
every text, alternating the order between repeats so neither side always gets the warmer cache.
Both sides are timed from the call to each chunk's arrival and fed to the same simulated
player (:func:`kokoro_lab.engine.metrics.simulate_playback`), so "time to first audio" means the
same for both: the first audible sample (|x| > 0.02) of the first chunk, played when it arrives.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .bench_texts import LONG, PARAGRAPH
from .engine import Synthesizer, assets
from .engine.metrics import SAMPLE_RATE, simulate_playback

VOICE = "af_heart"
QUICK_PARAGRAPH = "Hello there, this is a quick check. It has two sentences."
QUICK_LONG = "A short text for a fast run. " * 3


@dataclass
class Run:
    """One system speaking one text once."""

    system: str
    text: str
    ready_ms: list[float]
    audio: list[np.ndarray] = field(repr=False)

    def figures(self) -> dict:
        playback = simulate_playback(self.ready_ms, self.audio)
        audio_s = sum(len(a) for a in self.audio) / SAMPLE_RATE
        return {
            "first_audio_ms": playback.first_audio_ms,
            "total_ms": playback.total_ms,
            "rtf": playback.total_ms / 1000 / audio_s,
            "audio_s": audio_s,
            "chunks": len(self.audio),
            "underrun_ms": playback.underrun_ms,
            "underruns": playback.underruns,
        }


def run_kokoro_onnx_stream(kokoro, text: str) -> Run:
    """kokoro-onnx ``create_stream`` as a new user would call it."""

    async def consume() -> Run:
        start = time.perf_counter()
        ready, audio = [], []
        async for samples, _ in kokoro.create_stream(text, VOICE, speed=1.0, lang="en-us"):
            ready.append((time.perf_counter() - start) * 1000)
            audio.append(np.asarray(samples, dtype=np.float32))
        return Run("kokoro-onnx create_stream", text, ready, audio)

    return asyncio.run(consume())


def run_kokoro_onnx_create(kokoro, text: str) -> Run:
    start = time.perf_counter()
    samples, _ = kokoro.create(text, VOICE, speed=1.0, lang="en-us")
    ready = (time.perf_counter() - start) * 1000
    return Run("kokoro-onnx create", text, [ready], [np.asarray(samples, dtype=np.float32)])


def run_kokoro_lab(synth: Synthesizer, text: str) -> Run:
    start = time.perf_counter()
    ready, audio = [], []
    for chunk in synth.stream(text, voice=VOICE, speed=1.0):
        ready.append((chunk.finished - start) * 1000)
        audio.append(chunk.audio)
    return Run("kokoro_lab stream", text, ready, audio)


@dataclass
class BenchReport:
    machine: dict
    rows: list[dict]
    ratios: dict
    targets: dict

    def as_dict(self) -> dict:
        return {"machine": self.machine, "rows": self.rows, "ratios": self.ratios,
                "targets": self.targets}

    def markdown(self) -> str:
        lines = [
            f"# kokoro-lab bench ({self.machine['date']})",
            "",
            f"Machine: {self.machine['cpu']} · {self.machine['cores']} cores · "
            f"onnxruntime {self.machine['onnxruntime']} · kokoro-onnx {self.machine['kokoro_onnx']}"
            f" · int8 model, voice {VOICE}, CPU",
            "",
            "| text | system | first audio ms | total ms | RTF | audio s | chunks | underrun ms |",
            "|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for row in self.rows:
            lines.append(
                f"| {row['text']} | {row['system']} | {row['first_audio_ms']:.0f} | "
                f"{row['total_ms']:.0f} | {row['rtf']:.2f} | {row['audio_s']:.1f} | "
                f"{row['chunks']:.0f} | {row['underrun_ms']:.0f} |"
            )
        lines += ["", "Medians over repeats. Ratios:", ""]
        lines += [f"- {name}: **{value:.2f}**" for name, value in self.ratios.items()]
        lines += ["", "Targets:", ""]
        lines += [f"- {name}: {'met' if ok else 'NOT met'}" for name, ok in self.targets.items()]
        return "\n".join(lines) + "\n"


def machine_info() -> dict:
    from importlib.metadata import version

    import kokoro_onnx  # noqa: F401  (imported for its version)
    import onnxruntime

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "kokoro_onnx": version("kokoro-onnx"),
    }


def log_to_run_log(rows: list[dict], quick: bool) -> None:
    """Every bench run goes into the persistent run log beside the profile runs."""
    from .profiling.runlog import new_batch, record

    batch = new_batch()
    for row in rows:
        figures = {k: v for k, v in row.items() if isinstance(v, (int, float))}
        record("bench-quick" if quick else "bench", "cpu", "int8", figures,
               model=f"{row['system']} · {row['text']}", batch=batch)


def run_benchmark(out_dir: Path, repeats: int = 2, quick: bool = False) -> BenchReport:
    """Run the comparison and write ``bench.json`` and ``bench.md`` to ``out_dir``."""
    from kokoro_onnx import Kokoro

    texts = {"paragraph": QUICK_PARAGRAPH if quick else PARAGRAPH,
             "300 words": QUICK_LONG if quick else LONG}
    kokoro = Kokoro(str(assets.model_path("int8")), str(assets.voices_path()))
    synth = Synthesizer()
    kokoro.create("Warm up.", VOICE)  # both sides start warm
    plan = [
        ("paragraph", "kokoro-onnx create_stream", lambda t: run_kokoro_onnx_stream(kokoro, t)),
        ("paragraph", "kokoro_lab stream", lambda t: run_kokoro_lab(synth, t)),
        ("300 words", "kokoro-onnx create", lambda t: run_kokoro_onnx_create(kokoro, t)),
        ("300 words", "kokoro_lab stream", lambda t: run_kokoro_lab(synth, t)),
    ]
    measured: dict[tuple[str, str], list[dict]] = {}
    for repeat in range(repeats):
        order = plan if repeat % 2 == 0 else [plan[1], plan[0], plan[3], plan[2]]
        for text_name, system, run in order:
            figures = run(texts[text_name]).figures()
            measured.setdefault((text_name, system), []).append(figures)
            print(f"[{repeat + 1}/{repeats}] {text_name:<10} {system:<26} "
                  f"first audio {figures['first_audio_ms']:8.0f} ms  total "
                  f"{figures['total_ms']:8.0f} ms  underrun {figures['underrun_ms']:6.0f} ms",
                  flush=True)
    rows = [
        {"text": text_name, "system": system, "repeats": len(runs),
         **{key: statistics.median(r[key] for r in runs) for key in runs[0]}}
        for (text_name, system), runs in measured.items()
    ]

    def median(text_name: str, system: str, key: str) -> float:
        return next(r[key] for r in rows if r["text"] == text_name and r["system"] == system)

    ratios = {
        "first audio, kokoro-onnx create_stream / kokoro_lab (paragraph)":
            median("paragraph", "kokoro-onnx create_stream", "first_audio_ms")
            / median("paragraph", "kokoro_lab stream", "first_audio_ms"),
        "total time, kokoro_lab / kokoro-onnx create (300 words)":
            median("300 words", "kokoro_lab stream", "total_ms")
            / median("300 words", "kokoro-onnx create", "total_ms"),
    }
    worst_underrun = max(r["underrun_ms"] for r in measured[("300 words", "kokoro_lab stream")])
    targets = {
        "first audio ≥ 12× better than create_stream": ratios[
            "first audio, kokoro-onnx create_stream / kokoro_lab (paragraph)"] >= 12,
        "total ≤ 0.95× create (300 words)": ratios[
            "total time, kokoro_lab / kokoro-onnx create (300 words)"] <= 0.95,
        "zero underrun after first audio (300 words, every repeat)": worst_underrun == 0,
    }
    report = BenchReport(machine_info() | {"quick": quick, "repeats": repeats}, rows, ratios,
                         targets)
    log_to_run_log(rows, quick)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = "bench-quick" if quick else "bench"
    (out_dir / f"{stem}.json").write_text(json.dumps(report.as_dict(), indent=2) + "\n")
    (out_dir / f"{stem}.md").write_text(report.markdown())
    return report
