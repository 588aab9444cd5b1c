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
  4.2 → 2.9), because the edge frames weigh heavily in them; splicing only the silent middle
  out still failed the bar (15 % of the frames skipped at PESQ-WB 4.14 and −0.03 DNSMOS;
  the experiment lives in :mod:`kokoro_lab.lab.splice`).
  The source's harmonic phase is continued across the skipped frames (the generator stage has
  a ``phase_offset`` input, :mod:`kokoro_lab.engine.phase`; without it PESQ falls by ~0.4).
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
from .phase import HARMONICS, PHASE_INPUT, phase_offsets
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

DECODERS = ("skip_pads", "full")
DEFAULT_DECODER = "skip_pads"
LEAD_MARGIN_FRAMES = 20  # decoded before the first spoken token: set by ear (see above)
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


def first_decoded_frame(tokens: np.ndarray, durations: np.ndarray, silent: frozenset[int],
                        lead: int = LEAD_MARGIN_FRAMES) -> int:
    """The frame the vocoder starts at: ``lead`` frames before the first spoken token.

    ``durations`` are the front stage's per-token durations (one unit is
    :data:`~kokoro_lab.engine.split.DURATION_FRAMES` frames). With no spoken token, frame 0.
    """
    tokens = np.asarray(tokens).ravel()
    ends = np.cumsum(np.asarray(durations).ravel()) * DURATION_FRAMES
    spoken = np.flatnonzero(~np.isin(tokens, list(silent)))
    if spoken.size == 0 or spoken[0] == 0:
        return 0
    return max(0, int(ends[spoken[0] - 1]) - lead)


def durations_of(front: dict[str, np.ndarray]) -> np.ndarray:
    """The per-token durations (pads included) of the front stage's outputs, as int64."""
    return np.asarray(front[DURATIONS]).ravel().astype(np.int64)


class Decoder:
    """One decoder mode on the warm sessions of one precision, provider and thread count.

    The sessions come from the process-wide :data:`~kokoro_lab.engine.sessions.SESSIONS`
    cache (one per stage), so building a ``Decoder`` is free once they are loaded. Its speed
    model is the one of its last stage's session: it learns what this mode costs per chunk.
    """

    def __init__(self, mode: str, precision: str, provider: str, threads: int,
                 model: str | Path | None = None, silent: frozenset[int] = frozenset({0}),
                 variant: str = "released", spinning: bool = True):
        self.mode = check_decoder(mode)
        self.silent = silent
        self.lead_margin = LEAD_MARGIN_FRAMES  # lab.splice and skip_pads_by_ear vary it
        if mode == "full":  # the released graph plus its durations output
            timed = timed_model(assets.model_path(precision, model))
            self.sessions: list[LoadedSession] = [
                SESSIONS.get(precision, provider, model=timed, threads=threads,
                             spinning=spinning)]
        else:  # a tuning's graph variant is the generator's
            self.sessions = [
                SESSIONS.get(precision, provider, model=model, threads=threads, stage=stage,
                             variant=variant, spinning=spinning)
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
    def graph(self) -> tuple:
        """What decides this decoder's samples: its mode, precision, provider and graph files
        (the chunk cache's key)."""
        return (self.mode, self.precision, self.provider, self.lead_margin,
                *(s.graph for s in self.sessions))

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
        front = self.front(inputs, options)
        begin = self.first_frame(tokens, front)
        audio = self.generate(front, np.arange(begin, int(front[F0].shape[-1])), options)
        return Rendered(audio, begin * FRAME_SAMPLES, durations_of(front))

    def front(self, inputs: dict[str, np.ndarray], options: ort.RunOptions | None = None
              ) -> dict[str, np.ndarray]:
        """The front stage's outputs for one chunk: the boundary tensors and the durations."""
        outputs = self.sessions[0].session.run([*BOUNDARY, DURATIONS], inputs, options)
        return dict(zip((*BOUNDARY, DURATIONS), outputs, strict=True))

    def first_frame(self, tokens: np.ndarray, front: dict[str, np.ndarray]) -> int:
        """The frame the vocoder starts at for this chunk (see :func:`first_decoded_frame`)."""
        return first_decoded_frame(tokens, durations_of(front), self.silent, self.lead_margin)

    def generator_feeds(self, front: dict[str, np.ndarray], frames: np.ndarray
                        ) -> dict[str, np.ndarray]:
        """The generator stage's inputs for ``frames`` (ascending) of the front stage's
        output, the harmonic phase continued from the frames before ``frames[0]``."""
        feeds = {name: front[name] for name in BOUNDARY}
        for name in (F0, FEATURES):  # time is the last axis of both
            feeds[name] = np.ascontiguousarray(front[name][..., frames])
        feeds[PHASE_INPUT] = phase_offsets(front[F0])[frames[0]].reshape(1, 1, HARMONICS)
        return feeds

    def generate(self, front: dict[str, np.ndarray], frames: np.ndarray,
                 options: ort.RunOptions | None = None) -> np.ndarray:
        """The vocoder's audio for ``frames`` (ascending) of the front stage's output."""
        audio = self.last.session.run([AUDIO], self.generator_feeds(front, frames), options)[0]
        return np.asarray(audio, np.float32).ravel()


__all__ = ["DECODERS", "DEFAULT_DECODER", "DURATION_UNIT_SAMPLES", "Decoder", "DecoderError",
           "LEAD_MARGIN_FRAMES", "Rendered", "check_decoder", "first_decoded_frame",
           "silent_tokens"]
