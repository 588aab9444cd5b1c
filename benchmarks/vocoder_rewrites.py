"""The vocoder's last big ops, rewritten and judged by ear: does either make it faster here?

After the ``matmul-fused`` variant, ONNX Runtime's profiler puts ~25 % of the generator in
``Sin`` (the Snake activations) and ~10 % in its one ``STFT`` (the harmonic source), both run
on one thread. :mod:`kokoro_lab.lab.rewrites` rewrites each; this script times the generator
stage with each rewrite on top of ``matmul-fused``, and the engine's ``matmul-fused-poly``
(the Snake polynomial with its constants folded in) and ``matmul-fused-poly-stft`` (that, with
the ``STFT`` as a ``Conv`` and the DC and Nyquist phase as the model was trained, see
:mod:`kokoro_lab.engine.graphs.source`), interleaved run by run, 2 threads, no
spinning, and judges it as ``kokoro-lab tune`` judges a variant: PESQ-WB of each held-out
(text, voice) chunk against the released graph (bar: mean 4.0, min 3.6) and DNSMOS OVRL of the
joined chunks (bar: −0.02). It also says why the plain ``STFT`` rewrite fails: in how many
bins its phase differs from ORT's, and how many of those are the DC and Nyquist bins, whose
imaginary part is rounding noise; and it runs the released graph with that noise set to zero,
read as the export reads it and as PyTorch does.

    flock /tmp/kokoro-timing.lock .venv/bin/python benchmarks/vocoder_rewrites.py

writes ``benchmarks/results/vocoder_rewrites.{json,md}``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from kokoro_lab.engine import Synthesizer, Tuning, assets
from kokoro_lab.engine.graphs.common import Graph
from kokoro_lab.engine.graphs.source import real_bins
from kokoro_lab.engine.metrics import SAMPLE_RATE
from kokoro_lab.engine.sessions import create_session, stage_path
from kokoro_lab.engine.split import AUDIO, F0
from kokoro_lab.lab.results import write_results
from kokoro_lab.lab.rewrites import edge_bins_zeroed, snake_polynomial, stft_as_conv
from kokoro_lab.profiling.tune import (
    DNSMOS_SLACK,
    PESQ_MEAN_BAR,
    PESQ_MIN_BAR,
    TEXTS,
    VOICES,
    certify,
)

RESULTS = Path(__file__).parent / "results"
THREADS = 2
FAINT = 1e-5  # a bin this faint has a phase made of rounding error


def candidates(fused: Path, model: onnx.ModelProto, folder: Path) -> dict[str, Path]:
    """The graphs to compare: the released generator, ``matmul-fused`` (``fused``, whose graph
    is ``model``), the engine's ``matmul-fused-poly`` and ``matmul-fused-poly-stft``, the
    rewrites on top of ``matmul-fused`` and the released graph with its edge bins zeroed,
    saved in ``folder``."""
    graphs = {"released": stage_path(assets.model_path("int8"), "generator"),
              "matmul-fused": fused,
              **{name: stage_path(assets.model_path("int8"), "generator", name)
                 for name in ("matmul-fused-poly", "matmul-fused-poly-stft")}}
    for name, rewrite in (("fused + stft-as-conv", stft_as_conv),
                          ("fused + snake-polynomial(4)", lambda m: snake_polynomial(m, 4)),
                          ("fused + snake-polynomial(3)", lambda m: snake_polynomial(m, 3)),
                          ("fused + snake-polynomial(2)", lambda m: snake_polynomial(m, 2))):
        graphs[name] = folder / (name.replace(" ", "").replace("+", "_") + ".onnx")
        onnx.save(rewrite(model), str(graphs[name]))
    released = onnx.load(str(graphs["released"]))
    for name, as_trained in (("released, edge bins zeroed (export's -pi)", False),
                             ("released, edge bins zeroed (torch's +pi)", True)):
        graphs[name] = folder / f"released_edges_{as_trained}.onnx"
        onnx.save(edge_bins_zeroed(released, as_trained), str(graphs[name]))
    return graphs


def faint_bins(model: onnx.ModelProto, feeds: dict, folder: Path) -> dict:
    """The source's STFT by ONNX Runtime and by the Conv rewrite, side by side in one graph:
    how far apart the values are, and in how many bins the phase differs by more than 0.1 rad."""
    stft = next(n for n in model.graph.node if n.op_type == "STFT")
    both = stft_as_conv(model)  # the rewrite makes the STFT's output; the op itself is added
    reference = onnx.NodeProto()
    reference.CopyFrom(stft)
    reference.name, reference.output[0] = "reference", "reference_stft"
    both.graph.node.append(reference)
    kept = {t.name for t in both.graph.initializer}
    both.graph.initializer.extend(i for i in model.graph.initializer
                                  if i.name in stft.input and i.name not in kept)
    for name in ("reference_stft", stft.output[0]):
        both.graph.output.append(helper.make_empty_tensor_value_info(name))
    path = folder / "stft_side_by_side.onnx"
    onnx.save(both, str(path))
    session, _ = create_session(path, "cpu", THREADS, spinning=False)
    op, conv = session.run(["reference_stft", stft.output[0]], feeds)
    magnitude = np.hypot(op[..., 0], op[..., 1])
    phase_gap = np.abs(np.angle(np.exp(1j * (np.arctan2(op[..., 1], op[..., 0])
                                             - np.arctan2(conv[..., 1], conv[..., 0])))))
    moved = phase_gap > 0.1
    window_size = Graph(model.graph).array(stft.input[2]).size
    return {"bins": int(magnitude.size), "max_abs_difference": float(np.abs(op - conv).max()),
            "faint_bins": int((magnitude < FAINT).sum()), "phase_moved_bins": int(moved.sum()),
            "edge_bins_moved": int(moved[..., real_bins(window_size)].sum()),
            "loudest_moved_bin": float(magnitude[moved].max()) if moved.any() else 0.0}


def chunk_feeds(synth: Synthesizer) -> dict[tuple[str, str], dict]:
    """The generator's inputs for every held-out (text, voice), as the engine makes them."""
    decoder = synth.decoder_for()
    feeds = {}
    for voice in VOICES:
        for text in TEXTS:
            tokens, style = synth.model_inputs(synth.phonemize(text, "en-us"),
                                               synth.resolve_voice(voice))
            front = decoder.front({"tokens": tokens, "style": style,
                                   "speed": np.array([1.0], np.float32)})
            frames = np.arange(decoder.first_frame(tokens, front), front[F0].shape[-1])
            feeds[(text, voice)] = decoder.generator_feeds(front, frames)
    return feeds


