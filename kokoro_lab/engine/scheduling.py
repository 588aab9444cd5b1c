"""How big the next chunk may be so that synthesis stays ahead of playback.

The model is a line: synthesis seconds ≈ ``fixed + per_phoneme × phonemes``, and a phoneme
yields ``audio_per_phoneme / speed`` seconds of audio. Both are updated from every chunk the
engine makes (an exponential moving average), starting from figures measured on a 2-core CPU.

Before each chunk the scheduler knows how much audio is buffered ahead of the player: audio
made so far minus the time since playback started (the first chunk's arrival). The next chunk
may be as long as that buffer can cover with a safety margin, but at least a floor (a few
words) and at most the efficiency cap.
"""

from __future__ import annotations

from dataclasses import dataclass

from .chunking import EFFICIENT_CAP

MIN_BUDGET = 24  # phonemes: a few words, so a starved buffer still makes progress
SAFETY = 0.7  # use this fraction of the buffered audio as the synthesis time allowed
SMOOTHING = 0.3


@dataclass
class SpeedModel:
    """Synthesis cost and audio yield per phoneme, learned from measured chunks."""

    fixed_s: float = 0.12
    per_phoneme_s: float = 0.0045
    audio_per_phoneme_s: float = 0.075

    def predict_synthesis_s(self, phonemes: int) -> float:
        return self.fixed_s + self.per_phoneme_s * phonemes

    def observe(self, phonemes: int, synthesis_s: float, audio_s: float, speed: float) -> None:
        if phonemes <= 0:
            return
        per_phoneme = max(1e-5, (synthesis_s - self.fixed_s) / phonemes)
        self.per_phoneme_s += SMOOTHING * (per_phoneme - self.per_phoneme_s)
        self.audio_per_phoneme_s += SMOOTHING * (audio_s * speed / phonemes
                                                 - self.audio_per_phoneme_s)


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
