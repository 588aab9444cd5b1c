"""What ``%%speak -o NAME`` stores: :class:`SpeakResult`, the engine's
:class:`~kokoro_lab.engine.metrics.Result` with the notebook's extras.

It fills while the stream runs (``-o res`` is usable at once), knows how the utterance ended,
holds what the page measured it played (:attr:`SpeakResult.heard`, the figures that count),
and renders as HTML: what was heard, the audio, the per-chunk table. Engine and kernel figures
stay, labelled "(internal)".
"""

from __future__ import annotations

import base64
import html
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..engine.metrics import Result, plural
from .clip import wav_bytes

if TYPE_CHECKING:
    from .feeder import Feeder
    from .player import Player

HTML_AUDIO_LIMIT_S = 120  # longer results render without an embedded <audio> (size)
HTML_TABLE_ROWS = 30


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
    _feeder: Feeder | None = field(default=None, compare=False)

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
        """Latency milestones of this utterance, see :meth:`Feeder.timings`."""
        return self._feeder.timings() if self._feeder is not None else {}

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
        return self._feeder.player if self._feeder is not None else None

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
    steps = " → ".join(f"{step} {ms:.0f}" for step, ms in heard.get("breakdown") or [])
    return {
        f"heard: first sound after the {since}": _ms(first),
        **({"heard: the first sound, step by step (ms since the request)": steps}
           if steps else {}),
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



__all__ = ["SpeakResult", "heard_rows"]
