"""One spoken utterance in a notebook: a stream feeding a player and a chart, off the main thread.

The rules:

* The kernel's main thread never waits for synthesis unless asked to (``--wait``). A feeder
  thread consumes the engine's stream and hands each chunk to the player, which makes it
  available to every page at once (widget state, sent from that thread even while the main
  thread runs another cell). Nothing on the path to sound waits for the page to answer.
* Nothing stands before the first sound: the chart is fed after each chunk has been handed to
  the player, and draws on its own thread, only while the page has audio to spare.
* Queued utterances (see :mod:`kokoro_lab.notebook.magic`) start synthesizing when the one
  ahead of them has finished synthesizing, so two cells never compete for the CPU; the page
  plays them one after the other.
* The figures that count are the page's: what it measured it played comes back as ``heard``
  reports (first audible sample after the cell ran, stalls, seconds played) into
  :attr:`SpeakResult.heard`. Engine and kernel figures stay, labelled as such.
* A failure on a background thread is reported in this utterance's player and result, never
  printed (a thread's output would land in whichever cell runs at that moment).

:class:`SpeakResult` is the engine's :class:`~kokoro_lab.engine.metrics.Result` with the
notebook's extras: it fills while the stream runs (``-o res`` is usable at once), knows how
the utterance ended, and renders as HTML (what was heard, the audio, the per-chunk table).
"""

from __future__ import annotations

import base64
import html
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..engine.metrics import Result, first_audible_sample, plural
from ..engine.sessions import check_available
from ..engine.synthesizer import Stream, Synthesizer, check_speed, check_text
from ..engine.voices import Voice
from .chart import LatencyChart
from .clip import wav_bytes
from .player import Player

HTML_AUDIO_LIMIT_S = 120  # longer results render without an embedded <audio> (size)
HTML_TABLE_ROWS = 30
CHART_MIN_BUFFER_S = 2.0  # the chart redraws only while the page has this much audio ahead
REPORT_FRESH_S = 3.0  # a page's buffer report older than this is not trusted


@dataclass
class StreamRequest:
    """A validated request for speech, started when its turn comes (queued utterances)."""

    synth: Synthesizer
    text: str
    voice: Voice
    speed: float
    lang: str
    precision: str
    provider: str

    @classmethod
    def check(cls, synth: Synthesizer, text: str, voice: str | Voice, speed: float,
              lang: str | None, precision: str, provider: str) -> StreamRequest:
        """Validate the text, voice, speed and provider now, so bad input is reported in the
        cell, not later on a thread (the precision's model is checked when the stream starts;
        an unqueued request starts at once, in the cell)."""
        check_text(text)
        resolved = synth.resolve_voice(voice)
        check_available(provider.lower())
        return cls(synth, text, resolved, check_speed(speed), lang or resolved.lang,
                   precision, provider.lower())

    def start(self) -> Stream:
        return self.synth.stream(self.text, self.voice, self.speed, self.lang,
                                 precision=self.precision, provider=self.provider)


