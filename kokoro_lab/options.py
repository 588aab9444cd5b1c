"""Command-line options every front door that speaks shares (``speak``, ``render``, ``profile``)."""

from __future__ import annotations

import argparse


def add_voice_options(parser: argparse.ArgumentParser) -> None:
    """``--voice``, ``--speed``, ``--lang``, ``--provider`` and ``--precision``."""
    parser.add_argument("--voice", default="af_heart",
                        help="voice or blend 'af_heart:0.7,bf_emma:0.3'")
    parser.add_argument("--speed", type=float, default=1.0, help="0.5 to 2.0")
    parser.add_argument("--lang", default=None, help="espeak language; default: the voice's")
    parser.add_argument("--provider", default="cpu", help="cpu, cuda, tensorrt, …")
    parser.add_argument("--precision", default="int8", choices=("int8", "fp32", "fp16"))
