"""Benchmark: windowed vocoder decoding against unsplit chunked synthesis and kokoro-onnx.

Runs one 3-sentence paragraph, chunked as the streaming decoder is meant to be used (the first
clause, then whole sentences), through:

* ``kokoro_onnx``: ``Kokoro.create_stream`` on the whole paragraph (the baseline of issue 6);
* ``unsplit``: the full graph once per chunk (what the engine does today);
* ``windowed-<stats>``: the front stage once per chunk, then the generator in windows, with each
  way of treating the AdaIN time statistics (``local``, ``cumulative``, and ``cumulative`` seeded
  with a prior calibrated on three *other* sentences of the same voice);
* ``hybrid``: windowed first chunk, unsplit later chunks (later chunks have playback slack).

For each it records time to first audio (first |x| > 0.02 sample, played as pieces become
ready), simulated underruns and total time; for the windowed modes also the per-window cost,
the log-mel distance of every chunk to its unsplit rendering, and clicks at window joins.
Optionally (``--asr``) the word error rate of each mode's audio by the independent ASR.

    python benchmarks/streaming_decoder.py [--threads 2] [--asr] [--out PATH]

Results go to ``benchmarks/results/streaming_decoder.json``. The machine's load average is
recorded with them: on a shared CPU every timing scales with it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from kokoro_onnx import Kokoro
from kokoro_onnx.tokenizer import Tokenizer

from kokoro_lab import assets
from kokoro_lab.engine import split
from kokoro_lab.engine.metrics import SAMPLE_RATE, simulate_playback
from kokoro_lab.lab import windowed
from kokoro_lab.quality import join_discontinuities, log_mel_distance

PARAGRAPH = (
    "The morning train was late again, so Maria decided to walk to the office. "
    "Along the way she stopped at a small bakery and bought a warm croissant. "
    "By nine o'clock she was at her desk, ready for the long meeting."
)
CALIBRATION = (
    "She sells sea shells by the sea shore, every single day.",
    "I would like a cup of coffee and a slice of cake, please.",
    "Yesterday we walked along the river until the sun went down.",
)
VOICE = "af_heart"
RESULTS = Path(__file__).parent / "results" / "streaming_decoder.json"


def plan_chunks(text: str) -> list[str]:
    """The first clause alone, then whole sentences (the rest of the first one, then each)."""
    sentences = re.findall(r"[^.!?]+[.!?]", text)
    first, _, rest = sentences[0].partition(",")
    chunks = [first.strip() + ","]
    if rest.strip():
        chunks.append(rest.strip())
    return chunks + [s.strip() for s in sentences[1:]]


class Inputs:
    """Token and style arrays for each chunk, shared by every mode."""

    def __init__(self, voice: str):
        self.tokenizer = Tokenizer()
        self.voices = np.load(assets.voices_path())
        self.voice = voice

    def __call__(self, text: str) -> tuple[np.ndarray, np.ndarray, float]:
        ids = self.tokenizer.tokenize(self.tokenizer.phonemize(text, "en-us"))
        tokens = np.array([[0, *ids, 0]], dtype=np.int64)
        return tokens, self.voices[self.voice][len(ids)], 1.0


def run_kokoro_onnx(model: Path, text: str, threads: int) -> dict:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    kokoro = Kokoro.from_session(session, str(assets.voices_path()))
    kokoro.create("Hello.", voice=VOICE)  # warm, like every other mode

    async def consume() -> tuple[list[float], list[np.ndarray]]:
        ready, pieces = [], []
        started = time.perf_counter()
        async for audio, _ in kokoro.create_stream(text, voice=VOICE):
            ready.append((time.perf_counter() - started) * 1000)
            pieces.append(np.asarray(audio, np.float32))
        return ready, pieces

    cpu = time.process_time()
    ready, pieces = asyncio.run(consume())
    return summarise("kokoro_onnx", ready, pieces, [(time.process_time() - cpu) * 1000])


def summarise(name: str, ready_ms: list[float], pieces: list[np.ndarray],
              cpu_ms: list[float] | None = None, **extra) -> dict:
    """Playback figures for one mode. ``cpu_ms`` is this process's CPU time at each piece: on a
    shared machine wall times swing with the load, CPU time measures the work itself."""
    playback = simulate_playback(ready_ms, pieces)
    if cpu_ms:
        extra.update(first_piece_cpu_ms=cpu_ms[0], total_cpu_ms=cpu_ms[-1])
    audio_s = sum(len(p) for p in pieces) / SAMPLE_RATE
    print(f"{name:>26}: first audio {playback.first_audio_ms:7.0f} ms, total "
          f"{ready_ms[-1]:7.0f} ms, underrun {playback.underrun_ms:6.0f} ms, audio {audio_s:.2f} s"
          f", cpu first/total {extra.get('first_piece_cpu_ms', 0):.0f}/"
          f"{extra.get('total_cpu_ms', 0):.0f} ms", flush=True)
    return {"mode": name, "first_audio_ms": playback.first_audio_ms,
            "first_piece_ms": ready_ms[0], "total_ms": ready_ms[-1],
            "underrun_ms": playback.underrun_ms, "underruns": playback.underruns,
            "audio_s": audio_s, "pieces": len(pieces), **extra}


def run_unsplit(decoder: windowed.WindowedDecoder, chunks: list[tuple]) -> tuple[dict, list]:
    """The full graph per chunk (the chained stages, which are bit-exact with it)."""
    ready, pieces, renders, cpu = [], [], [], []
    started, cpu_started = time.perf_counter(), time.process_time()
    for tokens, style, speed in chunks:
        audio = decoder.stages(tokens, style, speed)
        ready.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - cpu_started) * 1000)
        pieces.append(audio)
        renders.append(audio)
    return summarise("unsplit", ready, pieces, cpu), renders


def run_windowed(name: str, decoder: windowed.WindowedDecoder, chunks: list[tuple],
                 unsplit: list[np.ndarray], windowed_chunks: int | None = None,
                 ) -> tuple[dict, list]:
    """Windowed decoding of the first ``windowed_chunks`` chunks (all by default), unsplit for
    the rest; distances are measured on the windowed chunks against their unsplit renderings."""
    ready, pieces, per_chunk, renders, cpu = [], [], [], [], []
    started, cpu_started = time.perf_counter(), time.process_time()
    count = len(chunks) if windowed_chunks is None else windowed_chunks
    for index, (tokens, style, speed) in enumerate(chunks):
        if index >= count:
            pieces.append(decoder.stages(tokens, style, speed))
            ready.append((time.perf_counter() - started) * 1000)
            cpu.append((time.process_time() - cpu_started) * 1000)
            renders.append(pieces[-1])
            continue
        chunk_pieces = []
        for piece in decoder.stream(tokens, style, speed):
            ready.append((time.perf_counter() - started) * 1000)
            cpu.append((time.process_time() - cpu_started) * 1000)
            chunk_pieces.append(piece)
        pieces += chunk_pieces
        stats = decoder.last_stats
        audio = np.concatenate(chunk_pieces)
        renders.append(audio)
        begin = stats.windows[0].first * split.FRAME_SAMPLES
        reference = unsplit[index][begin:begin + audio.size]
        frames = [w.frames for w in stats.windows]
        per_chunk.append({
            "chunk": index,
            "frames": stats.frames,
            "skipped_pad_frames": stats.skipped_frames,
            "windows": len(stats.windows),
            "decoded_frames": int(sum(frames)),
            "front_ms": stats.front_s * 1000,
            "window_ms": [s * 1000 for s in stats.window_s],
            "ms_per_decoded_frame": 1000 * sum(stats.window_s) / sum(frames),
            "log_mel_db": log_mel_distance(audio, reference),
            "join_clicks": len(join_discontinuities(chunk_pieces)),
        })
    distances = [c["log_mel_db"] for c in per_chunk]
    return summarise(name, ready, pieces, cpu, chunks=per_chunk,
                     log_mel_db_mean=float(np.mean(distances)),
                     log_mel_db_max=float(np.max(distances)),
                     join_clicks=int(sum(c["join_clicks"] for c in per_chunk))), renders


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", default="int8")
    parser.add_argument("--asr", action="store_true", help="also score each mode with the ASR")
    parser.add_argument("--skip-kokoro-onnx", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    inputs = Inputs(VOICE)
    texts = plan_chunks(PARAGRAPH)
    chunks = [inputs(t) for t in texts]
    settings = dict(first_window=16, window=80, context=24, lookahead=8)
    local = windowed.WindowedDecoder(precision=args.precision, threads=args.threads,
                                     stats="local", **settings)
    for tokens, style, speed in chunks[:1]:  # warm both graphs
        local.stages(tokens, style, speed)
        list(local.stream(tokens, style, speed))

    report: dict = {
        "paragraph": PARAGRAPH, "chunks": texts, "voice": VOICE, "precision": args.precision,
        "threads": args.threads, "settings": settings, "machine": platform.platform(),
        "cpus": os.cpu_count(), "load_average_before": os.getloadavg(), "modes": [],
    }
    if not args.skip_kokoro_onnx:
        report["modes"].append(
            run_kokoro_onnx(assets.model_path(args.precision), PARAGRAPH, args.threads))
    unsplit_summary, unsplit = run_unsplit(local, chunks)
    report["modes"].append(unsplit_summary)
    renders = {"unsplit": unsplit}

    started = time.perf_counter()
    prior = windowed.calibrate(local, [inputs(t) for t in CALIBRATION])
    report["calibration_ms"] = (time.perf_counter() - started) * 1000
    decoders = {
        "windowed-local": local,
        "windowed-cumulative": windowed.WindowedDecoder(
            precision=args.precision, threads=args.threads, stats="cumulative", **settings),
        "windowed-cumulative-prior": windowed.WindowedDecoder(
            precision=args.precision, threads=args.threads, stats="cumulative", prior=prior,
            prior_frames=300, **settings),
    }
    for name, decoder in decoders.items():
        summary, renders[name] = run_windowed(name, decoder, chunks, unsplit)
        report["modes"].append(summary)
    summary, renders["hybrid"] = run_windowed(
        "hybrid (windowed chunk 0)", decoders["windowed-cumulative-prior"], chunks, unsplit,
        windowed_chunks=1)
    report["modes"].append(summary)

    # Skipping the pads alone (one window over the whole speech span): what the engine would
    # get from the split without windowing.
    pad_only = windowed.WindowedDecoder(precision=args.precision, threads=args.threads,
                                        first_window=10**6, window=10**6, context=8,
                                        lookahead=8, stats="local")
    summary, renders["skip-pad-only"] = run_windowed("skip-pad-only", pad_only, chunks, unsplit)
    report["modes"].append(summary)

    if args.asr:
        from kokoro_lab.quality import ASRUnavailable, intelligibility

        try:
            for mode in report["modes"]:
                key = mode["mode"].split(" ")[0]
                if key in renders:
                    audio = np.concatenate(renders[key])
                    mode["asr_wer"] = intelligibility(audio, " ".join(texts))
                    print(f"{mode['mode']:>26}: WER {mode['asr_wer']:.3f}", flush=True)
        except ASRUnavailable as error:  # keep the timings even when the ASR cannot run
            report["asr_error"] = str(error)
    report["load_average_after"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=float))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
