"""Every decoder mode and chunk policy on several texts: speed and quality side by side.

The rule: a faster sound that sounds worse is not faster. For each text, decoder mode
(:mod:`kokoro_lab.engine.decoding`) and chunk policy, one warm stream is timed (first audible
sample, total time, underrun, through the engine's simulated player) and its audio is judged:

* **PESQ-WB vs unsplit**: each chunk against the unsplit model's rendering of the same chunk
  (same phonemes, voice and speed, finished the same way), mean and minimum over the chunks;
  none for the ``full`` decoder, which *is* the unsplit rendering.
* **DNSMOS OVRL** of the whole utterance, and **WER** (Whisper tiny.en) against the text.

kokoro-onnx ``create_stream`` speaks each text too: the speed reference and the whole-text
quality reference. Chunk policies:

* ``phrase``: the engine's (a first chunk ending at a clause or phrase boundary; later chunks
  end on a sentence when they hold one),
* ``4 words``: the engine's first-chunk rule before issue 12 (a first clause over six words
  cut after four) and no sentence-end rule (later chunks packed to the budget wherever it
  ends; a clause over the budget is still cut only at a phrase boundary),
* ``sentences``: the first clause whole, then chunks as large as the cap allows, ending on
  sentences (what kokoro-onnx's batches sound like, with a fast start). Its start margin
  follows from the same budgets: the engine's replay of them predicts stalls.

Timing needs the timing lock::

    flock /tmp/kokoro-timing.lock nice -n 0 .venv/bin/python benchmarks/decoder_modes.py

writes ``benchmarks/results/decoder_modes.{json,md}``; ``--quick`` for a smoke run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time
from pathlib import Path

import numpy as np

from kokoro_lab import quality
from kokoro_lab.engine import Synthesizer, chunking, scheduling
from kokoro_lab.engine.decoding import DECODERS
from kokoro_lab.engine.finish import finish_chunk
from kokoro_lab.engine.metrics import SAMPLE_RATE, simulate_playback
from kokoro_lab.lab.bench import VOICE, judge, run_kokoro_onnx_stream
from kokoro_lab.lab.results import write_results
from kokoro_lab.lab.texts import HOLDOUT, LONG, PARAGRAPH

RESULTS = Path(__file__).parent / "results"
TEXTS = {
    "two sentences": "Hello there, this is a quick check. It has two sentences.",
    "paragraph": PARAGRAPH,
    "hold-out paragraph": HOLDOUT,
    "300 words": LONG,
}
LONG_TEXTS = {"300 words"}  # only the engine's own policy, both decoders: it takes minutes
POLICIES = ("phrase", "4 words", "sentences")


@contextlib.contextmanager
def policy(name: str):
    """Plan chunks by ``name`` for the duration of the block (patches the planner)."""
    saved = (chunking.phrase_cut, chunking.ChunkPlanner._end_on_sentence,
             scheduling.Scheduler.budget)
    try:
        if name == "4 words":
            chunking.phrase_cut = lambda words: 4 if len(words) > 4 else None
            chunking.ChunkPlanner._end_on_sentence = lambda self, parts: parts
        elif name == "sentences":
            chunking.phrase_cut = lambda words: None
            scheduling.Scheduler.budget = lambda self, now, remaining=0: self.cap
        yield
    finally:
        (chunking.phrase_cut, chunking.ChunkPlanner._end_on_sentence,
         scheduling.Scheduler.budget) = saved


def timed_stream(synth: Synthesizer, text: str, decoder: str) -> dict:
    start = time.perf_counter()
    chunks = list(synth.stream(text, voice=VOICE, decoder=decoder))
    ready = [(c.finished - start) * 1000 for c in chunks]
    playback = simulate_playback(ready, [c.audio for c in chunks], chunks[0].start_margin_ms)
    return {"chunks": chunks, "first_audio_ms": playback.first_audio_ms,
            "total_ms": playback.total_ms, "underrun_ms": playback.underrun_ms,
            "start_margin_ms": chunks[0].start_margin_ms,
            "first_chunk": chunks[0].text, "chunk_texts": [c.text for c in chunks]}


def kokoro_onnx_stream(kokoro, text: str) -> dict:
    run = run_kokoro_onnx_stream(kokoro, text)
    figures = run.figures()
    return {"audio": run.joined, "first_audio_ms": figures["first_audio_ms"],
            "total_ms": figures["total_ms"], "underrun_ms": figures["underrun_ms"]}


def pesq_vs_unsplit(synth: Synthesizer, chunks) -> list[float]:
    """PESQ-WB of each chunk's speech against the unsplit rendering of the same chunk."""
    scores = []
    for chunk in chunks:
        raw = synth.render(chunk.text, VOICE, chunk.speed, phonemes=chunk.phonemes,
                           decoder="full", raw=True).audio
        reference = finish_chunk(raw, "word", chunk.speed)
        speech = chunk.audio[: chunk.speech_samples]
        if min(len(speech), reference.speech_samples) >= SAMPLE_RATE // 4:
            scores.append(quality.pesq_wb(reference.audio[: reference.speech_samples], speech))
    return scores


