"""How big the next chunk may be so that synthesis stays ahead of playback.

The model is a line: synthesis seconds ≈ ``fixed + per_phoneme × phonemes``, and a phoneme
yields ``audio_per_phoneme / speed`` seconds of audio. Both are refitted after every chunk the
engine makes, starting from figures measured on a 2-core CPU; each warm session keeps its own.

Before each chunk the scheduler knows how much audio is buffered ahead of the player: audio
made so far minus the time since playback started (the first chunk's arrival). The next chunk
may be as long as that buffer can cover with a safety margin, but at least a floor (a few
words) and at most the efficiency cap.
"""

from __future__ import annotations

import numpy as np

from .chunking import EFFICIENT_CAP

MIN_BUDGET = 24  # phonemes: a few words, so a starved buffer still makes progress
SAFETY = 0.8  # use this fraction of the buffered audio as the synthesis time allowed


class SpeedModel:
    """Synthesis cost and audio yield per phoneme, fitted to the chunks measured so far.

    Cost is a straight line ``fixed + per_phoneme × phonemes`` fitted by least squares over the
    last :data:`HISTORY` chunks; until those span enough lengths, two prior points join the fit
    (so a first, noisy chunk cannot swing it wildly). The priors are what a 2-core CPU
    measured for the int8 graph; a faster machine or provider overrides them within a few chunks.
    """

    PRIOR = ((16, 1.25, 1.6), (300, 11.5, 17.5))  # (phonemes, synthesis s, audio s)
    HISTORY = 12

    def __init__(self) -> None:
        self._seen: list[tuple[int, float, float]] = []
        self.fixed_s, self.per_phoneme_s, self.audio_per_phoneme_s = self._fit()

    def predict_synthesis_s(self, phonemes: int) -> float:
        return self.fixed_s + self.per_phoneme_s * phonemes

    def observe(self, phonemes: int, synthesis_s: float, audio_s: float, speed: float) -> None:
        """Record one chunk: its phoneme count, synthesis time and raw audio length at 1×."""
        if phonemes <= 0 or synthesis_s <= 0:
            return
        self._seen = [*self._seen, (phonemes, synthesis_s, audio_s * speed)][-self.HISTORY:]
        self.fixed_s, self.per_phoneme_s, self.audio_per_phoneme_s = self._fit()

    def _fit(self) -> tuple[float, float, float]:
        seen = np.array(self._seen, dtype=float).reshape(-1, 3)
        # Trust the measurements alone once they span enough lengths to fit a line.
        enough = len(seen) >= 3 and np.ptp(seen[:, 0]) >= 10
        points = seen if enough else np.array([*self.PRIOR, *self._seen], dtype=float)
        x, cost, audio = points[:, 0], points[:, 1], points[:, 2]
        slope, intercept = np.polyfit(x, cost, 1)
        slope = max(slope, 1e-4)
        intercept = max(intercept, 0.0)
        return float(intercept), float(slope), float(audio.sum() / x.sum())


class Scheduler:
    """Tracks the playback buffer of one stream and sizes its next chunk."""

    def __init__(self, model: SpeedModel, cap: int = EFFICIENT_CAP):
        self.model = model
        self.cap = cap
        self.playback_start: float | None = None
        self.audio_made_s = 0.0

    def chunk_ready(self, now: float, audio_s: float) -> None:
        if self.playback_start is None:
            self.playback_start = now
        self.audio_made_s += audio_s

    def buffered_s(self, now: float) -> float:
        if self.playback_start is None:
            return 0.0
        return max(0.0, self.audio_made_s - (now - self.playback_start))

    def budget(self, now: float) -> int:
        """Largest phoneme count whose predicted synthesis fits the buffered audio."""
        allowed = self.buffered_s(now) * SAFETY - self.model.fixed_s
        phonemes = int(allowed / self.model.per_phoneme_s) if allowed > 0 else 0
        return max(MIN_BUDGET, min(self.cap, phonemes))
