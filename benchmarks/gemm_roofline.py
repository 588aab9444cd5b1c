"""How far the first chunk can go on this CPU: its integer-GEMM work against ONNX Runtime's GEMM.

The rule it measures: whatever the graph around them, the vocoder's 50 convolutions are integer
matrix products of a fixed size, and a first chunk cannot be made faster than MLAS computes
them. For a held-out paragraph's first chunk this

* counts the multiply-adds of every ``ConvInteger`` of the released generator (its output
  lengths read from one run of the graph on the chunk's real inputs),
* times MLAS's ``uint8 x int8`` ``MatMulInteger`` alone on each of those GEMM shapes (and on a
  2048-cube, its best case), on the engine's thread count, the shapes taking turns (the fastest
  of nine rounds each),
* and sets the GEMM floor (multiply-adds at the measured rates) beside the chunk's measured
  stages (:func:`kokoro_lab.profiling.profile_ops` with this machine's tuning).

It writes ``benchmarks/results/gemm_roofline.{json,md}``:

    flock /tmp/kokoro-timing.lock .venv/bin/python benchmarks/gemm_roofline.py
"""

from __future__ import annotations

import argparse
import os
import time
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from kokoro_lab.engine import Synthesizer
from kokoro_lab.engine.chunking import ChunkPlanner
from kokoro_lab.engine.metrics import SAMPLE_RATE
from kokoro_lab.engine.split import F0, FRAME_SAMPLES
from kokoro_lab.engine.tuning import cpu_fingerprint
from kokoro_lab.lab.results import write_results
from kokoro_lab.lab.texts import HOLDOUT
from kokoro_lab.profiling import profile_ops

RESULTS = Path(__file__).parent / "results"
BEST_CASE = (2048, 2048, 2048)  # (rows, K, N): MLAS's rate with nothing in its way


def first_chunk_feeds(synth: Synthesizer, text: str):
    """The released generator's graph and its feeds for ``text``'s first chunk, with the
    chunk's raw audio length in seconds."""
    request = synth.request(text, "af_heart", 1.0)
    engine = synth.decoder_for(request.decoder, request.precision, request.provider)
    chunk = ChunkPlanner(text, lambda piece: synth.phonemize(piece, request.lang)).next_chunk(1)
    tokens, style = synth.model_inputs(chunk.phonemes, request.voice)
    front = engine.front({"tokens": tokens, "style": style,
                          "speed": np.array([1.0], np.float32)})
    frames = np.arange(engine.first_frame(tokens, front), int(front[F0].shape[-1]))
    return (engine.sessions[-1].graph, engine.generator_feeds(front, frames),
            len(frames) * FRAME_SAMPLES / SAMPLE_RATE, engine.threads)