def judged(audio: np.ndarray, text: str) -> dict:
    figures = judge(audio, text)
    return {"dnsmos_ovrl": figures["dnsmos_ovrl"], "wer": figures["wer"]}


def markdown(report: dict) -> str:
    lines = [
        "# Decoder modes and chunk policies", "",
        f"int8, CPU, {report['cores']} cores, voice {VOICE}, tuning "
        f"{report.get('tuning', 'off (before tuning existed)')}; load average "
        f"{report['load_start']} → {report['load_end']}. One warm run per row; PESQ-WB of each "
        "chunk against the unsplit rendering of the same chunk (mean / min); DNSMOS OVRL "
        f"averaged over {report.get('dnsmos_offsets', 1)} start offsets.", "",
        "| text | system | decoder | policy | first audio ms | start margin ms | total ms | "
        "underrun ms | PESQ vs unsplit | DNSMOS OVRL | WER | first chunk |",
        "|---|---|---|---|---:|---:|---:|---:|---|---:|---:|---|",
    ]
    for row in report["rows"]:
        pesq = (f"{row['pesq_mean']:.2f} / {row['pesq_min']:.2f}"
                if row.get("pesq_mean") is not None else "–")
        lines.append(
            f"| {row['text']} | {row['system']} | {row.get('decoder', '–')} | "
            f"{row.get('policy', '–')} | {row['first_audio_ms']:.0f} | "
            f"{row.get('start_margin_ms', 0):.0f} | {row['total_ms']:.0f} | "
            f"{row['underrun_ms']:.0f} | {pesq} | {row['dnsmos_ovrl']:.3f} | {row['wer']:.3f} | "
            f"{row.get('first_chunk', '–')} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--quick", action="store_true", help="the two-sentence text only")
    parser.add_argument("--markdown", action="store_true",
                        help="only rewrite the .md from the last run's .json")
    args = parser.parse_args()
    if args.markdown:
        report = json.loads((args.out / "decoder_modes.json").read_text())
        (args.out / "decoder_modes.md").write_text(markdown(report))
        return
    from kokoro_onnx import Kokoro

    from kokoro_lab.engine import assets

    texts = {k: v for k, v in TEXTS.items() if not args.quick or k == "two sentences"}
    load_start = [round(x, 2) for x in os.getloadavg()]
    synth = Synthesizer(cache=False)  # measure synthesis, not the chunk cache
    for mode in DECODERS:  # every mode's sessions warm before anything is timed
        synth.warm_up(mode)
    kokoro = Kokoro(str(assets.model_path("int8")), str(assets.voices_path()))
    kokoro.create("Warm up.", VOICE)
    plan = [(name, decoder, name_policy) for name in texts for decoder in DECODERS
            for name_policy in POLICIES if name not in LONG_TEXTS or name_policy == "phrase"]
    runs, references = [], {}
    for name, text in texts.items():
        references[name] = kokoro_onnx_stream(kokoro, text)
        print(f"{name:<20} kokoro-onnx first audio {references[name]['first_audio_ms']:.0f} ms",
              flush=True)
    for name, decoder, name_policy in plan:
        with policy(name_policy):
            run = timed_stream(synth, texts[name], decoder)
        runs.append((name, decoder, name_policy, run))
        print(f"{name:<20} {decoder:<10} {name_policy:<10} first audio "
              f"{run['first_audio_ms']:6.0f} ms  total {run['total_ms']:7.0f} ms  underrun "
              f"{run['underrun_ms']:5.0f} ms  | {run['first_chunk']}", flush=True)
    load_end = [round(x, 2) for x in os.getloadavg()]
    rows = []
    for name, reference in references.items():  # judged after every timed run
        rows.append({"text": name, "system": "kokoro-onnx create_stream",
                     **{k: v for k, v in reference.items() if k != "audio"},
                     **judged(reference["audio"], texts[name])})
    for name, decoder, name_policy, run in runs:
        chunks = run.pop("chunks")
        audio = np.concatenate([c.audio for c in chunks])
        scores = pesq_vs_unsplit(synth, chunks) if decoder != "full" else []
        rows.append({"text": name, "system": "kokoro_lab stream", "decoder": decoder,
                     "policy": name_policy, **run, **judged(audio, texts[name]),
                     "pesq_mean": float(np.mean(scores)) if scores else None,
                     "pesq_min": float(np.min(scores)) if scores else None})
    report = {"cores": os.cpu_count(), "load_start": load_start, "load_end": load_end,
              "tuning": synth.tuning.label, "dnsmos_offsets": quality.DNSMOS_OFFSETS,
              "rows": rows}
    stem = "decoder_modes-quick" if args.quick else "decoder_modes"
    write_results(args.out, stem, report, markdown(report))


if __name__ == "__main__":
    main()
