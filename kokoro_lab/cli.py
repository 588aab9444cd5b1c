"""``kokoro-lab``: the command-line front door onto the engine.

Subcommands: ``speak`` (text → WAV with a per-chunk latency table; ``--captions`` adds WebVTT
or SubRip captions), ``voices`` (the 54 voice names by language and gender), ``assets`` (what
is cached, where, sizes and hashes), ``bench`` (kokoro-onnx against kokoro_lab in one
process), ``doctor`` (is the install consistent, and the exact fix when not), and the ones the
other front doors register: ``render`` (:mod:`kokoro_lab.batch.cli`) and ``profile``
(:mod:`kokoro_lab.profiling.cli`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .batch import cli as batch_cli
from .options import add_voice_options
from .profiling import cli as profiling_cli

if TYPE_CHECKING:
    from .engine.metrics import Result


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, RuntimeError, FileNotFoundError) as error:
        print(f"kokoro-lab: error: {error}", file=sys.stderr)
        return 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kokoro-lab", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(title="commands")

    speak = sub.add_parser("speak", help="speak text to a WAV file, printing per-chunk latency")
    source = speak.add_mutually_exclusive_group(required=True)
    source.add_argument("text", nargs="?", help="the text to speak")
    source.add_argument("--file", type=Path, help="read the text from this file")
    speak.add_argument("-o", "--output", type=Path, default=Path("speech.wav"))
    add_voice_options(speak)
    speak.add_argument("--captions", type=Path, metavar="PATH",
                       help="also write the words' timings as captions: SubRip when PATH ends "
                            "in .srt, else WebVTT")
    speak.add_argument("--json", action="store_true", help="print the metrics as JSON")
    speak.set_defaults(func=cmd_speak)

    voices = sub.add_parser("voices", help="list the voice names by language and gender "
                            "(reads the voice file only, not the model)")
    voices.add_argument("--json", action="store_true")
    voices.set_defaults(func=cmd_voices)

    assets = sub.add_parser("assets", help="show the model and voice files, sizes and hashes")
    assets.add_argument("--build", action="store_true",
                        help="build the default assets (int8 model, voices) if missing")
    assets.add_argument("--build-derived", action="store_true",
                        help="also derive the fp32 and fp16 graphs if missing")
    assets.add_argument("--json", action="store_true")
    assets.set_defaults(func=cmd_assets)

    bench = sub.add_parser("bench", help="benchmark against kokoro-onnx in the same process")
    bench.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    bench.add_argument("--repeats", type=int, default=2)
    bench.add_argument("--quick", action="store_true", help="short texts only (for tests)")
    bench.set_defaults(func=cmd_bench)

    doctor = sub.add_parser("doctor", help="check the install (onnxruntime build, GPU, cache, "
                            "notebook front end); exit 1 with the exact fix when inconsistent")
    doctor.add_argument("--json", action="store_true")
    doctor.add_argument("--no-probe", action="store_true",
                        help="do not start CUDA/TensorRT on a tiny graph when a GPU is visible")
    doctor.set_defaults(func=cmd_doctor)

    batch_cli.add_parser(sub)
    profiling_cli.add_parser(sub)
    return parser


def cmd_speak(args: argparse.Namespace) -> int:
    from .engine import Synthesizer

    text = args.file.read_text(encoding="utf-8") if args.file else args.text
    synth = Synthesizer(precision=args.precision, provider=args.provider)
    stream = synth.stream(text, voice=args.voice, speed=args.speed, lang=args.lang)
    if not args.json:
        print(f"{'#':>3} {'ready ms':>9} {'synth ms':>9} {'audio ms':>9} {'RTF':>5}  text")
    try:
        for chunk in stream:
            if not args.json:
                print(f"{chunk.index:>3} {chunk.ready_ms:>9.0f} {chunk.synthesis_ms:>9.0f} "
                      f"{chunk.audio_ms:>9.0f} {chunk.rtf:>5.2f}  {_clip(chunk.text)}", flush=True)
    finally:
        stream.cancel()
    result = stream.result()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    result.save(args.output)
    if args.captions:
        write_captions(result, args.captions)
    summary = result.summary()
    if args.json:
        print(json.dumps({"summary": summary, "chunks": result.records()}, indent=2))
    else:
        print(f"\nfirst audio {summary['first_audio_ms']:.0f} ms · {summary['chunks']} chunks · "
              f"{summary['audio_s']:.1f} s audio · underrun {summary['underrun_ms']:.0f} ms · "
              f"{result.provider}/{result.precision} → {args.output}"
              + (f", captions → {args.captions}" if args.captions else ""))
    return 0


def write_captions(result: Result, path: Path) -> Path:
    """Write ``result``'s word timings to ``path``: SubRip for ``.srt``, else WebVTT."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".srt":
        result.to_srt(path)
    else:
        result.to_vtt(path)
    return path


def cmd_voices(args: argparse.Namespace) -> int:
    from .engine import assets
    from .engine.voices import VoiceBank, describe_voice

    voices = [describe_voice(name) for name in VoiceBank(assets.voices_path()).names]
    if args.json:
        print(json.dumps(voices, indent=2))
        return 0
    groups: dict[tuple[str, str], list[str]] = {}
    for v in voices:
        groups.setdefault((v["language"], v["gender"]), []).append(v["name"])
    for (language, gender), names in sorted(groups.items()):
        print(f"{language}, {gender} ({len(names)}): {', '.join(names)}")
    print(f"{len(voices)} voices; blend them as 'af_heart:0.7,bf_emma:0.3'")
    return 0


def cmd_assets(args: argparse.Namespace) -> int:
    from .engine import assets

    build = {"model int8", "voices"} if args.build or args.build_derived else set()
    if args.build_derived:
        build |= {"model fp32", "model fp16"}
    report = assets.describe(build=build)
    if args.json:
        print(json.dumps([item.as_dict() for item in report], indent=2))
        return 0
    print(f"cache: {assets.cache_dir()}")
    for item in report:
        state = f"{item.size / 1e6:7.1f} MB  sha256 {item.sha256[:16]}…" if item.present else \
            "  missing (built on first use)"
        print(f"{item.name:<12} {state}  {item.origin}\n{'':<12} {item.path}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from .lab.bench import run_benchmark

    report = run_benchmark(args.out, repeats=args.repeats, quick=args.quick)
    print(report.markdown())
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from .diagnostics import diagnose

    report = diagnose(probe_gpu=not args.no_probe)
    print(report.to_json() if args.json else report.text())
    return report.exit_code


def _clip(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


if __name__ == "__main__":
    sys.exit(main())