def judge(made: dict, reference: dict) -> dict:
    """``kokoro-lab tune``'s certificate (:func:`kokoro_lab.profiling.tune.certify`)."""
    found = certify(made, reference)
    return {"pesq_mean": found.pesq_mean, "pesq_min": found.pesq_min,
            "dnsmos_delta": float(found.dnsmos_delta), "passed": not found.failures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    load_start = [round(x, 2) for x in os.getloadavg()]
    synth = Synthesizer(tuning=Tuning(variant="matmul-fused", spinning=False), cache=False,
                        warm_up=False)
    feeds = chunk_feeds(synth)
    with tempfile.TemporaryDirectory() as folder:
        fused = Path(synth.decoder_for().last.graph)
        model = onnx.load(str(fused))
        graphs = candidates(fused, model, Path(folder))
        sessions = {name: create_session(path, "cpu", THREADS, spinning=False)[0]
                    for name, path in graphs.items()}
        faint = faint_bins(model, next(iter(feeds.values())), Path(folder))
    audio = {name: {key: session.run([AUDIO], f)[0].ravel() for key, f in feeds.items()}
             for name, session in sessions.items()}  # also the warm-up runs
    timed = [key for key in feeds if key[1] == VOICES[0]]
    seconds = sum(audio["released"][key].size for key in timed) / SAMPLE_RATE
    times: dict[str, list[float]] = {name: [] for name in sessions}
    for _ in range(args.repeats):  # interleaved: every graph feels the same neighbours
        for name, session in sessions.items():
            started = time.perf_counter()
            for key in timed:
                session.run([AUDIO], feeds[key])
            times[name].append((time.perf_counter() - started) * 1000 / seconds)
    fused_ms = statistics.median(times["matmul-fused"])
    rows = []
    for name in sessions:
        ms = statistics.median(times[name])
        verdict = judge(audio[name], audio["released"]) if name != "released" else {}
        rows.append({"graph": name, "ms_per_audio_s": ms, "vs_fused": fused_ms / ms,
                     **verdict})
        print(rows[-1], flush=True)
    report = {"threads": THREADS, "repeats": args.repeats, "audio_s_timed": seconds,
              "load_start": load_start, "load_end": [round(x, 2) for x in os.getloadavg()],
              "stft": faint, "rows": rows}
    write_results(args.out, "vocoder_rewrites", report, markdown(report))


def markdown(report: dict) -> str:
    stft = report["stft"]
    lines = ["# The vocoder's last big ops, rewritten", "",
             "Regenerate: `flock /tmp/kokoro-timing.lock .venv/bin/python "
             "benchmarks/vocoder_rewrites.py`. Generator stage only, "
             f"{report['threads']} threads, no spinning, median of {report['repeats']} "
             f"interleaved passes over {report['audio_s_timed']:.1f} s of held-out audio; load "
             f"average {report['load_start']} → {report['load_end']}. Judged as `kokoro-lab "
             "tune` judges: PESQ-WB per held-out chunk (3 texts × 3 voices) against the released "
             f"graph, bar mean {PESQ_MEAN_BAR} / min {PESQ_MIN_BAR}; DNSMOS OVRL of the joined "
             f"chunks, bar −{DNSMOS_SLACK}.", "",
             "| graph | generator ms per s of audio | speed vs matmul-fused | PESQ-WB mean (min) "
             "| DNSMOS Δ | passes |", "|---|---:|---:|---:|---:|---|"]
    for row in report["rows"]:
        judged = "pesq_mean" in row
        pesq = f"{row['pesq_mean']:.2f} ({row['pesq_min']:.2f})" if judged else "–"
        delta = f"{row['dnsmos_delta']:+.3f}" if judged else "–"
        passed = ("yes" if row["passed"] else "**no**") if judged else "the reference"
        lines.append(f"| {row['graph']} | {row['ms_per_audio_s']:.0f} | "
                     f"{row['vs_fused']:.2f}x | {pesq} | {delta} | {passed} |")
    lines += ["", f"The source's STFT, ONNX Runtime's op against the Conv rewrite (one chunk): "
              f"largest difference {stft['max_abs_difference']:.1e}; "
              f"{stft['faint_bins']:,} of {stft['bins']:,} bins are fainter than {FAINT:g}, and "
              f"{stft['phase_moved_bins']:,} bins changed phase by more than 0.1 rad, "
              f"{stft['edge_bins_moved']:,} of them DC or Nyquist bins (no imaginary part but "
              "rounding noise, whose sign the export's atan2 turns into +pi or -pi), the "
              f"loudest at magnitude {stft['loudest_moved_bin']:.1e}. The vocoder reads the "
              "phase of every bin, so that noise is an input: `matmul-fused-poly-stft` zeroes "
              "it and reads the phase as PyTorch does."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
