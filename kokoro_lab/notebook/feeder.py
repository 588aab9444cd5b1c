"""One utterance's life in a notebook: engine chunks fed to a player and a chart, off the main
thread. ``%%speak`` (:class:`~kokoro_lab.notebook.speech.Speech`) and the Studio
(:class:`~kokoro_lab.notebook.studio.utterance.Utterance`) are both a :class:`Feeder`.

The rules:

* The kernel's main thread never waits for synthesis unless asked to (:meth:`Feeder.wait`). A
  feeder thread consumes engine streams and hands each chunk to the player, which makes it
  available to every page at once (widget state, sent from that thread even while the main
  thread runs another cell). Nothing on the path to sound waits for the page to answer.
* Nothing stands before the first sound: the chart is fed after each chunk has been handed to
  the player, and redraws only while the page has audio to spare.
* A player may be taken over by a newer utterance (the Studio's Speak, the voice map's next
  voice): a feeder talks to its player only while the player's stream is its own, under a lock
  the owners share, so a stopping feeder never pushes into, stops or ends a newer stream.
* Stop (the player's button, :meth:`Feeder.stop`, a kernel interrupt during :meth:`wait`)
  aborts the inference in flight and silences the page; the first reason given is kept.
* A failure on the feeder thread is reported in this utterance's player and result, never
  printed (a thread's output would land in whichever cell runs at that moment).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ..engine import Chunk, Stream
from ..engine.metrics import first_audible_sample
from .chart import FIRST_SOUND, LatencyChart
from .player import Player
from .result import SpeakResult

CHART_MIN_BUFFER_S = 2.0  # by default the chart redraws only with this much audio ahead
REPORT_FRESH_S = 3.0  # a page's buffer report older than this is not trusted


class Feeder:
    """Feed engine chunks to an optional :class:`Player` and :class:`LatencyChart`.

    Subclasses say where chunks come from (:meth:`_feed`, which calls :meth:`_deliver` for
    each); this class owns the thread, the player hand-off, Stop, the page's reports and the
    end. ``on_chunk`` and ``on_done`` callbacks run on the feeder thread.
    """

    thread_name = "kokoro-lab-speech"
    chart_min_buffer_s = CHART_MIN_BUFFER_S
    sizes_chunks_from_page = True  # the page's measured buffer sizes the engine's next chunks

    def __init__(self, result: SpeakResult, *, player: Player | None = None,
                 requested: float | None = None, player_lock: threading.RLock | None = None,
                 milestones: dict[str, float] | None = None) -> None:
        self.result = result
        result._feeder = self
        self.player = player
        self.chart: LatencyChart | None = None
        self.requested = time.perf_counter() if requested is None else requested
        self.stream: Stream | None = None  # the engine stream being fed now (stop cancels it)
        self.stream_id: str | None = None  # this utterance's stream in the player
        self.first_ready: float | None = None
        # The front door's own steps before synthesis ({step: perf_counter}), e.g. when the
        # magic had parsed its line: the first sound's breakdown starts with them.
        self.milestones: dict[str, float] = dict(milestones or {})
        self.synthesized = threading.Event()  # set when synthesis is over, however it ended
        self.on_chunk: list[Callable[[Chunk], None]] = []
        self.on_done: list[Callable[[Feeder], None]] = []
        # Held while talking to the player; shared by every feeder that may own it.
        self._player_lock = player_lock or threading.RLock()
        self._stopping = threading.Event()
        self._stop_reason = ""
        self._last_buffer: tuple[float, float] | None = None  # (ahead_s, kernel receive time)
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)

    # -- the player and the chart ------------------------------------------------------------

    def _take_player(self, **start) -> None:
        """Start this utterance's stream in the player (``start``: :meth:`Player.start`'s
        options) and listen to its Stop button and its reports."""
        with self._player_lock:
            self.stream_id = self.player.start(requested=self.requested,
                                               milestones=self.milestones, **start)
        self.player.on_stop_request(self._on_stop_request)
        self.player.on_report(self._on_report)

    def _owns_player(self) -> bool:
        return self.player is not None and self.player.stream_id == self.stream_id

    def detach(self) -> None:
        """Stop listening to the player (a newer utterance is taking it over)."""
        if self.player is not None:
            self.player.on_stop_request(self._on_stop_request, remove=True)
            self.player.on_report(self._on_report, remove=True)

    def attach_chart(self, chart: LatencyChart) -> None:
        """Feed ``chart`` from now on, after replaying what already happened."""
        chart.may_draw = self._chart_may_draw
        chart.owner = self
        synth = getattr(self, "synth", None)
        if synth is not None:  # the chart's title says which tuning made the audio
            chart.tuning = synth.tuning.name
        chart.reset(self.requested)
        for chunk in list(self.result.chunks):
            chart.add_chunk(chunk)
        if self.player is not None:
            for report in list(self.player.scheduled):
                chart.add_report(report)
            if self.player.heard:
                chart.set_heard(self.player.heard)
        self.chart = chart
        if self.result.done:
            chart.finish()

    def _chart_may_draw(self) -> bool:
        """Redraw only when the page has audio to spare (or synthesis is over): drawing shares
        the CPU with synthesis."""
        return self.synthesized.is_set() or self.buffered_ahead_s() >= self.chart_min_buffer_s

    def buffered_ahead_s(self) -> float:
        """Audio queued ahead of the listener now: the page's report when fresh, else the
        engine's estimate (audio made minus time since the first chunk was ready)."""
        now = time.perf_counter()
        if self._last_buffer is not None and now - self._last_buffer[1] < REPORT_FRESH_S:
            ahead, at = self._last_buffer
            return max(0.0, ahead - (now - at))
        if self.first_ready is None:
            return 0.0
        made = sum(c.audio_ms for c in list(self.result.chunks)) / 1000
        return max(0.0, made - (now - self.first_ready))

    # -- control ----------------------------------------------------------------------------

    def start(self) -> Feeder:
        FIRST_SOUND.hold(self)  # other charts wait until this one's first chunk is scheduled
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self, reason: str = "stopped") -> None:
        """Cancel synthesis (the inference in flight is aborted) and silence the player.

        Works after synthesis has ended too (the page may still be playing); the first reason
        given is the one reported."""
        if self._stopping.is_set():
            return
        self._stop_reason = reason
        self._stopping.set()
        self._wake()
        if self.stream is not None:
            self.stream.cancel()
        with self._player_lock:
            if self._owns_player():
                self.player.stop(reason)

    def wait(self, timeout: float | None = None) -> SpeakResult:
        """Block until the utterance ends; ``TimeoutError`` if ``timeout`` passes first.
        Ctrl-C / a kernel interrupt stops it, then re-raises ``KeyboardInterrupt`` so the cell
        reports it."""
        if not join_interruptibly(self._thread, timeout, self.stop):
            raise TimeoutError(f"the utterance is still running after {timeout} s")
        return self.result

    def _wake(self) -> None:
        """Called by :meth:`stop`; a subclass whose feeder sleeps wakes it here."""

    # -- page reports -------------------------------------------------------------------------

    def _on_stop_request(self, stream_id: str) -> None:
        if stream_id == self.stream_id:
            self.stop(self.player.stop_reason or "Stop pressed")

    def _on_report(self, report: dict) -> None:
        """A page's report (kernel main thread): its measured buffer sizes the engine's next
        chunks; what it played goes to the chart and the result."""
        if report.get("type") in ("scheduled", "buffer") and report.get("ahead_s") is not None:
            # aged from when the page measured it, not from when this thread got to read it
            at = report.get("made", report["received"])
            self._last_buffer = (float(report["ahead_s"]), at)
            if self.stream is not None and self.sizes_chunks_from_page:
                self.stream.observe_playback(float(report["ahead_s"]), at=at)
        if report.get("type") == "scheduled":
            FIRST_SOUND.release(self)
        self._observe(report)
        if self.chart is not None:
            self.chart.take_report(report)

    def _observe(self, report: dict) -> None:
        """A subclass's own use of a page report (the Studio paces its sending by them)."""

    # -- the feeder thread ------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._feed()
        except Exception as error:  # shown in the player and the result, not lost in a thread
            self.result.error = f"{type(error).__name__}: {error}"
            with self._player_lock:
                if self._owns_player():
                    self.player.message = f"Error: {self.result.error}"
        finally:
            self._finish()

    def _feed(self) -> None:
        raise NotImplementedError

    def _deliver(self, chunk: Chunk, **meta) -> None:
        """Hand one chunk (already in ``result.chunks``) to the player (``meta``: extra fields
        for the page), then to the chart and the ``on_chunk`` callbacks."""
        if self.first_ready is None:
            self.first_ready = chunk.finished
        made_ms = round((chunk.finished - self.requested) * 1000, 1)  # on the request's clock
        with self._player_lock:
            if self._owns_player() and not self._stopping.is_set():
                self.player.push(chunk.audio, index=chunk.index, made_ms=made_ms, **meta,
                                 **chunk_meta(chunk))
        if self.player is None:  # no page will schedule it: nothing to hold charts for
            FIRST_SOUND.release(self)
        if self.chart is not None:
            self.chart.add_chunk(chunk)
        for callback in list(self.on_chunk):
            callback(chunk)

    def _finish(self) -> None:
        result = self.result
        self.synthesized.set()
        FIRST_SOUND.release(self)
        result.cancelled = self._stopping.is_set() or (
            self.stream is not None and self.stream.cancelled)
        result.reason = self._stop_reason if result.cancelled else ""
        playback = result.playback if result.chunks else None
        first_audio = playback.first_audio_ms if playback is not None else None
        with self._player_lock:
            if self._owns_player():  # the engine's simulated figures, labelled as such
                self.player.finish(
                    cancelled=result.cancelled, reason=result.reason,
                    engine_underruns=playback.underruns if playback is not None else 0,
                    engine_first_audio_ms=None if first_audio is None
                    or first_audio != first_audio else round(first_audio, 2))
        if self.chart is not None:
            self.chart.finish()
        result._done.set()
        for callback in list(self.on_done):
            try:
                callback(self)
            except Exception as error:  # a display callback must not hide the result
                result.error = result.error or f"{type(error).__name__}: {error}"

    # -- figures ------------------------------------------------------------------------------

    def timings(self) -> dict:
        """Milliseconds from the request. Measured in the page (``heard_*``, when a page has
        reported), and the kernel's and engine's internal figures: first chunk ready in the
        engine, first chunk sent to the page, first chunk scheduled by a page (report received
        by the kernel), and the engine's time to first audio (simulated playback)."""
        def since(t):
            return None if t is None else round((t - self.requested) * 1000, 2)

        player = self.player
        sent = player.sent[0]["sent"] if player is not None and player.sent else None
        reports = player.scheduled if player is not None else []
        chunks = self.result.chunks
        first_audio = None
        if chunks:
            hit = first_audible_sample(chunks[0].audio)
            first_audio = since(chunks[0].finished)
            if hit is not None and first_audio is not None:
                first_audio += hit / self.result.sample_rate * 1000
        heard = self.result.heard or {}
        return {
            "heard_first_audible_ms": heard.get("first_audible_ms"),
            "heard_stalls": heard.get("stalls"),
            "heard_stall_ms": heard.get("stall_ms"),
            "heard_played_s": heard.get("played_s"),
            "first_ready_ms": since(self.first_ready),
            "first_sent_ms": since(sent),
            "first_scheduled_ms": since(reports[0]["received"]) if reports else None,
            "engine_first_audio_ms": first_audio,
            "measured_at": time.time(),
        }


