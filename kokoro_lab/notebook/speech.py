"""One spoken utterance in a notebook: a stream feeding a player and a chart, off the main thread.

The rule: the kernel's main thread never waits for synthesis unless asked to (``--wait``).
A feeder thread consumes the engine's stream and hands each chunk to the player (which sends
it to the browser) and to the latency chart, so the cell returns at once and the kernel stays
free to receive the browser's messages (the ready handshake, schedule reports, Stop).

:class:`SpeakResult` is the engine's :class:`~kokoro_lab.engine.metrics.Result` with the
notebook's extras: it fills while the stream runs (``-o res`` is usable at once), knows how
the utterance ended, and renders as HTML (a summary, the audio, the per-chunk table).
"""

from __future__ import annotations

import base64
import html
import io
import threading
import time
import wave
from dataclasses import dataclass, field

import numpy as np

from ..engine.metrics import Result, first_audible_sample
from ..engine.synthesizer import Stream
from .chart import LatencyChart
from .player import Player

HTML_AUDIO_LIMIT_S = 120  # longer results render without an embedded <audio> (size)
HTML_TABLE_ROWS = 30


@dataclass(repr=False)
class SpeakResult(Result):
    """What ``%%speak -o NAME`` stores: audio, per-chunk metrics, and how the stream ended."""

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
        return (f"<SpeakResult {self.state}: {len(self.chunks)} chunks, "
                f"{self.duration_s:.2f} s audio, {self.provider}/{self.precision}>")

    def _repr_html_(self) -> str:
        rows = self.records()
        summary = self.summary() if rows else {"chunks": 0}
        head = {
            "state": self.state + (f" ({self.reason})" if self.reason else ""),
            "voice": self.voice, "speed": self.speed, "language": self.lang,
            "provider / precision": f"{self.provider} / {self.precision}",
            "chunks": summary.get("chunks"), "audio": f"{self.duration_s:.2f} s",
            "first audio (engine)": _ms(summary.get("first_audio_ms")),
            "stalls (simulated)": f"{summary.get('underruns', 0)} "
                                  f"({_ms(summary.get('underrun_ms'))})",
        }
        timings = self.timings
        if timings.get("first_sent_ms") is not None:
            head["first chunk left the kernel"] = _ms(timings["first_sent_ms"])
        if self.error:
            head["error"] = self.error
        parts = ['<div class="kokoro-result">', "<table>"]
        parts += [f"<tr><th style='text-align:left'>{html.escape(str(k))}</th>"
                  f"<td style='text-align:left'>{html.escape(str(v))}</td></tr>"
                  for k, v in head.items()]
        parts.append("</table>")
        if rows and self.duration_s <= HTML_AUDIO_LIMIT_S:
            parts.append(f'<audio controls src="data:audio/wav;base64,{self._wav_base64()}">'
                         "</audio>")
        if rows:
            cols = ["index", "text", "phonemes", "ready_ms", "synthesis_ms", "audio_ms", "rtf"]
            parts.append("<details><summary>per-chunk metrics</summary><table><tr>")
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
        parts.append("</div>")
        return "".join(parts)

    def _wav_base64(self) -> str:
        buffer = io.BytesIO()
        pcm = (np.clip(self.audio, -1.0, 1.0) * 32767).astype("<i2")
        with wave.open(buffer, "wb") as out:  # same encoding as the engine's write_wav
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(self.sample_rate)
            out.writeframes(pcm.tobytes())
        return base64.b64encode(buffer.getvalue()).decode("ascii")


def _ms(value) -> str:
    return "–" if value is None or value != value else f"{value:.0f} ms"


