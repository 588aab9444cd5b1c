"""``kokoro-lab render``: a corpus file to audio files and a manifest, locally or on Dask.

Exit status: 0 when every item is done, 3 when the run finished but some items failed (their
errors are in the manifest and printed), 1 for errors that stop the run (bad input, no model).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..options import add_voice_options

EXIT_ITEMS_FAILED = 3


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``render`` on the ``kokoro-lab`` command line."""

    parser = subparsers.add_parser(
        "render", help="render a corpus (text lines or JSONL) to audio files and a manifest",
        description="Render every utterance of INPUT to OUT/audio/<id>.flac|wav and record it "
                    "in OUT/manifest.jsonl. Rerun the same command to resume.",
    )
    parser.add_argument("input", type=Path, metavar="INPUT",
                        help="a text file (one utterance per line) or .jsonl (text, optional "
                             "id, voice, speed, lang)")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR",
                        help="output directory (audio/ and manifest.jsonl)")
    parser.add_argument("--scheduler", metavar="ADDRESS|local", default=None,
                        help="a Dask scheduler address (tcp://host:8786), or 'local' for a "
                             "LocalCluster of --workers processes; default: a local process "
                             "pool")
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="worker processes on this machine (default: one per core, at "
                             "most 8)")
    parser.add_argument("--threads", type=int, default=None,
                        help="ONNX Runtime threads per worker (default: cores / workers)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="items per task (default: automatic)")
    parser.add_argument("--format", dest="audio_format", default="auto",
                        choices=("auto", "flac", "wav"),
                        help="audio format; auto is FLAC when soundfile is installed")
    parser.add_argument("--worker-writes", action="store_true",
                        help="workers write audio files themselves (OUT must be on a "
                             "filesystem all workers share)")
    parser.add_argument("--words", action="store_true",
                        help="add each item's word timings to its manifest record")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    add_voice_options(parser)
    parser.set_defaults(func=cmd_render)
    return parser


def cmd_render(args: argparse.Namespace) -> int:
    from . import render

    if not args.input.is_file():
        raise FileNotFoundError(f"corpus file {args.input} does not exist")
    report = render(
        args.input, args.out, voice=args.voice, speed=args.speed, lang=args.lang,
        client=args.scheduler, workers=args.workers, precision=args.precision,
        provider=args.provider, threads=args.threads, batch_size=args.batch_size,
        audio_format=args.audio_format, worker_writes=args.worker_writes,
        progress=not args.no_progress, words=args.words,
    )
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print(report)
        for failure in report.failures[:20]:
            print(f"  failed {failure['id']}: {failure.get('error')}", file=sys.stderr)
        if len(report.failures) > 20:
            print(f"  … and {len(report.failures) - 20} more (see the manifest)",
                  file=sys.stderr)
    return 0 if report.ok else EXIT_ITEMS_FAILED
