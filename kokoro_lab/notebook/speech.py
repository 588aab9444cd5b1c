"""One ``%%speak`` utterance: a :class:`~kokoro_lab.notebook.feeder.Feeder` of one engine stream.

The rules (besides the feeder's):

* A queued utterance (see :mod:`kokoro_lab.notebook.magic`) starts synthesizing when the one
  ahead of it has finished synthesizing, so two cells never compete for the CPU; the page
  plays them one after the other. Its request was checked in its cell; it starts on the
  feeder thread, without checking anything again.
* The figures that count are the page's: what it measured it played comes back as ``heard``
  reports (first audible sample after the cell ran, stalls, seconds played) into
  :attr:`SpeakResult.heard`. Engine and kernel figures stay, labelled as such.
"""

from __future__ import annotations

import time

from ..engine import SpeechRequest, Stream, Synthesizer
from .chart import LatencyChart
from .feeder import Feeder
from .player import Player
from .result import SpeakResult


class Speech(Feeder):
    """Drive one engine stream into an optional :class:`Player` and :class:`LatencyChart`.

    ``source`` is a running :class:`Stream`, or a checked :class:`SpeechRequest` that
    ``synth`` starts on the feeder thread once ``after`` (the utterance queued ahead of this
    one) has finished synthesizing.
    """

    def __init__(self, source: Stream | SpeechRequest, *, synth: Synthesizer | None = None,
                 player: Player | None = None, chart: LatencyChart | None = None,
                 requested: float | None = None, label: str = "", after: Speech | None = None,
                 order: int = 0, milestones: dict[str, float] | None = None) -> None:
        running = isinstance(source, Stream)
        if not running and synth is None:
            raise ValueError("a queued request needs the synthesizer that will start it")
        request = source.request if running else source
        if requested is None:
            requested = source.queued if running else time.perf_counter()
        result = SpeakResult(
            chunks=source.chunks if running else [], provider=request.provider,
            precision=request.precision, text=request.text, voice=request.voice.label,
            speed=request.speed, lang=request.lang, requested=requested)
        super().__init__(result, player=player, requested=requested, milestones=milestones)
        self.synth = synth
        self.request = request
        self.stream = source if running else None
        self.after = after
        self.order = order
        self.cell_id: str | None = None  # the notebook cell that asked for it (re-run rule)
        self.model_wait_ms = 0.0  # how long the request waited for the model to be loaded
        if player is not None:
            previous = getattr(player, "_speech", None)
            if previous is not None and previous is not self:
                previous.stop("replaced by a new utterance")
                previous.detach()
            player._speech = self
            self._take_player(label=label or request.label, order=order,
                              after=after.stream_id if after is not None else None)
        if chart is not None:
            self.attach_chart(chart)

    def _feed(self) -> None:
        if self.stream is None and not self._wait_turn():
            return
        for chunk in self.stream:
            self._deliver(chunk)

    def _wait_turn(self) -> bool:
        """Wait for the utterance ahead to finish synthesizing, then start ours; False if
        this one was stopped meanwhile."""
        while self.after is not None and not self.after.synthesized.wait(0.1):
            if self._stopping.is_set():
                return False
        if self._stopping.is_set():
            return False
        self.stream = self.synth.stream(self.request)
        self.result.chunks = self.stream.chunks
        self.result.provider = self.stream.loaded.provider
        self.result.precision = self.stream.loaded.precision
        return True


__all__ = ["SpeakResult", "Speech"]
