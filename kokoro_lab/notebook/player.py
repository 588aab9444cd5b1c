"""The streaming player widget: PCM chunks to the browser through widget state, played gaplessly.

Protocol 2. Everything the kernel tells the page lives in widget **state**, so nothing is lost
and nothing waits for the page to answer:

* the player's ``stream`` trait describes the current utterance:
  ``{id, order, after, label, sample_rate, state: live|ended|stopped, chunks, samples,
  origin, age_ms, end, stop_reason}``; ``age_ms`` is how long after the request (the moment
  ``origin`` names: "cell ran" by default) the update was sent
  (the page estimates when the cell ran from it), ``after`` names the stream this one is queued
  behind (see :mod:`kokoro_lab.notebook.magic`);
* each chunk is a small :class:`AudioChunk` widget model (int16 PCM in a binary buffer, and
  its metrics) whose model id :func:`chunk_model_id` derives from the player, the stream and
  the chunk's sequence number. It is opened *before* ``stream.chunks`` counts it, so a page that
  reads the count can always fetch the chunk.

Why state and not custom messages: a custom message that reaches the page before the player's
front end has attached its listener (anywidget loads the module asynchronously) is dropped, and
a page that connects later (a reload, a tab opened afterwards, Voila, which runs the notebook
before any browser connects) only ever receives state. The kernel may send from any thread:
state updates go out on IOPub at once, even while the main thread runs another cell.

page → kernel, as custom messages (handled on the kernel's main thread, i.e. possibly late —
nothing on the path to sound depends on them):

  ``scheduled``     ``{stream, seq, start, duration, now, underrun, gap, ahead_s}`` per chunk
  ``buffer``        ``{stream, ahead_s, page_ms}`` about once a second while playing
  ``heard``         ``{stream, final, first_audible_ms, since, stalls, stall_ms,
                    largest_gap_ms, played_s, made_s, late_join, …}`` what the page played
  ``stop_request``  the user pressed Stop.

Chunks of a stream stay in the kernel until the player starts another stream (a late page can
then still play or offer the whole utterance); a new stream closes the previous one's chunk
models.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import anywidget
import ipywidgets
import numpy as np
import traitlets

from ..engine.metrics import SAMPLE_RATE

STATIC = Path(__file__).resolve().parent.parent / "static"
PROTOCOL = 2
PCM_SCALE = 32767  # int16 PCM on the wire: float x → trunc(x × 32767), the WAV encoding too


class FrontendMissing(RuntimeError):
    """A widget's built front-end (in kokoro_lab/static/) is not there."""


def _static(name: str) -> Path:
    path = STATIC / name
    if not path.is_file():
        raise FrontendMissing(
            f"{path} is missing: the widgets' front-end is built from extension/ "
            "(run `make setup`, or `cd extension && npm ci && npm run build`)"
        )
    return path


def _register(callbacks: list, callback: Callable, remove: bool) -> None:
    if remove:
        if callback in callbacks:
            callbacks.remove(callback)
    elif callback not in callbacks:
        callbacks.append(callback)


def attach_frontend(widget: type[anywidget.AnyWidget], script: str,
                    style: str | None = None) -> None:
    """Attach a built ES module (and CSS) from kokoro_lab/static/ to ``widget`` on first use,
    not at import: a checkout without the front-end build can still import the package and use
    the engine. Raises :class:`FrontendMissing` when the build is not there."""
    if "_esm" not in widget.__dict__:
        esm = _static(script).read_text(encoding="utf-8")
        if style is not None:
            widget._css = _static(style).read_text(encoding="utf-8")
        widget._esm = esm


def chunk_model_id(player_id: str, stream_id: str, seq: int) -> str:
    """The widget model id of chunk ``seq``; the front end computes the same (player.js)."""
    return f"kokoro-lab-{player_id}-{stream_id}-{seq}"


def to_pcm16(audio: np.ndarray) -> bytes:
    """Float mono audio as int16 little-endian PCM bytes (half the size of float32)."""
    samples = np.asarray(audio, dtype=np.float32)
    if samples.ndim != 1:
        raise ValueError(f"audio must be mono (1-D), got shape {samples.shape}")
    return (np.clip(samples, -1.0, 1.0) * PCM_SCALE).astype("<i2").tobytes()


class AudioChunk(ipywidgets.Widget):
    """One chunk of PCM held in widget state (the base ``WidgetModel``: no view of its own)."""

    pcm = traitlets.Bytes().tag(sync=True)
    meta = traitlets.Dict().tag(sync=True)