@dataclass(repr=False)
class SpeakResult(Result):
    """What ``%%speak -o NAME`` stores: audio, per-chunk metrics, what the page heard, and how
    the stream ended."""

    text: str = ""
    voice: str = ""
    speed: float = 1.0
    lang: str = ""
    requested: float = 0.0  # perf_counter when the cell asked for speech
    cancelled: bool = False
    reason: str = ""  # why it stopped early, if it did
    error: str = ""  # the worker's error, if synthesis failed mid-stream
    _done: threading.Event = field(default_factory=threading.Event, compare=False)
    _speech: Speech | None = field(default=None, compare=False)

    @property
    def heard(self) -> dict | None:
        """What a page measured it played: ``first_audible_ms`` (after the cell ran),
        ``stalls``, ``stall_ms``, ``largest_gap_ms``, ``played_s``, ``made_s``, ``final``.

        None until a page has reported (the kernel reads reports when it is idle).
        """
        player = self.player
        return dict(player.heard) if player is not None and player.heard else None

    def heard_widget(self):
        """A small table of what the page played, filled in when its report reaches the
        kernel (under Run All that is once the kernel is idle again), for notebooks that show
        the heard figures in a cell."""
        from ipywidgets import HTML

        view = HTML(_rows_html(heard_rows(self.heard)))
        player = self.player
        if player is not None:
            player.observe(lambda _change: setattr(
                view, "value", _rows_html(heard_rows(self.heard))), names="heard")
        return view

    @property
    def timings(self) -> dict:
        """Latency milestones of this utterance, see :meth:`Speech.timings`."""
        return self._speech.timings() if self._speech is not None else {}

    @property
    def done(self) -> bool:
        """True once the stream has ended (completed, stopped or failed)."""
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> SpeakResult:
        """Block until the stream has ended; returns ``self``."""
        if not self._done.wait(timeout):
            raise TimeoutError(f"speech still running after {timeout} s")
        return self

    @property
    def player(self) -> Player | None:
        """The player this utterance streams to (display it again to see it twice)."""
        return self._speech.player if self._speech is not None else None

    @property
    def state(self) -> str:
        if not self.done:
            return "streaming"
        if self.error:
            return "failed"
        return "stopped" if self.cancelled else "complete"

    def __repr__(self) -> str:
        if self.done and not self.cancelled and not self.error:
            return super().__repr__()
        return (f"<SpeakResult {self.state}: {plural(len(self.chunks), 'chunk')}, "
                f"{self.duration_s:.2f} s audio, {self.provider}/{self.precision}>")

    def summary(self) -> dict:
        """The engine's summary plus what the page heard (``heard_*`` keys, when reported)."""
        figures = super().summary() if self.chunks else {"chunks": 0}
        for key, value in (self.heard or {}).items():
            figures[f"heard_{key}"] = value
        return figures

    def _repr_html_(self) -> str:
        rows = self.records()
        summary = super().summary() if rows else {"chunks": 0}
        head = {
            "state": self.state + (f" ({self.reason})" if self.reason else ""),
            "voice": self.voice, "speed": self.speed, "language": self.lang,
            "provider / precision": f"{self.provider} / {self.precision}",
            "chunks": summary.get("chunks"), "audio": f"{self.duration_s:.2f} s",
        }
        head.update(heard_rows(self.heard))
        head["engine (internal): first audio, simulated playback"] = _ms(
            summary.get("first_audio_ms"))
        head["engine (internal): stalls, simulated playback"] = (
            f"{summary.get('underruns', 0)} ({_ms(summary.get('underrun_ms'))})")
        timings = self.timings
        if timings.get("first_sent_ms") is not None:
            head["kernel (internal): first chunk sent to the page"] = _ms(timings["first_sent_ms"])
        if self.error:
            head["error"] = self.error
        parts = ['<div class="kokoro-result">', _rows_html(head)]
        if rows and self.duration_s <= HTML_AUDIO_LIMIT_S:
            parts.append(f'<audio controls src="data:audio/wav;base64,{self._wav_base64()}">'
                         "</audio>")
        if rows:
            parts.append(_chunk_table(rows))
        parts.append("</div>")
        return "".join(parts)

    def _wav_base64(self) -> str:
        return base64.b64encode(wav_bytes(self.audio, self.sample_rate)).decode("ascii")


def heard_rows(heard: dict | None) -> dict[str, str]:
    """The page's measured figures as labelled rows (the headline of a result)."""
    if not heard:
        return {"heard in the browser": "not reported yet (a page reports what it played; "
                                        "the kernel reads it when it is idle)"}
    since = heard.get("since", "cell ran")
    first = heard.get("first_audible_ms")
    stalls = heard.get("stalls", 0)
    return {
        f"heard: first sound after the {since}": _ms(first),
        "heard: stalls": (f"{stalls} ({_ms(heard.get('stall_ms'))}, largest "
                          f"{_ms(heard.get('largest_gap_ms'))})" if stalls else "none"),
        "heard: played": f"{heard.get('played_s', 0):.1f} s of {heard.get('made_s', 0):.1f} s "
                         "made" + ("" if heard.get("final") else " (still playing)"),
    }


