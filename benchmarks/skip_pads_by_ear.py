"""How much lead silence the vocoder may skip, judged by ear (no timing).

The rule under test (:mod:`kokoro_lab.engine.decoding`, the splice from
:mod:`kokoro_lab.lab.splice`): the ``skip_pads`` decoder starts
``lead`` frames before the first spoken token and keeps audio until ``after`` frames past the
middle of the last spoken token (``-``: to the chunk's end), decoding the chunk's last frames
for the statistics only. Each variant ``lead:after`` is judged on real chunks (the engine's
own chunk plan of the benchmark paragraph, plus short sentences) for several voices, against
the unsplit model's rendering of the same chunk:

* PESQ-WB per chunk (mean, minimum, mean over the short sentences),
* DNSMOS OVRL change per chunk, and per utterance (each voice's paragraph chunks joined with
  100 ms pauses): the bar is ±0.02 of the unsplit rendering,
* the fraction of frames not decoded, and the loudest unsplit sample that falls outside the
  kept frames (anything above 0.02 would be audible speech lost).

``python benchmarks/skip_pads_by_ear.py`` writes ``benchmarks/results/skip_pads_by_ear.{json,md}``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from kokoro_lab import quality
from kokoro_lab.engine import Synthesizer
from kokoro_lab.engine.chunking import EFFICIENT_CAP, plan
from kokoro_lab.engine.finish import finish_chunk
from kokoro_lab.lab.results import write_results
from kokoro_lab.lab.splice import render_spliced
from kokoro_lab.lab.texts import PARAGRAPH

RESULTS = Path(__file__).parent / "results"
VOICES = ("af_heart", "am_adam", "bf_emma", "af_bella", "am_michael")
SHORTS = ("She laughed.", "Yes!", "Well,", "Streaming changes that.")
PAUSE = np.zeros(2400, np.float32)


def speech(raw: np.ndarray) -> np.ndarray:
    finished = finish_chunk(raw, "word", 1.0)
    return finished.audio[: finished.speech_samples]


def judge_voice(synth: Synthesizer, voice_name: str, variants: list[str]) -> list[dict]:
    voice = synth.resolve_voice(voice_name)
    skip = synth.decoder_for("skip_pads")
    pieces = [(c.text, c.phonemes) for c in plan(PARAGRAPH,
                                                 lambda t: synth.phonemize(t, voice.lang),
                                                 [0, 60, 120] + [EFFICIENT_CAP] * 20)]
    shorts = [(t, synth.phonemize(t, voice.lang)) for t in SHORTS]
    rows = []
    for text, phonemes in [*pieces, *shorts]:
        raw = synth.render(text, voice, phonemes=phonemes, decoder="full", raw=True).audio
        reference = speech(raw)
        row = {"voice": voice_name, "phonemes": len(phonemes), "short": (text, phonemes) in shorts,
               "frames": len(raw) // 300, "reference": reference,
               "dnsmos": quality.dnsmos(reference)["ovrl"]}
        tokens, style = synth.model_inputs(phonemes, voice)
        for variant in variants:
            lead, after = variant.split(":")
            kept, decoded = render_spliced(skip, tokens, style, 1.0, int(lead),
                                           None if after == "-" else int(after))
            audio = speech(kept)
            outside = np.concatenate([raw[: decoded.begin * 300], raw[decoded.keep_end * 300:]])
            row[variant] = {
                "audio": audio, "pesq": quality.pesq_wb(reference, audio),
                "dnsmos_change": quality.dnsmos(audio)["ovrl"] - row["dnsmos"],
                "skipped": 1 - len(decoded.frames) / decoded.total,
                "lost": float(np.abs(outside).max(initial=0.0)),
            }
        rows.append(row)
    return rows


def utterance(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([np.concatenate([p, PAUSE]) for p in parts])


def summarise(rows: list[dict], variants: list[str]) -> dict:
    summary = {}
    for variant in variants:
        judged = [r[variant] for r in rows]
        changes = []
        for voice in sorted({r["voice"] for r in rows}):
            mine = [r for r in rows if r["voice"] == voice and not r["short"]]
            changes.append(quality.dnsmos(utterance([r[variant]["audio"] for r in mine]))["ovrl"]
                           - quality.dnsmos(utterance([r["reference"] for r in mine]))["ovrl"])
        summary[variant] = {
            "pesq_mean": float(np.mean([j["pesq"] for j in judged])),
            "pesq_min": float(np.min([j["pesq"] for j in judged])),
            "pesq_short_mean": float(np.mean([r[variant]["pesq"] for r in rows if r["short"]])),
            "dnsmos_chunk_change": float(np.mean([j["dnsmos_change"] for j in judged])),
            "dnsmos_utterance_change": float(np.mean(changes)),
            "dnsmos_utterance_changes": [round(c, 3) for c in changes],
            "skipped": float(np.mean([j["skipped"] for j in judged])),
            "lost_max": float(np.max([j["lost"] for j in judged])),
        }
    return summary


def markdown(summary: dict, chunks: int) -> str:
    lines = [
        "# Skipping the lead silence, judged by ear", "",
        f"{chunks} chunks ({len(VOICES)} voices: the benchmark paragraph's chunks and "
        f"{len(SHORTS)} short sentences), int8, against the unsplit rendering of each chunk.",
        "",
        "| lead : after (frames) | frames not decoded | PESQ-WB mean / min | PESQ short chunks | "
        "DNSMOS change per chunk | DNSMOS change per utterance | loudest skipped sample |",
        "|---:|---:|---|---:|---:|---:|---:|",
    ]
    for variant, s in summary.items():
        lines.append(
            f"| {variant} | {s['skipped']:.1%} | {s['pesq_mean']:.2f} / {s['pesq_min']:.2f} | "
            f"{s['pesq_short_mean']:.2f} | {s['dnsmos_chunk_change']:+.3f} | "
            f"{s['dnsmos_utterance_change']:+.3f} | {s['lost_max']:.3f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", default="12:-,16:-,20:-,24:-,20:10,20:6",
                        help="lead:after pairs (after '-': keep to the chunk's end)")
    parser.add_argument("--voices", default=",".join(VOICES))
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    variants = args.variants.split(",")
    synth = Synthesizer(cache=False)  # measure synthesis, not the chunk cache
    rows = [row for voice in args.voices.split(",") for row in judge_voice(synth, voice, variants)]
    summary = summarise(rows, variants)
    write_results(args.out, "skip_pads_by_ear", {"variants": summary, "chunks": len(rows)},
                  markdown(summary, len(rows)))


if __name__ == "__main__":
    main()