class Player(anywidget.AnyWidget):
    """A gapless streaming audio player for notebooks (reusable: one player, many streams).

    >>> player = Player()
    >>> display(player)
    >>> player.start()
    >>> for chunk in synth.stream("Hello there."):
    ...     player.push(chunk.audio, index=chunk.index)
    >>> player.finish()
    """

    player_id = traitlets.Unicode().tag(sync=True)
    stream = traitlets.Dict().tag(sync=True)
    # A line from the kernel shown under the controls (an error, "stopped by …").
    message = traitlets.Unicode("").tag(sync=True)
    # What a page reported it played for the current stream (the last report wins), so a page
    # that connects later shows the same measured figures.
    heard = traitlets.Dict().tag(sync=True)
    # Show the text under the player with the word being heard highlighted (chunks that carry
    # word timings, ``meta["words"]``: [text, start_s, end_s, char_start, char_end] each).
    captions = traitlets.Bool(True).tag(sync=True)

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("player_id", uuid.uuid4().hex[:12])
        attach_frontend(Player, "player.js", "player.css")
        super().__init__(**kwargs)
        self._lock = threading.RLock()
        self._chunks: list[AudioChunk] = []
        self._requested = time.perf_counter()
        self.sent: list[dict] = []  # one record per chunk made available to pages
        self.first_sent = threading.Event()  # set when the current stream's first chunk left
        self.scheduled: list[dict] = []  # the pages' schedule reports, with the receive time
        self.buffer_reports: list[dict] = []
        self.played: list[dict] = []  # final "heard" reports
        self.push_cpu_s = 0.0  # kernel CPU time spent handing chunks to pages (benchmarks)
        self._stop_callbacks: list[Callable[[str], None]] = []
        self._report_callbacks: list[Callable[[dict], None]] = []
        self.on_msg(self._on_frontend_msg)

    # -- kernel side API --------------------------------------------------------------------

    @property
    def stream_id(self) -> str | None:
        return self.stream.get("id")

    @property
    def stop_reason(self) -> str | None:
        """Why the current stream was stopped (None while it is not)."""
        return self.stream.get("stop_reason") if self.stream.get("state") == "stopped" else None

    @property
    def live(self) -> bool:
        return self.stream.get("state") == "live"

    def start(self, label: str = "", sample_rate: int = SAMPLE_RATE, *, order: int = 0,
              after: str | None = None, requested: float | None = None,
              origin: str = "cell ran", milestones: dict[str, float] | None = None) -> str:
        """Begin a new utterance (pages silence the previous one); returns its id.

        ``after`` is the id of a stream (any player's) this one is queued behind: pages start
        it once that one has played out. ``requested`` is the ``perf_counter`` time the user
        asked for it; ``age_ms`` figures count from it, and ``origin`` names that moment in the
        page's figures ("first sound … after the cell ran", "… after Speak was pressed").
        ``milestones`` are the kernel's steps before the stream started, ``{step:
        perf_counter}`` (e.g. the magic parsed); pages put them first in the first sound's
        breakdown, as ms since ``requested``.
        """
        with self._lock:
            self._close_chunks()
            self._requested = time.perf_counter() if requested is None else requested
            self.sent, self.scheduled, self.buffer_reports, self.played = [], [], [], []
            self.first_sent.clear()
            self.message = ""
            self.heard = {}
            self._set_stream({
                "id": uuid.uuid4().hex[:8], "order": order, "after": after, "label": label,
                "sample_rate": sample_rate, "state": "live", "chunks": 0, "samples": 0,
                "origin": origin, "protocol": PROTOCOL,
                "milestones": {step: round((t - self._requested) * 1000, 1)
                               for step, t in (milestones or {}).items()},
            })
            return self.stream_id

    def push(self, audio: np.ndarray, index: int | None = None, **meta) -> int:
        """Make one chunk of float32 mono audio available to every page; returns its sequence
        number. ``meta`` (JSON values) rides along, e.g. the chunk's synthesis metrics."""
        started = time.thread_time()
        with self._lock:
            if self.stream_id is None:
                raise RuntimeError("call Player.start() before pushing audio")
            if self.stream.get("state") == "ended":
                raise RuntimeError("this stream has ended; call Player.start() for a new one")
            pcm = to_pcm16(audio)
            seq = len(self._chunks)
            header = {"seq": seq, "index": seq if index is None else int(index),
                      "samples": len(pcm) // 2, "age_ms": self._age_ms(), **meta}
            # Opening the chunk's comm sends it; only then does the count say it exists.
            chunk = AudioChunk(model_id=chunk_model_id(self.player_id, self.stream_id, seq),
                               pcm=pcm, meta=header)
            self._chunks.append(chunk)
            self._set_stream({**self.stream, "chunks": seq + 1,
                              "samples": self.stream["samples"] + header["samples"]})
            self.sent.append({"seq": seq, "bytes": len(pcm), "sent": time.perf_counter()})
            self.first_sent.set()
            self.push_cpu_s += time.thread_time() - started
            return seq

    def finish(self, cancelled: bool = False, reason: str = "", **meta) -> None:
        """Mark the stream complete (pages then offer the full audio and a WAV)."""
        with self._lock:
            if self.stream_id is None or self.stream.get("state") != "live":
                return
            end = {"chunks": len(self._chunks), "cancelled": cancelled, "reason": reason, **meta}
            self._set_stream({**self.stream, "state": "ended", "end": end})

    def stop(self, reason: str = "stopped") -> None:
        """Silence the current stream in every page showing it (if it is still playing)."""
        with self._lock:
            if self.stream_id is None or self.stream.get("state") == "stopped":
                return
            if reason:
                self.message = reason
            self._set_stream({**self.stream, "state": "stopped", "stop_reason": reason})

    def on_stop_request(self, callback: Callable[[str], None], remove: bool = False) -> None:
        """Call ``callback(stream_id)`` when the user presses Stop in a page."""
        _register(self._stop_callbacks, callback, remove)

    def on_report(self, callback: Callable[[dict], None], remove: bool = False) -> None:
        """Call ``callback(report)`` for each page report (``scheduled``, ``buffer``, ``heard``)
        about the current stream; ``report["received"]`` is the kernel's receive time and
        ``report["made"]`` when the page made it, on the kernel's clock (from the page's
        ``age_ms``; the receive time when the page did not say)."""
        _register(self._report_callbacks, callback, remove)

    def on_scheduled(self, callback: Callable[[dict], None], remove: bool = False) -> None:
        """Call ``callback(report)`` for each chunk a page scheduled (see the protocol)."""
        def only_scheduled(report: dict, callback=callback) -> None:
            if report.get("type") == "scheduled":
                callback(report)

        if remove:
            for registered in list(self._report_callbacks):
                if getattr(registered, "wrapped", None) == callback:
                    self._report_callbacks.remove(registered)
        else:
            only_scheduled.wrapped = callback
            self._report_callbacks.append(only_scheduled)

    @property
    def audio(self) -> np.ndarray:
        """The current stream's audio so far (as the pages got it: 16-bit)."""
        with self._lock:
            parts = [np.frombuffer(c.pcm, dtype="<i2") for c in self._chunks]
        if not parts:
            return np.zeros(0, np.float32)
        return (np.concatenate(parts).astype(np.float32) / PCM_SCALE)

    def close(self) -> None:
        with self._lock:
            self._close_chunks()
        super().close()

    # -- internals --------------------------------------------------------------------------

    def _age_ms(self) -> float:
        return round((time.perf_counter() - self._requested) * 1000, 1)

    def _set_stream(self, value: dict) -> None:
        self.stream = {**value, "age_ms": self._age_ms()}

    def get_state(self, key=None, drop_defaults: bool = False) -> dict:
        """The state as it goes out, a live stream's ``age_ms`` counted to now.

        A page that connects late (a reload, a second tab) gets the state through this, either
        per widget (``request_state``) or, from JupyterLab's widget manager, all widgets at
        once on the control comm (``request_states``, which bypasses the widget's own message
        handler). The trait's age is that of the last update, possibly seconds old (no chunk
        pushed since), and the page would take itself for one that saw the stream begin.
        """
        state = super().get_state(key, drop_defaults)
        stream = state.get("stream")
        if isinstance(stream, dict) and stream.get("state") == "live":
            state["stream"] = {**stream, "age_ms": self._age_ms()}
        return state

    def _close_chunks(self) -> None:
        for chunk in self._chunks:
            chunk.close()
        self._chunks = []

    def _on_frontend_msg(self, _widget, content: dict, buffers) -> None:
        if not isinstance(content, dict) or content.get("stream") != self.stream_id:
            return  # malformed, or about a previous utterance
        kind = content.get("type")
        received = time.perf_counter()
        age_ms = content.get("age_ms")
        # When the page made it, on the kernel's clock (the page counts from the request); the
        # kernel may read it much later, when its main thread is free of a busy cell.
        made = self._requested + age_ms / 1000 if isinstance(age_ms, (int, float)) else None
        report = {**content, "received": received,
                  "made": made if made is not None and made <= received else received}
        if kind == "stop_request":
            self.stop(str(content.get("reason") or "Stop pressed"))
            for callback in list(self._stop_callbacks):
                callback(self.stream_id)
            return
        if kind == "scheduled":
            self.scheduled.append(report)
        elif kind == "buffer":
            self.buffer_reports.append(report)
        elif kind == "heard":
            fields = {k: v for k, v in content.items() if k not in ("type", "client", "protocol")}
            self.heard = fields
            if content.get("final"):
                self.played.append(report)
        else:
            return
        for callback in list(self._report_callbacks):
            callback(report)

    # -- inspection -------------------------------------------------------------------------

    def timeline(self) -> list[dict]:
        """Per chunk: when it was sent and, if a page reported it, where it was scheduled."""
        reports = {r["seq"]: r for r in self.scheduled}
        rows = []
        for record in self.sent:
            report = reports.get(record["seq"], {})
            rows.append({**record, **{k: report.get(k) for k in ("start", "duration", "underrun")}})
        return rows
