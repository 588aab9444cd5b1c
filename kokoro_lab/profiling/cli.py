"""``kokoro-lab profile``, ``audit``, ``ops``, ``tune`` and ``runs``.

``profile`` runs the provider × precision matrix and prints the table (optionally an HTML page
of figures); ``audit`` prints node placement for one cell; ``runs`` lists or compares the run
log; ``ops`` breaks the first chunk down stage by stage and op by op; ``tune`` measures the
engine's tunings here and saves the fastest that passes by ear. Exit status 0 on success, 1 on
errors (the main CLI prints them), 4 when ``profile`` could run none of the requested cells.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

EXIT_NOTHING_RAN = 4
DEFAULT_TEXT = "The quick brown fox jumps over the lazy dog. It was a bright cold day in April."


def _names(value: str) -> list[str]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    if not names:
        raise argparse.ArgumentTypeError("give a comma-separated list, e.g. cpu,cuda")
    return names


def _add_one_cell(parser: argparse.ArgumentParser) -> None:
    """The one provider x precision cell that ``audit`` and ``ops`` look into."""
    parser.add_argument("--precision", default="int8", choices=("int8", "fp32", "fp16"))
    parser.add_argument("--provider", default="cpu")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``profile``, ``audit``, ``ops``, ``tune`` and ``runs`` on the command line."""
    parser = subparsers.add_parser(
        "profile", help="time providers × precisions side by side and log the run",
        description="Run TEXT on every provider × precision (after warm-up, alternating), "
                    "print time to first audio, RTF and load cost per cell, and log the run.")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("text", nargs="?", help=f"text to speak (default: {DEFAULT_TEXT!r})")
    source.add_argument("--file", type=Path, help="read the text from this file")
    parser.add_argument("--providers", type=_names, default=None,
                        help="comma-separated (default: those available plus cuda,tensorrt, "
                             "which show why they are absent)")
    parser.add_argument("--precisions", type=_names, default=None,
                        help="comma-separated subset of int8,fp32,fp16 (default: all)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--voice", default="af_heart")
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads")
    parser.add_argument("--html", type=Path, help="write the figures to this HTML file")
    parser.add_argument("--quality", action="store_true",
                        help="judge each cell by ear (slow): ASR word error rate, PESQ-WB "
                             "against the whole text rendered by kokoro-onnx on fp32, DNSMOS")
    parser.add_argument("--no-log", action="store_true", help="keep this run out of the run log")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(func=cmd_profile)

    audit = subparsers.add_parser(
        "audit", help="which graph nodes ran on which execution provider",
        description="Profile one warm run with ONNX Runtime's profiler and show node placement.")
    _add_one_cell(audit)
    audit.add_argument("--text", default=None)
    audit.add_argument("--top", type=int, default=12, help="op types to list")
    audit.add_argument("--json", action="store_true")
    audit.set_defaults(func=cmd_audit)

    ops = subparsers.add_parser(
        "ops", help="the first chunk's time, stage by stage and op by op",
        description="Time the first chunk of TEXT on the engine's path (text, inputs, front, "
                    "generator, finish, hand-off) and break the model's stages down by op "
                    "type with ONNX Runtime's profiler.")
    ops.add_argument("text", nargs="?", default=DEFAULT_TEXT)
    _add_one_cell(ops)
    ops.add_argument("--voice", default="af_heart")
    ops.add_argument("--tuning", default="auto", help="'auto' (this machine's profile) or 'off'")
    ops.add_argument("--repeats", type=int, default=5)
    ops.add_argument("--json", action="store_true")
    ops.set_defaults(func=cmd_ops)

    tune = subparsers.add_parser(
        "tune", help="measure the engine's tunings here; save the fastest that passes by ear",
        description="Time every graph variant and session setting against the released graph "
                    "on held-out text, judge each by ear (PESQ-WB, DNSMOS), print the table and "
                    "save the winner as this machine's profile (Synthesizer() then uses it).")
    tune.add_argument("--budget-s", type=float, default=300.0,
                      help="stop measuring new candidates after this many seconds")
    tune.add_argument("--repeats", type=int, default=3, help="interleaved timing passes")
    tune.add_argument("--no-save", action="store_true", help="print the table only")
    tune.add_argument("--force", action="store_true",
                      help="save even when the machine was busy (noisy figures)")
    tune.add_argument("--json", action="store_true")
    tune.set_defaults(func=cmd_tune)

    runs = subparsers.add_parser("runs", help="list or compare the logged profile/bench runs")
    runs.add_argument("--kind", default=None, help="profile, bench, …")
    runs.add_argument("--limit", type=int, default=20)
    runs.add_argument("--metric", default="rtf",
                      help="figure to compare across machines (rtf, first_audio_ms, …)")
    runs.add_argument("--with", dest="others", type=Path, nargs="*", default=[],
                      help="other machines' run-log files to compare against")
    runs.add_argument("--json", action="store_true")
    runs.set_defaults(func=cmd_runs)
    return parser


