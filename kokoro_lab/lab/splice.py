"""The trailing splice, measured and rejected by ear (the engine does not run it).

The rule under test: besides skipping the silent lead pad (as the engine's ``skip_pads``
decoder does), keep audio only to ``after`` frames past the middle of the last spoken token,
then decode the chunk's last ``edge`` frames for the vocoder's time statistics and throw them
away. ``benchmarks/skip_pads_by_ear.py`` judged it: 15 % of the frames skipped at PESQ-WB 4.14
and −0.03 DNSMOS against the unsplit chunk, over the bar, so the engine decodes to the end.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..engine.decoding import Decoder, durations_of, first_decoded_frame
from ..engine.split import DURATION_FRAMES, F0, FRAME_SAMPLES

TRAIL_EDGE_FRAMES = 8  # the chunk's last frames, decoded for the statistics only


@dataclass(frozen=True)
class SplicePlan:
    """Frames the vocoder runs on: ``[begin, keep_end)`` kept, then ``[edge, total)`` for the
    statistics only (``edge == total`` when nothing is spliced)."""

    begin: int
    keep_end: int
    edge: int
    total: int

    @property
    def frames(self) -> np.ndarray:
        return np.r_[self.begin:self.keep_end, self.edge:self.total]


def plan_splice(tokens: np.ndarray, durations: np.ndarray, silent: frozenset[int], lead: int,
                after: int | None, edge: int = TRAIL_EDGE_FRAMES) -> SplicePlan:
    """What the vocoder decodes of one chunk; ``after=None`` keeps everything to the end."""
    tokens = np.asarray(tokens).ravel()
    ends = np.cumsum(np.asarray(durations).ravel()) * DURATION_FRAMES
    total = int(ends[-1])
    begin = first_decoded_frame(tokens, durations, silent, lead)
    spoken = np.flatnonzero(~np.isin(tokens, list(silent)))
    keep_end = total
    if after is not None and spoken.size:
        last = int(spoken[-1])
        middle = int(ends[last]) - int(ends[last] - (ends[last - 1] if last else 0)) // 2
        keep_end = min(total, max(begin + 1, middle + after))
    if keep_end >= total - edge:  # too little to splice out: decode to the end
        return SplicePlan(begin, total, total, total)
    return SplicePlan(begin, keep_end, total - edge, total)


def render_spliced(decoder: Decoder, tokens: np.ndarray, style: np.ndarray, speed: float,
                   lead: int, after: int | None) -> tuple[np.ndarray, SplicePlan]:
    """One chunk decoded by ``decoder``'s split sessions under a splice plan: the kept audio
    (starting at frame ``plan.begin`` of the full output) and the plan."""
    if decoder.mode != "skip_pads":
        raise ValueError("a splice needs the split decoder (mode 'skip_pads')")
    inputs = {"tokens": tokens, "style": style, "speed": np.array([speed], np.float32)}
    front = decoder.front(inputs)
    plan = plan_splice(tokens, durations_of(front), decoder.silent, lead, after)
    assert plan.total == int(front[F0].shape[-1])
    audio = decoder.generate(front, plan.frames)
    return audio[: (plan.keep_end - plan.begin) * FRAME_SAMPLES], plan


__all__ = ["TRAIL_EDGE_FRAMES", "SplicePlan", "plan_splice", "render_spliced"]
