"""One press of Speak: engine streams feeding one player stream, re-voiced between chunks.

An :class:`Utterance` is a :class:`~kokoro_lab.notebook.feeder.Feeder`; the rules it adds:

* **Voice and speed changes during playback apply from the next chunk on.** An engine
  :class:`~kokoro_lab.engine.Stream` takes its voice and speed at start, so a change cancels the
  stream and starts a new one on the unspoken remainder of the text, at the next chunk
  boundary. The remainder is found by matching each sent chunk's words against the request's
  normalised text (chunk texts are its own words, in order), so no word is skipped or said
  twice.
* **Audio is sent to the browser only ``lead_s`` ahead of playback** (paced by the browser's own
  schedule reports, or by a real-time estimate when no browser reports), so "the next chunk" is
  the one after the chunk that is playing, not the end of whatever was synthesized ahead.
* **All segments play as one utterance**: one player stream, one latency chart, one result
  whose chunks are numbered 0, 1, 2 … across segments and carry the voice and speed they were
  made with.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass, field

from ...engine import SAMPLE_RATE, Chunk, Stream, Synthesizer, TextError, Voice
from ..chart import LatencyChart
from ..feeder import Feeder
from ..player import Player
from ..result import SpeakResult

LEAD_S = 1.0  # seconds of audio sent ahead of playback: room to re-synthesize after a change
CHART_MIN_AHEAD_S = 0.5  # the chart redraws while synthesizing only with this much audio ahead


@dataclass(repr=False)
class StudioResult(SpeakResult):
    """A Studio utterance: a :class:`SpeakResult` whose chunks may come from several segments.

    ``segments`` lists where each engine stream began (``first_chunk``) and the voice and speed
    it used; a voice or speed change during playback starts a new segment.
    """

    segments: list[dict] = field(default_factory=list)


@dataclass(frozen=True)
class Settings:
    """What the engine needs for one segment."""

    voice: Voice
    speed: float


def _advance(cleaned: str, position: int, chunk_text: str) -> int:
    """The position in ``cleaned`` just after ``chunk_text``'s words, searched from
    ``position``. Words are found one by one, so pieces the engine dropped (emoji, stray
    symbols between words) are skipped rather than breaking the match."""
    for word in chunk_text.split():
        found = cleaned.find(word, position)
        if found >= 0:
            position = found + len(word)
    return position


class Utterance(Feeder):
    """One press of Speak: segments of engine streams played as one stream in a player.

    Chunks are held in the kernel until playback is within ``lead_s`` of needing them
    (``lead_s=None`` sends each chunk as soon as it is made). :meth:`update` asks for a new
    voice or speed; it takes effect from the next chunk sent.
    """

    thread_name = "kokoro-lab-studio"
    chart_min_buffer_s = CHART_MIN_AHEAD_S
    # The page holds at most lead_s of audio (the rest waits here), so its buffer says nothing
    # about how far synthesis is ahead: the engine's own playback model sizes the chunks.
    sizes_chunks_from_page = False

    def __init__(self, synth: Synthesizer, text: str, settings: Settings, *,
                 provider: str, precision: str, player: Player | None = None,
                 chart: LatencyChart | None = None, lead_s: float | None = LEAD_S,
                 requested: float | None = None, origin: str = "Speak was pressed",
                 player_lock: threading.RLock | None = None) -> None:
        # The first request is checked here, on the caller's thread, so bad input raises at once.
        request = synth.request(text, settings.voice, settings.speed, precision=precision,
                                provider=provider)
        result = StudioResult(
            chunks=[], provider=request.provider, precision=request.precision,
            text=request.text, voice=settings.voice.label, speed=settings.speed,
            lang=request.lang, requested=time.perf_counter() if requested is None else requested)
        super().__init__(result, player=player, requested=result.requested,
                         player_lock=player_lock)
        self.synth = synth
        self.request = request
        self.provider, self.precision = request.provider, request.precision
        self.lead_s = lead_s
        self._position = 0  # how much of the request's text has been sent to the player
        self._settings = settings
        self._pending: Settings | None = None
        self._lock = threading.Lock()
        self._wake_event = threading.Event()  # set on update() / stop(): the feeder re-checks
        self._play_end = 0.0  # perf_counter when the audio sent so far ends playing
        self._durations: list[float] = []  # seconds per chunk sent, by sequence number
        self.stream = synth.stream(request)
        result.provider, result.precision = self.stream.loaded.provider, \
            self.stream.loaded.precision
        result.segments.append(self._segment(settings))
        if player is not None:
            self._take_player(label=request.label, origin=origin)
        if chart is not None:
            self.attach_chart(chart)

    # -- control ----------------------------------------------------------------------------

    @property
    def settings(self) -> Settings:
        """The voice and speed of the segment being sent now."""
        return self._settings

    def update(self, settings: Settings) -> None:
        """Use ``settings`` from the next chunk sent to the player on."""
        with self._lock:
            self._pending = settings
        self._wake_event.set()

    def _wake(self) -> None:
        self._wake_event.set()

    def buffered_ahead_s(self) -> float:
        """Audio sent ahead of the listener, from the page's schedule (or the estimate)."""
        if not self.running:
            return float("inf")
        with self._lock:
            return max(0.0, self._play_end - time.perf_counter())

    def _observe(self, report: dict) -> None:
        """The browser scheduled chunk ``seq``: re-anchor the playback estimate on its clock."""
        if report.get("type") != "scheduled":
            return
        try:
            seq = int(report["seq"])
            ends_in = float(report["start"]) + float(report["duration"]) - float(report["now"])
            received = float(report.get("made", report["received"]))
        except (KeyError, TypeError, ValueError):
            return
        with self._lock:
            later = sum(self._durations[seq + 1:])
            self._play_end = received + ends_in + later
        self._wake_event.set()

    # -- the feeder thread ------------------------------------------------------------------

    def _segment(self, settings: Settings) -> dict:
        return {"first_chunk": len(self.result.chunks), "voice": settings.voice.label,
                "speed": settings.speed, "started": time.perf_counter()}

    def _take_change(self) -> Settings | None:
        """The pending settings if they differ from the current segment's, else None."""
        with self._lock:
            pending, self._pending = self._pending, None
        if pending is None or pending == self._settings:
            return None
        return pending

    def _hold(self) -> Settings | None:
        """Wait until the next chunk is due in the player; return new settings if a change
        arrives meanwhile (the held chunk is then dropped and re-synthesized)."""
        while not self._stopping.is_set():
            change = self._take_change()
            if change is not None:
                return change
            if self.lead_s is None:
                return None
            with self._lock:
                ahead = self._play_end - time.perf_counter()
            if ahead <= self.lead_s:
                return None
            self._wake_event.wait(min(0.05, ahead - self.lead_s))
            self._wake_event.clear()
        return None

    def _feed(self) -> None:
        stream: Stream | None = self.stream
        while stream is not None and not self._stopping.is_set():
            stream = self._consume(stream)

    def _consume(self, stream: Stream) -> Stream | None:
        """Send ``stream``'s chunks; return the stream to continue with (None at the end)."""
        for chunk in stream:
            change = self._hold()
            if self._stopping.is_set():
                return None
            if change is not None:
                stream.cancel()
                return self._restart(change)
            self._send(chunk)
        return None

    def _restart(self, settings: Settings) -> Stream | None:
        """A new stream with ``settings`` on the text not yet sent (None if nothing is left)."""
        remainder = self.request.text[self._position:]
        self._settings = settings
        try:
            request = self.synth.request(remainder, settings.voice, settings.speed,
                                         precision=self.precision, provider=self.provider)
        except TextError:  # only punctuation or unspeakable symbols left
            return None
        self.result.segments.append(self._segment(settings))
        stream = self.synth.stream(request)
        self.stream = stream  # what stop() cancels
        if self._stopping.is_set():  # stopped while the new stream was starting
            stream.cancel()
        return stream

    def _send(self, chunk: Chunk) -> None:
        sequence = len(self.result.chunks)
        # One numbering and one clock for the whole utterance: the chunk's index in it, and
        # ready times measured from the press of Speak rather than from its segment's start.
        chunk = dataclasses.replace(chunk, index=sequence, queued=self.requested)
        now = time.perf_counter()
        with self._lock:
            self._durations.append(len(chunk.audio) / SAMPLE_RATE)
            self._play_end = max(self._play_end, now) + self._durations[-1]
        self.result.chunks.append(chunk)
        self._position = _advance(self.request.text, self._position, chunk.text)
        self._deliver(chunk, voice=chunk.voice, speed=chunk.speed)


__all__ = ["LEAD_S", "Settings", "StudioResult", "Utterance"]
