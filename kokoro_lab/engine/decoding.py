"""Decoder modes: how one chunk's tokens become audio.

The rule: the vocoder only does work that is heard.

* ``"skip_pads"`` (the default) runs the graph split before the vocoder
  (:mod:`kokoro_lab.engine.split`): the front stage gives the F0 curve, the decoder features and
  every token's duration; the generator then starts :data:`LEAD_MARGIN_FRAMES` before the
  first token that is not a pad, a space or a punctuation mark, skipping the rest of the
  silent lead pad (26–38 frames, 0.3–0.5 s). The onset starts up to ~8 frames before its
  token, but the margin is set by ear: the vocoder normalises over time, and the fewer silent
  frames it sees the more the whole chunk changes. Against the unsplit rendering of the same
  chunk (45 chunks, 5 voices, ``benchmarks/skip_pads_by_ear.py``) a 20-frame margin keeps
  PESQ-WB at 4.30 mean and DNSMOS OVRL within 0.01 per chunk and per utterance, and skips 7 %
  of the frames; a 12-frame margin skips 12 % but costs 0.03–0.05 DNSMOS.

  The silence after the speech stays: the vocoder decodes to the chunk's end. Dropping even its
  last two frames moves those statistics enough to be heard everywhere in the chunk (PESQ
  4.2 → 2.9), because the edge frames weigh heavily in them. Splicing only the silent middle
  out (keeping audio to ``after`` frames past the middle of the last spoken token, then
  decoding the chunk's last :data:`TRAIL_EDGE_FRAMES` frames for the statistics and throwing
  them away) restores most of it but still failed the bar: 15 % of the frames skipped at
  PESQ-WB 4.14 and −0.03 DNSMOS. :func:`plan_decoding` keeps that option
  (``after=...``) for the benchmark that measured it; the engine does not use it.
  The source's harmonic phase is continued across the skipped frames (the generator stage has
  a ``phase_offset`` input, :mod:`kokoro_lab.engine.windowed`; without it PESQ falls by ~0.4).
* ``"full"`` runs the whole released graph in one run: exactly the model's own output. The
  graph it runs is the released one with the token durations exposed as a second output
  (:func:`kokoro_lab.engine.split.timed_model`), so its chunks carry word timings too, from the
  same single run; the audio is bit for bit the released graph's.

Either way the caller learns where the returned samples sit in the full model output
(:attr:`Rendered.offset`), so word timings can be placed on the audio that is played.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from . import assets
from .scheduling import SpeedModel
from .sessions import SESSIONS, LoadedSession
from .split import (
    AUDIO,
    BOUNDARY,
    DURATION_FRAMES,
    DURATIONS,
    F0,
    FEATURES,
    FRAME_SAMPLES,
    timed_model,
)
from .windowed import HARMONICS, PHASE_INPUT, phase_offsets

DECODERS = ("skip_pads", "full")
DEFAULT_DECODER = "skip_pads"
LEAD_MARGIN_FRAMES = 20  # decoded before the first spoken token: set by ear (see above)
TRAIL_EDGE_FRAMES = 8  # with a trailing splice: the last frames, decoded for the statistics
DURATION_UNIT_SAMPLES = DURATION_FRAMES * FRAME_SAMPLES  # output samples per duration unit
SILENT_CHARACTERS = ";:,.!?¡¿—…\"«»“”() "  # tokens that make no sound of their own (and pads)


class DecoderError(ValueError):
    """An unknown decoder mode."""


def check_decoder(mode: str) -> str:
    """The decoder mode, validated: one of :data:`DECODERS`."""
    if mode not in DECODERS:
        raise DecoderError(f"unknown decoder {mode!r}; choose one of {', '.join(DECODERS)}")
    return mode


@dataclass
class Rendered:
    """The raw audio of one chunk and where it sits in the full model output."""

    audio: np.ndarray  # float32, untrimmed
    offset: int  # samples of the full model output (nothing skipped) before audio[0]
    durations: np.ndarray | None  # per-token durations incl. both pads (None: no tokens)


def silent_tokens(vocab: dict[str, int]) -> frozenset[int]:
    """Token ids that make no sound of their own: the pad (0), punctuation and the space."""
    return frozenset({0} | {index for char, index in vocab.items() if char in SILENT_CHARACTERS})


@dataclass(frozen=True)
class DecodePlan:
    """Frames the vocoder runs on: ``[begin, keep_end)`` kept, then ``[edge, total)`` for the
    statistics only (``edge == total`` when nothing is spliced)."""

    begin: int
    keep_end: int
    edge: int
    total: int

    @property
    def frames(self) -> np.ndarray:
        return np.r_[self.begin:self.keep_end, self.edge:self.total]


def plan_decoding(tokens: np.ndarray, durations: np.ndarray, silent: frozenset[int],
                  lead: int = LEAD_MARGIN_FRAMES, after: int | None = None,
                  edge: int = TRAIL_EDGE_FRAMES) -> DecodePlan:
    """What the vocoder decodes of one chunk (see the module docstring).

    ``durations`` are the front stage's per-token durations (one unit is
    :data:`~kokoro_lab.engine.split.DURATION_FRAMES` frames). ``after=None`` keeps everything
    to the chunk's end. With no spoken token, the whole chunk.
    """
    tokens = np.asarray(tokens).ravel()
    ends = np.cumsum(np.asarray(durations).ravel()) * DURATION_FRAMES
    total = int(ends[-1])
    spoken = np.flatnonzero(~np.isin(tokens, list(silent)))
    if spoken.size == 0:
        return DecodePlan(0, total, total, total)
    first, last = int(spoken[0]), int(spoken[-1])
    begin = max(0, int(ends[first - 1]) - lead) if first else 0
    keep_end = total
    if after is not None:
        middle = int(ends[last]) - int(ends[last] - (ends[last - 1] if last else 0)) // 2
        keep_end = min(total, max(begin + 1, middle + after))
    if keep_end >= total - edge:  # too little to splice out: decode to the end
        return DecodePlan(begin, total, total, total)
    return DecodePlan(begin, keep_end, total - edge, total)


class Decoder:
    """One decoder mode on the warm sessions of one precision, provider and thread count.

    The sessions come from the process-wide :data:`~kokoro_lab.engine.sessions.SESSIONS`
    cache (one per stage), so building a ``Decoder`` is free once they are loaded. Its speed
    model is the one of its last stage's session: it learns what this mode costs per chunk.
    """

    def __init__(self, mode: str, precision: str, provider: str, threads: int,
                 model: str | Path | None = None, silent: frozenset[int] = frozenset({0})):
        self.mode = check_decoder(mode)
        self.silent = silent
        # benchmarks/skip_pads_by_ear.py varies these
        self.lead_margin, self.trail_after = LEAD_MARGIN_FRAMES, None
        if mode == "full":  # the released graph plus its durations output
            timed = timed_model(assets.model_path(precision, model))
            self.sessions: list[LoadedSession] = [
                SESSIONS.get(precision, provider, model=timed, threads=threads)]
        else:
            self.sessions = [
                SESSIONS.get(precision, provider, model=model, threads=threads, stage=stage)
                for stage in ("front", "generator")
            ]

    @property
    def last(self) -> LoadedSession:
        return self.sessions[-1]

    @property
    def provider(self) -> str:
        return self.last.provider

    @property
    def precision(self) -> str:
        return self.last.precision

    @property
    def threads(self) -> int:
        return self.last.threads

    @property
    def speed_model(self) -> SpeedModel:
        return self.last.speed_model

    @property
    def active_providers(self) -> list[str]:
        return list(self.last.active_providers)

    @property
    def load_ms(self) -> float:
        return sum(s.load_ms for s in self.sessions)

    def render(self, tokens: np.ndarray, style: np.ndarray, speed: float,
               options: ort.RunOptions | None = None) -> Rendered:
        """Decode one chunk; ``tokens`` include the two pad tokens, shape ``[1, T]``."""
        inputs = {"tokens": tokens, "style": style, "speed": np.array([speed], np.float32)}
        if self.mode == "full":
            audio, durations = self.last.session.run([AUDIO, DURATIONS], inputs, options)
            return Rendered(np.asarray(audio, np.float32).ravel(), 0,
                            np.asarray(durations).ravel().astype(np.int64))
        front_session, generator = self.sessions
        outputs = front_session.session.run([*BOUNDARY, DURATIONS], inputs, options)
        front = dict(zip((*BOUNDARY, DURATIONS), outputs, strict=True))
        durations = np.asarray(front[DURATIONS]).ravel().astype(np.int64)
        plan = plan_decoding(tokens, durations, self.silent, self.lead_margin, self.trail_after)
        feeds = {name: front[name] for name in BOUNDARY}
        frames = plan.frames
        for name in (F0, FEATURES):  # time is the last axis of both
            feeds[name] = np.ascontiguousarray(front[name][..., frames])
        # Continue the harmonic source's phase from where the skipped frames would have left it.
        feeds[PHASE_INPUT] = phase_offsets(front[F0])[plan.begin].reshape(1, 1, HARMONICS)
        audio = np.asarray(generator.session.run([AUDIO], feeds, options)[0], np.float32).ravel()
        kept = audio[: (plan.keep_end - plan.begin) * FRAME_SAMPLES]  # the edge frames go
        return Rendered(kept, plan.begin * FRAME_SAMPLES, durations)


__all__ = ["DECODERS", "DEFAULT_DECODER", "DURATION_UNIT_SAMPLES", "Decoder", "DecoderError",
           "DecodePlan", "LEAD_MARGIN_FRAMES", "Rendered", "TRAIL_EDGE_FRAMES", "check_decoder",
           "plan_decoding", "silent_tokens"]
