"""One press of Speak: engine streams feeding one player stream, re-voiced between chunks.

The rules this module implements:

* **Voice and speed changes during playback apply from the next chunk on.** The engine's
  :class:`~kokoro_lab.engine.synthesizer.Stream` takes its voice and speed at start, so a change
  cancels the stream and starts a new one on the unspoken remainder of the text, at the next
  chunk boundary. The remainder is found by matching each sent chunk's words against the
  cleaned input (chunk texts are the input's own words, in order), so no word is skipped or
  said twice.
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
from collections.abc import Callable
from dataclasses import dataclass, field

from ...engine.chunking import TextError, clean_text
from ...engine.metrics import SAMPLE_RATE, Chunk
from ...engine.synthesizer import Stream, Synthesizer
from ...engine.voices import Voice
from ..chart import LatencyChart
from ..player import Player
from ..speech import SpeakResult, chunk_meta, join_interruptibly

LEAD_S = 1.0  # seconds of audio sent ahead of playback: room to re-synthesize after a change
CHART_MIN_AHEAD_S = 0.5  # the chart redraws while synthesizing only with this much audio ahead
PREVIEW_CHARS = 60



@dataclass(repr=False)
class StudioResult(SpeakResult):
    """A Studio utterance: a :class:`SpeakResult` whose chunks may come from several segments.

    ``segments`` lists where each engine stream began (``first_chunk``) and the voice and speed
    it used; a voice or speed change during playback starts a new segment.
    """

    segments: list[dict] = field(default_factory=list)
    _player: Player | None = field(default=None, compare=False)

    @property
    def player(self) -> Player | None:
        """The Studio's player, which holds what the page reported it heard."""
        return self._player


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