def gemm_shapes(graph: str, feeds: dict, threads: int) -> Counter:
    """``(rows, K, N)`` of every ``ConvInteger`` as a GEMM, counted, from one run of the graph
    with the convolutions' outputs exposed."""
    model = onnx.load(graph)
    weights = {t.name: t for t in model.graph.initializer}
    convs = [n for n in model.graph.node if n.op_type == "ConvInteger"]
    model.graph.output.extend(helper.make_tensor_value_info(n.output[0], TensorProto.INT32, None)
                              for n in convs)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(model.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    outputs = session.run([n.output[0] for n in convs], feeds)
    shapes: Counter = Counter()
    for node, out in zip(convs, outputs, strict=True):
        m, c, k = numpy_helper.to_array(weights[node.input[1]]).shape
        shapes[(int(out.shape[-1]), int(c * k), int(m))] += 1
    return shapes


def gemm_session(rows: int, k: int, n: int, threads: int):
    """MLAS's ``uint8 x int8`` GEMM on these sizes, as a session and its feed."""
    rng = np.random.default_rng(0)
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "b", "zero"], ["y"])], "gemm",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, [rows, k])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [rows, n])],
        [numpy_helper.from_array(rng.integers(-64, 65, (k, n)).astype(np.int8), "b"),
         numpy_helper.from_array(np.array(128, np.uint8), "zero")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    # The sessions take turns: idle pool threads of the others must not spin on the cores.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(model.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    return session, {"a": rng.integers(0, 256, (rows, k)).astype(np.uint8)}


def fastest_seconds(shapes: list[tuple[int, int, int]], threads: int,
                    rounds: int = 9) -> list[float]:
    """Each GEMM's fastest run, the shapes taking turns round after round: a shared machine's
    speed drifts, and interleaved, every shape sees the same drift."""
    sessions = [gemm_session(*shape, threads) for shape in shapes]
    best = [float("inf")] * len(shapes)
    for _ in range(rounds):
        for i, (session, feed) in enumerate(sessions):
            started = time.perf_counter()
            session.run(None, feed)
            best[i] = min(best[i], time.perf_counter() - started)
    return best


def markdown(report: dict) -> str:
    f = report["figures"]
    lines = [
        "# The first chunk against the integer-GEMM floor", "",
        f"Machine: {report['cpu']['model']} ({report['cpu']['cores']} cores; "
        f"{', '.join(report['cpu']['features']) or 'no VNNI/AMX'}), load average "
        f"{report['load'][0]:.2f}. First chunk of the held-out paragraph: "
        f"{report['chunk_text']!r}, {report['audio_s']:.2f} s of raw audio. Tuning: "
        f"{report['tuning']}. Regenerate: `.venv/bin/python benchmarks/gemm_roofline.py`.", "",
        "| figure | value |", "|---|---:|",
        f"| generator multiply-adds in GEMMs (G) | {f['gmacs']:.1f} |",
        f"| … per second of raw audio (G) | {f['gmacs_per_audio_s']:.1f} |",
        f"| MLAS u8×s8 on these shapes, alone (GMAC/s) | {f['mlas_rate']:.0f} |",
        f"| MLAS u8×s8 on a 2048-cube, its best case (GMAC/s) | {f['mlas_best_rate']:.0f} |",
        f"| **GEMM floor for this chunk (ms)** | **{f['floor_ms']:.0f}** |",
        f"| GEMM floor at the best-case rate (ms) | {f['best_floor_ms']:.0f} |",
        f"| measured: GEMM ops in the tuned generator (ms) | {f['gemm_ms']:.0f} |",
        f"| measured: front stage (ms) | {f['front_ms']:.0f} |",
        f"| measured: generator stage (ms) | {f['generator_ms']:.0f} |",
        f"| measured: first chunk, text to hand-off (ms) | {f['chunk_ms']:.0f} |",
        f"| **front + GEMM floor (ms)** | **{f['front_ms'] + f['floor_ms']:.0f}** |", "",
        "| GEMM (rows × K × N) | nodes | G multiply-adds | ms alone | GMAC/s |",
        "|---|---:|---:|---:|---:|"]
    for row in report["shapes"]:
        lines.append(f"| {row['rows']} × {row['k']} × {row['n']} | {row['nodes']} | "
                     f"{row['gmacs']:.2f} | {row['ms']:.1f} | {row['rate']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    graph, feeds, audio_s, threads = first_chunk_feeds(
        Synthesizer(tuning="off", cache=False), HOLDOUT)
    shapes = sorted(gemm_shapes(graph, feeds, threads).items())
    *seconds, best_seconds = fastest_seconds([shape for shape, _ in shapes] + [BEST_CASE],
                                             threads)
    rows = []
    for ((length, k, n), nodes), took in zip(shapes, seconds, strict=True):
        macs = length * k * n
        rows.append({"rows": length, "k": k, "n": n, "nodes": nodes, "gmacs": nodes * macs / 1e9,
                     "ms": took * 1000, "rate": macs / took / 1e9})
    gmacs = sum(r["gmacs"] for r in rows)
    floor_ms = sum(r["nodes"] * r["ms"] for r in rows)
    best_rate = np.prod(BEST_CASE) / best_seconds / 1e9
    tuned = Synthesizer(cache=False)
    ops = profile_ops(HOLDOUT, synth=tuned)
    gemm_ms = sum(r.ms for r in ops.rows if r.stage == "generator"
                  and r.op_type in ("ConvInteger", "MatMulInteger", "MatMulIntegerToFloat"))
    report = {
        "cpu": cpu_fingerprint(), "load": list(os.getloadavg()), "chunk_text": ops.chunk_text,
        "audio_s": audio_s, "tuning": tuned.tuning.name, "threads": threads, "shapes": rows,
        "figures": {"gmacs": gmacs, "gmacs_per_audio_s": gmacs / audio_s,
                    "mlas_rate": gmacs / floor_ms * 1000, "mlas_best_rate": best_rate,
                    "floor_ms": floor_ms, "best_floor_ms": gmacs / best_rate * 1000,
                    "gemm_ms": gemm_ms, "front_ms": ops.stages["front"],
                    "generator_ms": ops.stages["generator"],
                    "chunk_ms": sum(ops.stages.values())}}
    write_results(args.out, "gemm_roofline", report, markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