def _rows_html(rows: dict) -> str:
    return "<table>" + "".join(
        f"<tr><th style='text-align:left'>{html.escape(str(k))}</th>"
        f"<td style='text-align:left'>{html.escape(str(v))}</td></tr>"
        for k, v in rows.items()) + "</table>"


def _chunk_table(rows: list[dict]) -> str:
    cols = ["index", "text", "phonemes", "ready_ms", "synthesis_ms", "audio_ms", "rtf"]
    parts = ["<details><summary>per-chunk metrics (engine)</summary><table><tr>"]
    parts += [f"<th>{c}</th>" for c in cols]
    parts.append("</tr>")
    for record in rows[:HTML_TABLE_ROWS]:
        parts.append("<tr>" + "".join(
            f"<td style='text-align:left'>{html.escape(str(record[c]))}</td>"
            for c in cols) + "</tr>")
    if len(rows) > HTML_TABLE_ROWS:
        parts.append(f"<tr><td colspan={len(cols)}>… {len(rows) - HTML_TABLE_ROWS} more "
                     "(see .to_dataframe())</td></tr>")
    parts.append("</table></details>")
    return "".join(parts)


def _ms(value) -> str:
    return "–" if value is None or value != value else f"{value:.0f} ms"


class Speech:
    """Drive one engine stream into an optional :class:`Player` and :class:`LatencyChart`.

    ``source`` is a running :class:`Stream`, or a :class:`StreamRequest` started on the
    feeder thread once ``after`` (the utterance queued ahead of this one) has finished
    synthesizing.
    """

    def __init__(self, source: Stream | StreamRequest, *, player: Player | None = None,
                 chart: LatencyChart | None = None, requested: float | None = None,
                 label: str = "", after: Speech | None = None, order: int = 0) -> None:
        self.request = source if isinstance(source, StreamRequest) else None
        self.stream: Stream | None = None if self.request else source
        self.player = player
        self.chart: LatencyChart | None = None
        self.after = after
        self.order = order
        self.requested = (source.queued if self.stream is not None else time.perf_counter()) \
            if requested is None else requested
        self.first_ready: float | None = None
        self.cell_id: str | None = None  # the notebook cell that asked for it (re-run rule)
        self.model_wait_ms = 0.0  # how long the request waited for the model to be loaded
        self.synthesized = threading.Event()  # set when this utterance's synthesis is over
        self._stop_reason = ""
        self._stopping = threading.Event()
        self._last_buffer: tuple[float, float] | None = None  # (ahead_s, kernel receive time)
        described = self.request or source
        voice = described.voice
        self.result = SpeakResult(
            chunks=self.stream.chunks if self.stream is not None else [],
            provider=self.stream.loaded.provider if self.stream is not None else described.provider,
            precision=(self.stream.loaded.precision if self.stream is not None
                       else described.precision),
            text=described.text, voice=voice.label, speed=described.speed,
            lang=described.lang, requested=self.requested, _speech=self,
        )
        self._thread = threading.Thread(target=self._feed, name="kokoro-lab-speech", daemon=True)
        self.stream_id: str | None = None
        if player is not None:
            previous = getattr(player, "_speech", None)
            if previous is not None and previous is not self:
                previous.stop("replaced by a new utterance")
                previous.detach()
            player._speech = self
            ahead = after.stream_id if after is not None else None
            self.stream_id = player.start(label=label, order=order, after=ahead,
                                          requested=self.requested)
            player.on_stop_request(self._on_stop_request)
            player.on_report(self._on_report)
        if chart is not None:
            self.attach_chart(chart)

    # -- control ----------------------------------------------------------------------------

    def start(self) -> Speech:
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self, reason: str = "stopped") -> None:
        """Cancel synthesis (the inference in flight is aborted) and silence the player."""
        if self.result.done and self._stop_reason:
            return
        self._stop_reason = self._stop_reason or reason
        self._stopping.set()
        if self.stream is not None:
            self.stream.cancel()
        if self.player is not None:
            self.player.stop(reason)

    def wait(self, timeout: float | None = None) -> SpeakResult:
        """Block until the stream ends (or ``timeout`` passes). Ctrl-C / kernel interrupt
        stops the speech, then re-raises ``KeyboardInterrupt`` so the cell reports it."""
        join_interruptibly(self._thread, timeout, self.stop)
        return self.result

    def attach_chart(self, chart: LatencyChart) -> None:
        """Feed ``chart`` from now on, after replaying what already happened."""
        chart.may_draw = self._chart_may_draw
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

    def detach(self) -> None:
        """Stop listening to the player (it is being reused for another utterance)."""
        if self.player is not None:
            self.player.on_stop_request(self._on_stop_request, remove=True)
            self.player.on_report(self._on_report, remove=True)

    def _on_stop_request(self, stream_id: str) -> None:
        if stream_id == self.stream_id:
            self.stop(self.player.stop_reason or "Stop pressed")

    def _on_report(self, report: dict) -> None:
        """A page's report (kernel main thread): measured buffer → the engine's scheduler;
        measured playback → the chart and the result."""
        kind = report.get("type")
        if kind in ("scheduled", "buffer") and report.get("ahead_s") is not None:
            self._last_buffer = (float(report["ahead_s"]), report["received"])
            observe = getattr(self.stream, "observe_playback", None)
            if observe is not None:
                observe(float(report["ahead_s"]), at=report["received"])
        if self.chart is not None:
            self.chart.take_report(report)

    def _chart_may_draw(self) -> bool:
        """Redraw only when the page has audio to spare (or synthesis is over)."""
        return self.synthesized.is_set() or self.buffered_ahead_s() >= CHART_MIN_BUFFER_S

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

    # -- the feeder thread ------------------------------------------------------------------

    def _feed(self) -> None:
        try:
            if self.stream is None and not self._wait_turn():
                return
            for chunk in self.stream:
                if self.first_ready is None:
                    self.first_ready = chunk.finished
                if self.player is not None and not self.stream.cancelled:
                    self.player.push(chunk.audio, index=chunk.index, **chunk_meta(chunk))
                if self.chart is not None:
                    self.chart.add_chunk(chunk)
        except Exception as error:  # reported in the player and the result, not lost in a thread
            self.result.error = f"{type(error).__name__}: {error}"
            if self.player is not None:
                self.player.message = f"Error: {self.result.error}"
        finally:
            self._finish()

    def _wait_turn(self) -> bool:
        """Wait for the utterance ahead to finish synthesizing, then start ours; False if
        this one was stopped meanwhile."""
        while self.after is not None and not self.after.synthesized.wait(0.1):
            if self._stopping.is_set():
                return False
        if self._stopping.is_set():
            return False
        self.stream = self.request.start()
        self.result.chunks = self.stream.chunks
        self.result.provider = self.stream.loaded.provider
        self.result.precision = self.stream.loaded.precision
        return True

    def _finish(self) -> None:
        result = self.result
        self.synthesized.set()
        result.cancelled = self._stopping.is_set() or (
            self.stream is not None and self.stream.cancelled)
        result.reason = self._stop_reason if result.cancelled else ""
        playback = result.playback if result.chunks else None
        first_audio = playback.first_audio_ms if playback is not None else None
        if self.player is not None:
            self.player.finish(
                cancelled=result.cancelled, reason=result.reason,
                engine_underruns=playback.underruns if playback is not None else 0,
                engine_first_audio_ms=None if first_audio is None or first_audio != first_audio
                else round(first_audio, 2),
            )
        if self.chart is not None:
            self.chart.finish()
        result._done.set()

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


def chunk_meta(chunk) -> dict:
    """What the page gets with a chunk's audio: its text and the engine's metrics."""
    meta = {
        "text": chunk.text, "ready_ms": round(chunk.ready_ms, 2),
        "audio_ms": round(chunk.audio_ms, 2), "synthesis_ms": round(chunk.synthesis_ms, 2),
    }
    margin = getattr(chunk, "start_margin_ms", 0) or 0
    if margin:
        meta["start_margin_ms"] = round(float(margin), 1)
    words = getattr(chunk, "words", None)
    if words:  # the page highlights the word being heard from these
        meta["words"] = [[w.text, round(w.start, 3), round(w.end, 3), w.char_start, w.char_end]
                         for w in words]
    return meta
