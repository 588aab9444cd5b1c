"""The streaming player widget: PCM chunks to the browser as binary buffers, scheduled gaplessly.

The protocol (version 1), all as anywidget custom messages:

kernel → browser
  ``start``  ``{stream, sample_rate, label, ended}``: a new utterance; the browser drops the
             previous one. ``ended`` is true when replaying a stream that already finished (the
             browser then keeps it playable but does not auto-play it).
  ``chunk``  ``{stream, seq, index, samples, …metrics}`` with one buffer: ``samples`` float32
             little-endian mono PCM values. ``seq`` counts 0, 1, 2 … within a stream.
  ``end``    ``{stream, chunks, samples, cancelled, reason, …}`` (the Speech adds the engine's
             ``first_audio_ms`` and ``engine_underruns`` from its simulated playback)
  ``stop``   ``{stream, reason}``: silence now (the next ``%%speak``, a kernel interrupt …).

browser → kernel
  ``ready``      the front-end attached its handler (sent once per page per player).
  ``scheduled``  ``{stream, seq, start, duration, now, underrun, gap}`` per chunk it scheduled
                 (Web Audio clock seconds).
  ``stop_request``  the user pressed Stop.
  ``played``     ``{stream, scheduled, underruns, stopped}`` when playback ended.

The handshake rule: nothing is sent before a front-end says ``ready`` (messages to a front-end
that has not attached its handler are lost). Until then chunks wait in the kernel; each
``ready`` replays the current stream, and the browser ignores sequence numbers it already has,
so a second tab or a reloaded page is safe.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import anywidget
import numpy as np
import traitlets

from ..engine.metrics import SAMPLE_RATE

STATIC = Path(__file__).resolve().parent.parent / "static"
PROTOCOL = 1


class FrontendMissing(RuntimeError):
    """The player's built front-end (kokoro_lab/static/player.js) is not there."""


def _static(name: str) -> Path:
    path = STATIC / name
    if not path.is_file():
        raise FrontendMissing(
            f"{path} is missing: the player's front-end is built from extension/ "
            "(run `make frontend`, i.e. `cd extension && npm ci && npm run build`)"
        )
    return path


def _register(callbacks: list, callback: Callable, remove: bool) -> None:
    if remove:
        if callback in callbacks:
            callbacks.remove(callback)
    elif callback not in callbacks:
        callbacks.append(callback)