class Speech:
    """Drive one :class:`Stream` into an optional :class:`Player` and :class:`LatencyChart`."""

    def __init__(self, stream: Stream, *, player: Player | None = None,
                 chart: LatencyChart | None = None, requested: float | None = None,
                 label: str = "") -> None:
        self.stream = stream
        self.player = player
        self.chart: LatencyChart | None = None
        self._chart_lock = threading.Lock()
        self.requested = stream.queued if requested is None else requested
        self.first_ready: float | None = None
        self.result = SpeakResult(
            chunks=stream.chunks, provider=stream.loaded.provider,
            precision=stream.loaded.precision, text=stream.text, voice=stream.voice.label,
            speed=stream.speed, lang=stream.lang, requested=self.requested, _speech=self,
        )
        self._stop_reason = ""
        self._thread = threading.Thread(target=self._feed, name="kokoro-lab-speech", daemon=True)
        if player is not None:
            previous = getattr(player, "_speech", None)
            if previous is not None and previous is not self:
                previous.stop("replaced by a new utterance")
                previous.detach()
            player._speech = self
            self.stream_id = player.start(label=label)
            player.on_stop_request(self._on_stop_request)
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
        """Cancel synthesis (within one chunk) and silence the player."""
        if self.result.done and self._stop_reason:
            return
        self._stop_reason = self._stop_reason or reason
        self.stream.cancel()
        if self.player is not None:
            self.player.stop(reason)

    def wait(self, timeout: float | None = None) -> SpeakResult:
        """Block until the stream ends. Ctrl-C / kernel interrupt stops the speech, then
        re-raises ``KeyboardInterrupt`` so the cell reports the interruption."""
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            # Short joins, so a pending KeyboardInterrupt is raised promptly on the main thread.
            while self._thread.is_alive():
                left = 0.1 if deadline is None else min(0.1, deadline - time.monotonic())
                if left <= 0:
                    break
                self._thread.join(left)
        except KeyboardInterrupt:
            self.stop("interrupted")
            self._thread.join(5)
            raise
        return self.result

    def attach_chart(self, chart: LatencyChart) -> None:
        """Feed ``chart`` from now on, after replaying what already happened (so a chart can be
        created after the first chunk, off the critical path to first audio)."""
        with self._chart_lock:
            chart.reset(self.requested)
            if self.player is not None:
                self.player.on_scheduled(chart.add_report)
            for chunk in list(self.result.chunks):
                chart.add_chunk(chunk)
            if self.player is not None:
                for report in list(self.player.scheduled):
                    chart.add_report(report)
            self.chart = chart

    def detach(self) -> None:
        """Stop listening to the player (it is being reused for another utterance)."""
        if self.player is not None:
            self.player.on_stop_request(self._on_stop_request, remove=True)
            if self.chart is not None:
                self.player.on_scheduled(self.chart.add_report, remove=True)

    def _on_stop_request(self, stream_id: str) -> None:
        if stream_id == getattr(self, "stream_id", None):
            self.stop(self.player.stop_reason or "Stop pressed")

    # -- the feeder thread ------------------------------------------------------------------

    def _feed(self) -> None:
        try:
            for chunk in self.stream:
                if self.first_ready is None:
                    self.first_ready = chunk.finished
                if self.player is not None and not self.stream.cancelled:
                    self.player.push(
                        chunk.audio, index=chunk.index, text=chunk.text,
                        ready_ms=round(chunk.ready_ms, 2), audio_ms=round(chunk.audio_ms, 2),
                        synthesis_ms=round(chunk.synthesis_ms, 2),
                    )
                with self._chart_lock:
                    if self.chart is not None:
                        self.chart.add_chunk(chunk)
        except Exception as error:  # reported in the player and the result, not lost in a thread
            self.result.error = f"{type(error).__name__}: {error}"
            if self.player is not None:
                self.player.message = f"Error: {self.result.error}"
        finally:
            self._finish()

    def _finish(self) -> None:
        result = self.result
        result.cancelled = self.stream.cancelled
        result.reason = self._stop_reason if result.cancelled else ""
        playback = result.playback if result.chunks else None
        first_audio = playback.first_audio_ms if playback is not None else None
        if self.player is not None:
            self.player.finish(
                cancelled=result.cancelled, reason=result.reason,
                engine_underruns=playback.underruns if playback is not None else 0,
                first_audio_ms=None if first_audio is None or first_audio != first_audio
                else round(first_audio, 2),
            )
        result._done.set()

    def timings(self) -> dict:
        """Milliseconds from the request: first chunk ready in the engine, first chunk sent to
        the browser, first chunk scheduled by the browser (report received), and the engine's
        time to first audio. ``None`` where that has not happened (no browser, say)."""
        def since(t):
            return None if t is None else round((t - self.requested) * 1000, 2)

        player = self.player
        sent = player.sent[0]["sent"] if player is not None and player.sent else None
        reports = player.scheduled if player is not None else []
        chunks = self.result.chunks
        first_audio = None
        if chunks:
            hit = first_audible_sample(np.concatenate([c.audio for c in chunks[:1]]))
            first_audio = since(chunks[0].finished)
            if hit is not None and first_audio is not None:
                first_audio += hit / self.result.sample_rate * 1000
        return {
            "first_ready_ms": since(self.first_ready),
            "first_sent_ms": since(sent),
            "first_scheduled_ms": since(reports[0]["received"]) if reports else None,
            "engine_first_audio_ms": first_audio,
            "measured_at": time.time(),
        }
