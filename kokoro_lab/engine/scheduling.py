"""How big the next chunk may be so that synthesis stays ahead of playback.

The model is a line: synthesis seconds ≈ ``fixed + per_phoneme × phonemes``, and a phoneme
yields ``audio_per_phoneme / speed`` seconds of audio. Both are refitted after every chunk the
engine makes, starting from figures measured on a 2-core CPU; each warm session keeps its own.

Before each chunk the scheduler knows how much audio is buffered ahead of the player. When the
player has reported its buffer within :data:`FRESH_S` seconds (:meth:`Scheduler.observe_playback`)
that measurement is used, aged by the time since it was taken plus the audio delivered since;
otherwise a simulated player is used: playback starts at the first chunk's arrival (plus any
start margin), each chunk plays right after the one before, and a late chunk pauses it. The
next chunk may be as long as that buffer can cover with a safety margin, but at least a floor
(a few words) and at most the efficiency cap.

**Start margin.** When chunk 0 is ready, the speed measured on it (its synthesis time against
the speed model's prediction: a loaded machine is slower *now*) is used to replay the
scheduler's own budgets for the rest of the text on a simulated clock. If that replay stalls,
playback should start later: the margin is the smallest wait, in steps of
:data:`MARGIN_STEP_S`, whose replay has no stall, at most :data:`MAX_START_MARGIN_S` (the bound
is taken when no shorter wait avoids every stall: one short wait beats repeated stalls). The
replay ignores lanes, so it errs towards a margin.

On a multi-core CPU, once the buffer is long enough, chunks go to *lanes*: several
single-thread runs in parallel, because ONNX Runtime scales poorly across intra-op threads for
this model (one run on 2 threads is ~1.4× faster than on 1, two runs side by side are ~2×).
A lane chunk's deadline is when the chunks ahead of it (made or in flight) finish playing.
"""

from __future__ import annotations

import copy
import threading
from collections import deque

import numpy as np

from .chunking import EFFICIENT_CAP