def cmd_profile(args: argparse.Namespace) -> int:
    from .runner import profile

    text = args.file.read_text(encoding="utf-8") if args.file else args.text or DEFAULT_TEXT
    report = profile(text, providers=args.providers, precisions=args.precisions,
                     repeats=args.repeats, voice=args.voice, threads=args.threads,
                     progress=not args.no_progress, log=not args.no_log, quality=args.quality)
    if args.html:
        report.write_html(args.html)
    if args.json:
        print(json.dumps({"summary": report.summary(), "machine": report.machine,
                          "batch": report.batch, "reference": report.reference},
                         indent=2, default=str))
    else:
        print(report.markdown())
        if report.batch:
            print(f"\nlogged as batch {report.batch} in {report.run_log}")
        if args.html:
            print(f"figures: {args.html}")
    return 0 if report.cells else EXIT_NOTHING_RAN


def cmd_audit(args: argparse.Namespace) -> int:
    from .audit import DEFAULT_TEXT as AUDIT_TEXT
    from .audit import audit

    report = audit(args.precision, args.provider, text=args.text or AUDIT_TEXT, warn=False)
    if args.json:
        print(json.dumps({"provider": report.provider, "precision": report.precision,
                          "active_providers": report.active_providers,
                          "by_provider": report.by_provider(), "by_op": report.by_op(),
                          "warning": report.warning}, indent=2))
    else:
        print(report.markdown(top=args.top))
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from .runlog import RunLog, Runs

    log = RunLog()
    listed = log.runs(kind=args.kind, limit=args.limit)
    if args.others:
        merged = Runs(log.runs(kind=args.kind))
        for path in args.others:
            merged.extend(RunLog(path).runs(kind=args.kind))
        comparison = merged
    else:
        comparison = Runs(log.runs(kind=args.kind))
    if args.json:
        print(json.dumps({"runs": [r.flat() for r in listed],
                          "compare": {"/".join(k): v for k, v in
                                      comparison.compare(args.metric).items()}},
                         indent=2, default=str))
        return 0
    print(f"run log: {log.path}")
    if not listed:
        print("no runs logged yet: run `kokoro-lab profile`")
        return 0
    print(f"{'id':>5} {'created':<25} {'kind':<8} {'machine':<16} {'cell':<16} "
          f"{'RTF':>6} {'first audio':>11}")
    for run in listed:
        rtf, first = run.figures.get("rtf"), run.figures.get("first_audio_ms")
        print(f"{run.id:>5} {run.created:<25} {run.kind:<8} {run.machine[:16]:<16} "
              f"{run.provider + '/' + run.precision:<16} "
              f"{'' if rtf is None else f'{rtf:.3f}':>6} "
              f"{'' if first is None else f'{first:.0f} ms':>11}")
    print()
    print(comparison.markdown(args.metric))
    return 0


def cmd_ops(args: argparse.Namespace) -> int:
    from ..engine import Synthesizer
    from .ops import profile_ops

    synth = Synthesizer(args.precision, args.provider, tuning=args.tuning, cache=False)
    report = profile_ops(args.text, args.voice, repeats=args.repeats, synth=synth)
    print(json.dumps(report.as_dict(), indent=1) if args.json else
          f"tuning: {synth.tuning.label}\n\n{report.markdown()}")
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from .tune import tune

    report = tune(args.budget_s, save=not args.no_save, force=args.force,
                  repeats=args.repeats, progress=not args.json)
    if args.json:
        print(json.dumps({"winner": report.winner.tuning.name if report.winner else None,
                          "saved": report.saved, "noisy": report.noisy,
                          "rows": [{**row.__dict__, "tuning": row.tuning.label}
                                   for row in report.rows]}, indent=1, default=str))
    else:
        print(report.markdown())
    return 0