class Utterance:
    """One press of Speak: segments of engine streams played as one stream in a player.

    Chunks are held in the kernel until playback is within ``lead_s`` of needing them
    (``lead_s=None`` sends each chunk as soon as it is made). :meth:`update` asks for a new
    voice or speed; it takes effect from the next chunk sent.
    """

    def __init__(self, synth: Synthesizer, text: str, settings: Settings, *,
                 provider: str, precision: str, player: Player | None = None,
                 chart: LatencyChart | None = None, lead_s: float | None = LEAD_S,
                 requested: float | None = None,
                 player_lock: threading.RLock | None = None) -> None:
        self.synth = synth
        self.text = text
        self.provider = provider
        self.precision = precision
        self.player = player
        self.chart = chart
        self.lead_s = lead_s
        # Held while talking to the player: a stopping utterance's feeder may still be
        # finishing a chunk when the next one takes the player over, and must not push into,
        # stop or end the newer stream (see _owns_player).
        self._player_lock = player_lock or threading.RLock()
        self.requested = time.perf_counter() if requested is None else requested
        self._cleaned = clean_text(text)
        self._position = 0  # how much of the cleaned text has been sent to the player
        self._settings = settings
        self._pending: Settings | None = None
        self._lock = threading.Lock()
        self._wake = threading.Event()  # set on update() / stop(): the feeder re-checks
        self._stopped = threading.Event()
        self._stop_reason = ""
        self._play_end = 0.0  # perf_counter when the audio sent so far ends playing
        self._durations: list[float] = []  # seconds per chunk sent, by sequence number
        self.on_chunk: list[Callable[[Chunk], None]] = []  # called on the feeder thread
        self.on_done: list[Callable[[Utterance], None]] = []
        # The first stream starts here, on the caller's thread, so bad input raises at once.
        stream = self._open(settings)
        self.result = StudioResult(
            chunks=[], provider=stream.loaded.provider, precision=stream.loaded.precision,
            text=text, voice=settings.voice.label, speed=settings.speed, lang=stream.lang,
            requested=self.requested,
        )
        self.result.segments.append(self._segment(settings))
        self.stream = stream
        self.stream_id: str | None = None
        if player is not None:
            with self._player_lock:
                self.stream_id = player.start(label=_preview(text), requested=self.requested,
                                              origin="Speak was pressed")
            self.result._player = player
            player.on_stop_request(self._on_stop_request)
            player.on_report(self._on_report)
        if chart is not None:
            chart.may_draw = self._chart_may_draw
            chart.reset(self.requested)
        self._thread = threading.Thread(target=self._feed, name="kokoro-lab-studio",
                                        daemon=True)

    # -- control ----------------------------------------------------------------------------

    def start(self) -> Utterance:
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    @property
    def settings(self) -> Settings:
        """The voice and speed of the segment being sent now."""
        return self._settings

    def update(self, settings: Settings) -> None:
        """Use ``settings`` from the next chunk sent to the player on."""
        with self._lock:
            self._pending = settings
        self._wake.set()

    def stop(self, reason: str = "stopped") -> None:
        """Cancel synthesis (within one chunk) and silence the player."""
        if self._stopped.is_set():
            return
        self._stop_reason = reason
        self._stopped.set()
        self._wake.set()
        self.stream.cancel()
        with self._player_lock:
            if self._owns_player():
                self.player.stop(reason)

    def _owns_player(self) -> bool:
        return self.player is not None and self.player.stream_id == self.stream_id

    def wait(self, timeout: float | None = None) -> StudioResult:
        """Block until the utterance ends. A kernel interrupt stops it, then re-raises."""
        if not join_interruptibly(self._thread, timeout, self.stop):
            raise TimeoutError(f"the utterance is still running after {timeout} s")
        return self.result

    def detach(self) -> None:
        """Stop listening to the player (a newer utterance is taking it over)."""
        if self.player is not None:
            self.player.on_stop_request(self._on_stop_request, remove=True)
            self.player.on_report(self._on_report, remove=True)

    # -- browser callbacks ------------------------------------------------------------------

    def _on_stop_request(self, stream_id: str) -> None:
        if stream_id == self.stream_id:
            self.stop("Stop pressed")

    def _on_report(self, report: dict) -> None:
        """A page's report (kernel main thread): its schedule paces the feeder; what it
        played goes to the chart."""
        if report.get("type") == "scheduled":
            self._on_scheduled(report)
        if self.chart is not None:
            self.chart.take_report(report)

    def _chart_may_draw(self) -> bool:
        """Redraw the chart only when the listener has audio to spare (or synthesis is over):
        drawing shares the CPU with synthesis."""
        if not self.running:
            return True
        with self._lock:
            ahead = self._play_end - time.perf_counter()
        return ahead >= CHART_MIN_AHEAD_S

    def _on_scheduled(self, report: dict) -> None:
        """The browser scheduled chunk ``seq``: re-anchor the playback estimate on its clock."""
        try:
            seq = int(report["seq"])
            ends_in = float(report["start"]) + float(report["duration"]) - float(report["now"])
            received = float(report["received"])
        except (KeyError, TypeError, ValueError):
            return
        with self._lock:
            later = sum(self._durations[seq + 1:])
            self._play_end = received + ends_in + later
        self._wake.set()

    # -- the feeder thread ------------------------------------------------------------------

    def _open(self, settings: Settings, text: str | None = None) -> Stream:
        return self.synth.stream(
            self._cleaned if text is None else text, voice=settings.voice,
            speed=settings.speed, precision=self.precision, provider=self.provider,
        )

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
        while not self._stopped.is_set():
            change = self._take_change()
            if change is not None:
                return change
            if self.lead_s is None:
                return None
            with self._lock:
                ahead = self._play_end - time.perf_counter()
            if ahead <= self.lead_s:
                return None
            self._wake.wait(min(0.05, ahead - self.lead_s))
            self._wake.clear()
        return None

    def _feed(self) -> None:
        try:
            stream: Stream | None = self.stream
            while stream is not None and not self._stopped.is_set():
                stream = self._consume(stream)
        except Exception as error:  # shown in the panel and the result, not lost in a thread
            self.result.error = f"{type(error).__name__}: {error}"
            with self._player_lock:
                if self._owns_player():
                    self.player.message = f"Error: {self.result.error}"
        finally:
            self._finish()

    def _consume(self, stream: Stream) -> Stream | None:
        """Send ``stream``'s chunks; return the stream to continue with (None at the end)."""
        for chunk in stream:
            change = self._hold()
            if self._stopped.is_set():
                return None
            if change is not None:
                stream.cancel()
                return self._restart(change)
            self._deliver(chunk)
        return None

    def _restart(self, settings: Settings) -> Stream | None:
        """A new stream with ``settings`` on the text not yet sent (None if nothing is left)."""
        remainder = self._cleaned[self._position:]
        self._settings = settings
        if not any(ch.isalnum() for ch in remainder):
            return None
        try:
            stream = self._open(settings, remainder)
        except TextError:  # only punctuation or unspeakable symbols left
            return None
        self.result.segments.append(self._segment(settings))
        self.stream = stream  # what stop() cancels
        if self._stopped.is_set():  # stopped while the new stream was starting
            stream.cancel()
        return stream

    def _deliver(self, chunk: Chunk) -> None:
        sequence = len(self.result.chunks)
        # One numbering and one clock for the whole utterance: the chunk's index in it, and
        # ready times measured from the press of Speak rather than from its segment's start.
        chunk = dataclasses.replace(chunk, index=sequence, queued=self.requested)
        seconds = len(chunk.audio) / SAMPLE_RATE
        with self._player_lock:
            if self._owns_player() and not self._stopped.is_set():
                self.player.push(chunk.audio, index=sequence, voice=chunk.voice,
                                 speed=chunk.speed, **chunk_meta(chunk))
        now = time.perf_counter()
        with self._lock:
            self._durations.append(seconds)
            self._play_end = max(self._play_end, now) + seconds
        self.result.chunks.append(chunk)
        self._position = _advance(self._cleaned, self._position, chunk.text)
        if self.chart is not None:
            self.chart.add_chunk(chunk)
        for callback in list(self.on_chunk):
            callback(chunk)

    def _finish(self) -> None:
        result = self.result
        result.cancelled = self._stopped.is_set()
        result.reason = self._stop_reason if result.cancelled else ""
        first_audio = result.playback.first_audio_ms if result.chunks else None
        with self._player_lock:
            if self._owns_player():
                self.player.finish(  # the engine's simulated figure, labelled as such
                    cancelled=result.cancelled, reason=result.reason,
                    engine_first_audio_ms=None if first_audio is None
                    or first_audio != first_audio else round(first_audio, 2),
                )
        result._done.set()
        if self.chart is not None:
            self.chart.finish()
        for callback in list(self.on_done):
            try:
                callback(self)
            except Exception as error:  # a display callback must not hide the result
                result.error = result.error or f"{type(error).__name__}: {error}"


def _preview(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= PREVIEW_CHARS else flat[: PREVIEW_CHARS - 1] + "…"

