"""How big the next chunk may be so that synthesis stays ahead of playback.

The model is a line: synthesis seconds ≈ ``fixed + per_phoneme × phonemes``, and a phoneme
yields ``audio_per_phoneme / speed`` seconds of audio. Both are refitted after every chunk the
engine makes, starting from figures measured on a 2-core CPU; each warm session keeps its own.

Before each chunk the scheduler knows how much audio is buffered ahead of the player: audio
made so far minus the time since playback started (the first chunk's arrival). The next chunk
may be as long as that buffer can cover with a safety margin, but at least a floor (a few
words) and at most the efficiency cap.

On a multi-core CPU, once the buffer is long enough, chunks go to *lanes*: several
single-thread runs in parallel, because ONNX Runtime scales poorly across intra-op threads for
this model (one run on 2 threads is ~1.4× faster than on 1, two runs side by side are ~2×).
A lane chunk's deadline is when the chunks ahead of it (made or in flight) finish playing.
"""

from __future__ import annotations

import numpy as np

from .chunking import EFFICIENT_CAP

MIN_BUDGET = 24  # phonemes: a few words, so a starved buffer still makes progress
LANE_MIN_PHONEMES = 40  # a lane chunk smaller than this is not worth leaving latency mode
SAFETY = 0.8  # use this fraction of the buffered audio as the synthesis time allowed
GROWTH_MARGIN = 0.1  # a chunk "grows the buffer" if its audio outlasts its synthesis by 10 %
JUMP = 3  # when a stall is unavoidable on a long text, ask for this many break-even chunks
LONG_TEXT_CHARS = 600  # ~40 s of speech: enough text left for one longer stall to pay off
MAX_JUMP_STALL_S = 1.5  # the longest stall such a jump may cost


class SpeedModel:
    """Synthesis cost and audio yield per phoneme, fitted to the chunks measured so far.

    Cost is a straight line ``fixed + per_phoneme × phonemes`` fitted by least squares over the
    last :data:`HISTORY` chunks; until those span enough lengths, two prior points join the fit
    (so a first, noisy chunk cannot swing it wildly). The priors are what a 2-core CPU
    measured for the int8 graph; a faster machine or provider overrides them within a few chunks.
    """

    # (phonemes, synthesis s, playable audio s: trimmed, with its pause)
    PRIOR = ((16, 1.25, 1.1), (300, 11.5, 17.0))
    HISTORY = 12

    def __init__(self, prior_scale: float = 1.0) -> None:
        # Fewer threads than the priors were measured with make every chunk slower.
        self._prior = tuple((p, cost * prior_scale, audio) for p, cost, audio in self.PRIOR)
        self._seen: list[tuple[int, float, float]] = []
        self.fixed_s, self.per_phoneme_s, self.audio_per_phoneme_s = self._fit()

    def predict_synthesis_s(self, phonemes: int) -> float:
        return self.fixed_s + self.per_phoneme_s * phonemes

    def predict_audio_s(self, phonemes: int, speed: float) -> float:
        return self.audio_per_phoneme_s * phonemes / speed

    def keeps_up(self, margin: float = GROWTH_MARGIN) -> bool:
        """Whether a long enough chunk makes audio faster than real time."""
        return self.audio_per_phoneme_s > self.per_phoneme_s * (1 + margin)

    def break_even(self, cap: int, margin: float = GROWTH_MARGIN) -> int:
        """Smallest chunk whose audio outlasts its synthesis by ``margin``; ``cap`` if none."""
        gain = self.audio_per_phoneme_s - self.per_phoneme_s * (1 + margin)
        if gain <= 0:
            return cap  # slower than real time at any size: the largest chunks stall least
        return min(cap, int(np.ceil(self.fixed_s * (1 + margin) / gain)))

    def observe(self, phonemes: int, synthesis_s: float, audio_s: float, speed: float) -> None:
        """Record one chunk: phonemes, synthesis time, and playable audio (as if at 1× speed)."""
        if phonemes <= 0 or synthesis_s <= 0:
            return
        self._seen = [*self._seen, (phonemes, synthesis_s, audio_s * speed)][-self.HISTORY:]
        self.fixed_s, self.per_phoneme_s, self.audio_per_phoneme_s = self._fit()

    def _fit(self) -> tuple[float, float, float]:
        seen = np.array(self._seen, dtype=float).reshape(-1, 3)
        # Trust the measurements alone once they span enough lengths to fit a line.
        enough = len(seen) >= 3 and np.ptp(seen[:, 0]) >= 10
        points = seen if enough else np.array([*self._prior, *self._seen], dtype=float)
        x, cost, audio = points[:, 0], points[:, 1], points[:, 2]
        slope, intercept = np.polyfit(x, cost, 1)
        slope = max(slope, 1e-4)
        intercept = max(intercept, 0.0)
        return float(intercept), float(slope), float(audio.sum() / x.sum())


class Scheduler:
    """Tracks the playback buffer of one stream and sizes its next chunk."""

    def __init__(self, model: SpeedModel, cap: int = EFFICIENT_CAP, adaptive: bool = True):
        self.model = model
        self.cap = cap
        self.adaptive = adaptive  # False: every chunk gets the cap, whatever was measured
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

    def budget(self, now: float, remaining_chars: int = 0) -> int:
        """Phonemes for the next chunk on the all-cores session.

        The largest chunk whose predicted synthesis fits the buffered audio — unless that is
        smaller than the break-even chunk (the smallest that makes more audio than it costs):
        then some stall is unavoidable. On a short remaining text the break-even chunk keeps
        each stall short. On a long one (``remaining_chars``) a chunk of up to :data:`JUMP`
        break-even sizes takes one longer stall (at most :data:`MAX_JUMP_STALL_S`) but builds
        a buffer that ends the stalls and lets the parallel lanes take over; many break-even
        chunks would stall a little every time, for the whole text.
        """
        if not self.adaptive:
            return self.cap
        allowed = self.buffered_s(now) * SAFETY - self.model.fixed_s
        affordable = int(allowed / self.model.per_phoneme_s) if allowed > 0 else 0
        break_even = self.model.break_even(self.cap)
        if affordable < break_even and remaining_chars > LONG_TEXT_CHARS:
            stall_bound = self.buffered_s(now) + MAX_JUMP_STALL_S - self.model.fixed_s
            jump = min(JUMP * break_even, int(stall_bound / self.model.per_phoneme_s))
            break_even = max(break_even, jump)
        return max(MIN_BUDGET, min(self.cap, max(affordable, break_even)))

    def lane_budget(self, now: float, pending_s: float, lane: SpeedModel) -> int | None:
        """Phonemes for a chunk started now on a lane, or None to stay in latency mode.

        The chunk plays once the buffer and the chunks still in flight (``pending_s`` of
        predicted audio) have played, so that is its deadline; lanes are slower per chunk
        than the all-cores session, hence their own speed model. On a machine slower than
        real time the lanes always run, with the largest chunks: that stalls least.
        """
        if not self.model.keeps_up():
            return self.cap  # stalls are certain: make the most audio per second, in parallel
        allowed = (self.buffered_s(now) + pending_s) * SAFETY - lane.fixed_s
        phonemes = int(allowed / lane.per_phoneme_s) if allowed > 0 else 0
        if phonemes < LANE_MIN_PHONEMES:
            return None
        return min(self.cap, phonemes)