MIN_BUDGET = 24  # phonemes: a few words, so a starved buffer still makes progress
# Lane chunks run two at a time, and a run's working set peaks at ~1 MB per phoneme (int8, CPU):
# two at 120 phonemes kept RSS within 280 MB of the warm engine over 60 chunks, where two at
# the efficiency cap (220) reached ~480 MB, at the same throughput
# (benchmarks/memory_long_read.py).
LANE_CAP = 120
LANE_MIN_PHONEMES = 40  # a lane chunk smaller than this is not worth leaving latency mode
SAFETY = 0.8  # use this fraction of the buffered audio as the synthesis time allowed
GROWTH_MARGIN = 0.1  # a chunk "grows the buffer" if its audio outlasts its synthesis by 10 %
JUMP = 3  # when a stall is unavoidable on a long text, ask for this many break-even chunks
LONG_TEXT_CHARS = 600  # ~40 s of speech: enough text left for one longer stall to pay off
MAX_JUMP_STALL_S = 1.5  # the longest stall such a jump may cost
FRESH_S = 3.0  # a player's buffer report older than this is stale: fall back to the simulation
MAX_START_MARGIN_S = 1.5  # the longest wait before playback the engine may ask for
MARGIN_STEP_S = 0.1
STALL_TOLERANCE_S = 0.05  # predicted stalls shorter than this are noise, not stalls
REPLAY_HORIZON_S = 60.0  # replay at most this much audio when choosing a start margin


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

    def slowed(self, factor: float) -> SpeedModel:
        """A copy whose synthesis costs ``factor`` times this fit's (for replays at the speed
        measured now); it is not meant to observe more chunks."""
        slowed = copy.copy(self)
        slowed.fixed_s, slowed.per_phoneme_s = self.fixed_s * factor, self.per_phoneme_s * factor
        return slowed

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
    """Tracks the playback buffer of one stream and sizes its next chunk.

    Times are ``time.perf_counter()`` seconds passed in by the caller (``now``), so a test can
    drive it with a fake clock. :meth:`observe_playback` may be called from any thread.
    """

    def __init__(self, model: SpeedModel, cap: int = EFFICIENT_CAP, adaptive: bool = True):
        self.model = model
        self.cap = cap
        self.adaptive = adaptive  # False: every chunk gets the cap, whatever was measured
        self._dry_at: float | None = None  # when the simulated player runs out of audio
        self._lock = threading.Lock()
        self._deliveries: deque[tuple[float, float]] = deque(maxlen=64)  # (when, audio s)
        self._measured: tuple[float, float] | None = None  # (measured at, runs dry at)

    def chunk_ready(self, now: float, audio_s: float, start_margin_s: float = 0.0) -> None:
        """A chunk of ``audio_s`` seconds reached the player at ``now``; the first one starts
        playback ``start_margin_s`` later."""
        with self._lock:
            if self._dry_at is None:  # the first chunk: playback starts after the margin
                self._dry_at = now + start_margin_s
            self._dry_at = max(self._dry_at, now) + audio_s  # a late chunk paused the player
            self._deliveries.append((now, audio_s))
            if self._measured is not None:
                at, dry = self._measured
                self._measured = (at, max(dry, now) + audio_s)

    def observe_playback(self, buffered_s: float, at: float) -> None:
        """The player had ``buffered_s`` seconds of audio queued ahead at time ``at``."""
        if not np.isfinite(buffered_s) or buffered_s < 0:
            raise ValueError(f"buffered_s must be a finite number >= 0, got {buffered_s!r}")
        with self._lock:
            if self._measured is not None and at < self._measured[0]:
                return  # an older report arriving late changes nothing
            dry = at + buffered_s
            for when, audio_s in self._deliveries:  # delivered after the measurement
                if when > at:
                    dry = max(dry, when) + audio_s
            self._measured = (at, dry)

    def buffered_s(self, now: float) -> float:
        """Seconds of audio ahead of the listener at ``now``: measured if fresh, else simulated."""
        with self._lock:
            if self._fresh(now):
                return max(0.0, self._measured[1] - now)
            if self._dry_at is None:
                return 0.0
            return max(0.0, self._dry_at - now)

    def measured(self, now: float) -> bool:
        """Whether :meth:`buffered_s` is using a fresh report from the player at ``now``."""
        with self._lock:
            return self._fresh(now)

    def _fresh(self, now: float) -> bool:
        """A player's report younger than :data:`FRESH_S` at ``now`` (call with the lock held)."""
        return self._measured is not None and now - self._measured[0] < FRESH_S

    def start_margin_s(self, first_audio_s: float, remaining_phonemes: int, speed: float,
                       slowdown: float = 1.0, chars_per_phoneme: float = 1.0) -> float:
        """The wait before playback that avoids stalls for the rest of the text (see the module
        docstring); 0.0 when none is needed, at most :data:`MAX_START_MARGIN_S`.

        ``first_audio_s`` is chunk 0's playable audio; ``slowdown`` is how much slower than
        the speed model chunk 0 was made (> 1 on a loaded machine).
        """
        if remaining_phonemes <= 0 or not self.adaptive:
            return 0.0
        steps = int(round(MAX_START_MARGIN_S / MARGIN_STEP_S))
        for step in range(steps + 1):
            margin = step * MARGIN_STEP_S
            stall = predict_stall_s(self.model, self.cap, first_audio_s, remaining_phonemes,
                                    speed, max(slowdown, 1e-3), margin, chars_per_phoneme)
            if stall <= STALL_TOLERANCE_S:
                return margin
        return MAX_START_MARGIN_S

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
            # stalls are certain: make the most audio per second, in parallel
            return min(self.cap, LANE_CAP)
        allowed = (self.buffered_s(now) + pending_s) * SAFETY - lane.fixed_s
        phonemes = int(allowed / lane.per_phoneme_s) if allowed > 0 else 0
        if phonemes < LANE_MIN_PHONEMES:
            return None
        return min(self.cap, LANE_CAP, phonemes)


def predict_stall_s(model: SpeedModel, cap: int, first_audio_s: float, remaining_phonemes: int,
                    speed: float, slowdown: float, margin_s: float,
                    chars_per_phoneme: float = 1.0) -> float:
    """Total stall the rest of a text would cost, predicted by replaying the scheduler.

    Chunk 0 (``first_audio_s`` of audio) is ready at 0 and plays from ``margin_s``; each later
    chunk gets the budget :meth:`Scheduler.budget` would give it with the speed model slowed by
    ``slowdown`` (what the engine's model learns within a few chunks), costs that model's
    prediction and is made one after another (no lanes). The replay stops after
    :data:`REPLAY_HORIZON_S` seconds of audio.
    """
    model = model.slowed(slowdown)
    replay = Scheduler(model, cap)
    replay.chunk_ready(0.0, first_audio_s, start_margin_s=margin_s)
    now, left, stall, made = 0.0, remaining_phonemes, 0.0, first_audio_s
    while left > 0 and made < REPLAY_HORIZON_S:
        phonemes = min(left, replay.budget(now, int(left * chars_per_phoneme)))
        now += model.predict_synthesis_s(phonemes)
        stall += max(0.0, now - replay._dry_at)
        audio_s = model.predict_audio_s(phonemes, speed)
        replay.chunk_ready(now, audio_s)
        left -= phonemes
        made += audio_s
    return stall