def _load_frontend() -> None:
    """Attach the built ES module and CSS on first use (not at import: a checkout without the
    front-end build can still import the package and use the engine)."""
    if "_esm" not in Player.__dict__:
        Player._esm = _static("player.js").read_text(encoding="utf-8")
        Player._css = _static("player.css").read_text(encoding="utf-8")


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
    sample_rate = traitlets.Int(SAMPLE_RATE).tag(sync=True)
    # A line from the kernel shown under the controls (an error, "stopped by the next %%speak").
    message = traitlets.Unicode("").tag(sync=True)

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("player_id", uuid.uuid4().hex[:12])
        _load_frontend()
        super().__init__(**kwargs)
        self._lock = threading.RLock()
        self._stream_id: str | None = None
        self._label = ""
        self._chunks: list[tuple[dict, bytes]] = []  # the current stream, for replays
        self._ended: dict | None = None
        self._stopped: str | None = None
        self.clients: set[str] = set()
        self.ready_at: float | None = None  # perf_counter of the first ready handshake
        self.sent: list[dict] = []  # one record per chunk message actually sent
        self.first_sent = threading.Event()  # set when the current stream's first chunk left
        self.scheduled: list[dict] = []  # the browser's reports, with the kernel's receive time
        self.played: list[dict] = []
        self._stop_callbacks: list[Callable[[str], None]] = []
        self._schedule_callbacks: list[Callable[[dict], None]] = []
        self.on_msg(self._on_frontend_msg)

    # -- kernel side API --------------------------------------------------------------------

    @property
    def stream_id(self) -> str | None:
        return self._stream_id

    @property
    def stop_reason(self) -> str | None:
        """Why the current stream was stopped (None while it is not)."""
        return self._stopped

    @property
    def ready(self) -> bool:
        return bool(self.clients)

    def start(self, label: str = "", sample_rate: int = SAMPLE_RATE) -> str:
        """Begin a new utterance (the browser silences the previous one); returns its id."""
        with self._lock:
            self._stream_id = uuid.uuid4().hex[:8]
            self._label = label
            self._chunks = []
            self._ended = None
            self._stopped = None
            self.sent = []
            self.first_sent.clear()
            self.scheduled = []
            self.played = []
            self.sample_rate = sample_rate
            self.message = ""
            if self.ready:
                self._send_start()
            return self._stream_id

    def push(self, audio: np.ndarray, index: int | None = None, **meta) -> int:
        """Queue one chunk of float32 mono audio; it is sent at once if a front-end is ready.

        Returns the chunk's sequence number within the stream. ``meta`` (JSON values) rides
        along in the message header, e.g. the chunk's synthesis metrics.
        """
        with self._lock:
            if self._stream_id is None:
                raise RuntimeError("call Player.start() before pushing audio")
            if self._ended is not None:
                raise RuntimeError("this stream has ended; call Player.start() for a new one")
            pcm = np.ascontiguousarray(audio, dtype="<f4")
            if pcm.ndim != 1:
                raise ValueError(f"audio must be mono (1-D), got shape {pcm.shape}")
            seq = len(self._chunks)
            header = {
                "type": "chunk", "stream": self._stream_id, "seq": seq,
                "index": seq if index is None else int(index), "samples": int(pcm.size), **meta,
            }
            self._chunks.append((header, pcm.tobytes()))
            if self.ready and self._stopped is None:
                self._send_chunk(seq)
            return seq

    def finish(self, cancelled: bool = False, reason: str = "", **meta) -> None:
        """Mark the stream complete (the browser then offers the full audio and a WAV)."""
        with self._lock:
            if self._stream_id is None or self._ended is not None:
                return
            samples = sum(len(data) // 4 for _, data in self._chunks)
            self._ended = {
                "type": "end", "stream": self._stream_id, "chunks": len(self._chunks),
                "samples": samples, "cancelled": cancelled, "reason": reason, **meta,
            }
            if self.ready:
                self.send(self._ended)

    def stop(self, reason: str = "stopped") -> None:
        """Silence the current stream in every browser showing it."""
        with self._lock:
            if self._stream_id is None or self._stopped is not None:
                return
            self._stopped = reason
            if reason:
                self.message = reason
            if self.ready:
                self.send({"type": "stop", "stream": self._stream_id, "reason": reason})

    def on_stop_request(self, callback: Callable[[str], None], remove: bool = False) -> None:
        """Call ``callback(stream_id)`` when the user presses Stop in the browser."""
        _register(self._stop_callbacks, callback, remove)

    def on_scheduled(self, callback: Callable[[dict], None], remove: bool = False) -> None:
        """Call ``callback(report)`` for each chunk the browser scheduled (see the protocol)."""
        _register(self._schedule_callbacks, callback, remove)

    @property
    def audio(self) -> np.ndarray:
        """The current stream's audio so far."""
        with self._lock:
            parts = [np.frombuffer(data, dtype="<f4") for _, data in self._chunks]
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)

    # -- sending ----------------------------------------------------------------------------

    def _send_start(self) -> None:
        self.send({
            "type": "start", "stream": self._stream_id, "sample_rate": self.sample_rate,
            "label": self._label, "ended": self._ended is not None or self._stopped is not None,
            "protocol": PROTOCOL,
        })

    def _send_chunk(self, seq: int) -> None:
        header, data = self._chunks[seq]
        self.send(header, buffers=[data])
        # After send returns the message is in the kernel's outgoing queue: "left the kernel".
        self.sent.append({"seq": seq, "bytes": len(data), "sent": time.perf_counter()})
        self.first_sent.set()

    def _replay(self) -> None:
        """Bring a (new) front-end up to date: the current stream from its start."""
        if self._stream_id is None:
            return
        self._send_start()
        already = {record["seq"] for record in self.sent}
        for seq in range(len(self._chunks)):
            if seq in already:
                header, data = self._chunks[seq]
                self.send(header, buffers=[data])  # browsers drop duplicates by seq
            else:
                self._send_chunk(seq)
        if self._stopped is not None:
            self.send({"type": "stop", "stream": self._stream_id, "reason": self._stopped})
        if self._ended is not None:
            self.send(self._ended)

    # -- receiving --------------------------------------------------------------------------

    def _on_frontend_msg(self, _widget, content: dict, buffers) -> None:
        kind = content.get("type") if isinstance(content, dict) else None
        received = time.perf_counter()
        if kind == "ready":
            with self._lock:
                self.clients.add(str(content.get("client", "")))
                if self.ready_at is None:
                    self.ready_at = received
                self._replay()
        elif kind == "scheduled":
            report = {**content, "received": received}
            if report.get("stream") == self._stream_id:
                self.scheduled.append(report)
                for callback in list(self._schedule_callbacks):
                    callback(report)
        elif kind == "stop_request":
            if content.get("stream") == self._stream_id:
                self.stop(str(content.get("reason") or "Stop pressed"))
                for callback in list(self._stop_callbacks):
                    callback(self._stream_id)
        elif kind == "played" and content.get("stream") == self._stream_id:
            self.played.append({**content, "received": received})

    # -- inspection -------------------------------------------------------------------------

    def timeline(self) -> list[dict]:
        """Per chunk: when it was sent and, if a browser reported it, where it was scheduled."""
        reports = {r["seq"]: r for r in self.scheduled}
        rows = []
        for record in self.sent:
            report = reports.get(record["seq"], {})
            rows.append({**record, **{k: report.get(k) for k in ("start", "duration", "underrun")}})
        return rows