def join_interruptibly(thread: threading.Thread, timeout: float | None,
                       stop: Callable[[str], None]) -> bool:
    """Join ``thread`` in short steps (so a kernel interrupt is raised promptly on the main
    thread); on ``KeyboardInterrupt`` call ``stop("interrupted")`` and re-raise. Returns whether
    the thread ended within ``timeout``."""
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while thread.is_alive():
            left = 0.1 if deadline is None else min(0.1, deadline - time.monotonic())
            if left <= 0:
                return False
            thread.join(left)
    except KeyboardInterrupt:
        stop("interrupted")
        thread.join(5)
        raise
    return True


def chunk_meta(chunk: Chunk) -> dict:
    """What the page gets with a chunk's audio: its text and the engine's metrics."""
    meta = {
        "text": chunk.text, "ready_ms": round(chunk.ready_ms, 2),
        "audio_ms": round(chunk.audio_ms, 2), "synthesis_ms": round(chunk.synthesis_ms, 2),
    }
    if chunk.start_margin_ms:
        meta["start_margin_ms"] = round(float(chunk.start_margin_ms), 1)
    if chunk.words:  # the page highlights the word being heard from these
        meta["words"] = [[w.text, round(w.start, 3), round(w.end, 3), w.char_start, w.char_end]
                         for w in chunk.words]
    return meta


__all__ = ["Feeder", "chunk_meta", "join_interruptibly"]
