"""A stream of chunks, synthesized ahead of the consumer on a worker thread.

The rules:

* The worker stays ahead of the consumer through a bounded queue (:data:`QUEUE_CHUNKS`), so a
  100,000-character text never holds more than a few chunks of audio in flight.
* Chunks are planned to start speaking fast and keep ahead of playback
  (:mod:`kokoro_lab.engine.chunking`, :mod:`kokoro_lab.engine.scheduling`): latency mode runs one
  chunk at a time on the all-cores decoder while the buffer is short; once the buffer can cover
  a lane chunk, lane mode keeps ``lanes`` chunks in flight on single-thread sessions, which on a
  CPU makes more audio per second. Chunks are always delivered in text order.
* The player may report how much audio it really has buffered (:meth:`Stream.observe_playback`);
  chunk sizing then follows that measurement instead of a simulated playback.
* Closing the stream or calling :meth:`Stream.cancel` aborts the inference in flight (ONNX
  Runtime's ``RunOptions.terminate``, on whichever stage or lane is running) and stops the
  worker before its next chunk.
"""

from __future__ import annotations

import atexit
import queue
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

from .chunking import ChunkPlanner, PlannedChunk, TextError
from .decoding import Decoder
from .metrics import SAMPLE_RATE, Chunk, Result, plural
from .request import SpeechRequest, preview
from .scheduling import Scheduler
from .sessions import run_options

if TYPE_CHECKING:
    from .synthesizer import Made, Synthesizer

QUEUE_CHUNKS = 4  # chunks synthesized ahead of the consumer at most


class StreamCancelled(RuntimeError):
    """Raised by :meth:`Stream.result` when the stream was cancelled before its end."""


# Streams whose worker may still be inside ONNX Runtime. A daemon thread killed mid-inference
# at interpreter exit aborts the process ("terminate called without an active exception"),
# so exit cancels them and waits briefly for the aborted runs to return.
_LIVE_STREAMS: weakref.WeakSet[Stream] = weakref.WeakSet()


@atexit.register
def _stop_live_streams() -> None:
    for stream in list(_LIVE_STREAMS):
        stream.cancel()
        stream.join(timeout=5)


class Stream:
    """An iterator of :class:`Chunk`, synthesized ahead on a worker thread.

    Made by :meth:`Synthesizer.stream`. ``loaded`` is the stream's
    :class:`~kokoro_lab.engine.decoding.Decoder` (its ``provider``, ``precision`` and ``mode``
    say what made the audio); ``request`` the checked request it runs.
    """

    _DONE = object()

    def __init__(self, synth: Synthesizer, loaded: Decoder, request: SpeechRequest):
        self.synth = synth
        self.loaded = loaded
        self.request = request
        self.text = request.text
        self.voice = request.voice
        self.speed = request.speed
        self.lang = request.lang
        self.adaptive = request.adaptive
        self.queued = time.perf_counter()
        self.chunks: list[Chunk] = []
        self.error: BaseException | None = None
        self._queue: queue.Queue = queue.Queue(maxsize=QUEUE_CHUNKS)
        self._cancel = threading.Event()
        # One set of run options for every run of this stream (both stages, every lane):
        # setting `terminate` aborts whichever inference is in flight, so a cancel does not
        # leave a doomed chunk competing for the CPU with whatever the user starts next.
        self._run_options = run_options()
        self._finished = False
        self.scheduler = Scheduler(loaded.speed_model, adaptive=self.adaptive)
        self.on_chunk: Callable[[Chunk], None] | None = None
        self._worker = threading.Thread(target=self._run, name="kokoro-lab-stream", daemon=True)
        _LIVE_STREAMS.add(self)
        self._worker.start()

    # -- consumer side ----------------------------------------------------------------------

    def __iter__(self) -> Iterator[Chunk]:
        return self

    def __next__(self) -> Chunk:
        if self._finished:
            raise StopIteration
        while True:
            try:
                item = self._queue.get(timeout=0.1)
                break
            except queue.Empty:
                if not self._worker.is_alive() and self._queue.empty():
                    item = self._DONE
                    break
        if item is self._DONE:
            self._finished = True
            if self.error is not None:
                raise self.error
            raise StopIteration
        self.chunks.append(item)
        return item

    def cancel(self) -> None:
        """Stop synthesis now (the inference in flight is aborted); made chunks stay in ``chunks``.

        Cancelling a stream that has already been read to its end changes nothing.
        """
        if self._finished and self.error is None:
            return
        self._cancel.set()
        self._run_options.terminate = True
        self._drain()

    close = cancel

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def observe_playback(self, buffered_s: float, at: float | None = None) -> None:
        """Tell the scheduler how much audio the player really had buffered ahead.

        ``buffered_s`` is the audio queued ahead of the listener when it was measured, ``at``
        the ``time.perf_counter()`` of that measurement (default: now). While the last
        measurement is fresh the next chunks are sized from it, aged by the time since ``at``,
        instead of from the simulated playback. Thread-safe; call it from any thread.
        """
        self.scheduler.observe_playback(buffered_s, time.perf_counter() if at is None else at)

    def join(self, timeout: float | None = None) -> bool:
        self._worker.join(timeout)
        return not self._worker.is_alive()

    def result(self) -> Result:
        """Consume the stream to its end and return the whole :class:`Result`."""
        for _ in self:
            pass
        if self.cancelled:
            raise StreamCancelled(f"stream cancelled after {plural(len(self.chunks), 'chunk')}")
        return Result(chunks=list(self.chunks), provider=self.loaded.provider,
                      precision=self.loaded.precision)

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc) -> None:
        self.cancel()

    def _drain(self) -> None:
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                return

    # -- worker side ------------------------------------------------------------------------

    def _put(self, item) -> bool:
        """Hand an item to the consumer, giving up if the stream is cancelled meanwhile."""
        while not self._cancel.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            self._produce()
        except BaseException as error:  # handed to the consumer, raised from __next__
            if not self._cancel.is_set():  # an inference aborted by cancel() is no error
                self.error = error
        finally:
            self._put(self._DONE)

    def _produce(self) -> None:
        """Plan and synthesize chunks, in latency mode or lane mode (see the module rules)."""
        synth = self.synth
        planner = ChunkPlanner(self.text, lambda t: synth.phonemize(t, self.lang), cleaned=True)
        planner.first = self.adaptive
        scheduler = self.scheduler
        lane = synth.lane_decoder(self.loaded) if self.adaptive else None
        in_flight: deque[tuple[PlannedChunk, Future]] = deque()
        index = 0
        with ThreadPoolExecutor(max_workers=synth.lanes, thread_name_prefix="kokoro-lab-lane") \
                as lanes:
            while not self._cancel.is_set():
                now = time.perf_counter()
                if lane is not None:
                    self._fill_lanes(planner, scheduler, lane, lanes, in_flight, now)
                if in_flight:
                    planned, future = in_flight.popleft()
                    made = future.result()
                else:
                    remaining = len(self.text) - planner.planned_chars
                    planned = planner.next_chunk(scheduler.budget(now, remaining))
                    if planned is None:
                        break
                    made = self._make(planned, self.loaded, opens_stream=index == 0)
                if not self._deliver(index, planned, made, planner):
                    return
                index += 1
        if index == 0 and not self._cancel.is_set():
            raise TextError(f"nothing speakable in {preview(self.text)!r}: it produced no "
                            "phonemes")

    def _fill_lanes(self, planner: ChunkPlanner, scheduler: Scheduler, lane: Decoder,
                    lanes: ThreadPoolExecutor, in_flight: deque, now: float) -> None:
        """Start chunks on free lanes while the buffer (with chunks in flight) can cover them."""
        while len(in_flight) < self.synth.lanes and not planner.first:
            pending_s = sum(lane.speed_model.predict_audio_s(len(p.phonemes), self.speed)
                            for p, _ in in_flight)
            budget = scheduler.lane_budget(now, pending_s, lane.speed_model)
            if budget is None:
                return  # too little buffered: stay in latency mode
            planned = planner.next_chunk(budget)
            if planned is None:
                return
            in_flight.append((planned, lanes.submit(self._make, planned, lane)))

    def _make(self, planned: PlannedChunk, decoder: Decoder, opens_stream: bool = False
              ) -> Made:
        return self.synth.make(planned.text, planned.phonemes, planned.boundary, self.voice,
                               self.speed, self.lang, decoder, self._run_options,
                               opens_stream=opens_stream)

    def _deliver(self, index: int, planned: PlannedChunk, made: Made,
                 planner: ChunkPlanner) -> bool:
        audio_s = len(made.finished_audio.audio) / SAMPLE_RATE
        margin_s = 0.0
        if index == 0 and self.adaptive:
            margin_s = self._start_margin_s(planned, audio_s, made.slowdown, planner)
        self.scheduler.chunk_ready(time.perf_counter(), audio_s, start_margin_s=margin_s)
        chunk = made.chunk(index, queued=self.queued, voice=self.voice.label, speed=self.speed,
                           start_margin_s=margin_s)
        if self.on_chunk is not None:
            self.on_chunk(chunk)
        return self._put(chunk)

    def _start_margin_s(self, planned: PlannedChunk, first_audio_s: float, slowdown: float,
                        planner: ChunkPlanner) -> float:
        """The wait before playback that the speed measured now says avoids stalls (see
        :meth:`Scheduler.start_margin_s`); the rest of the text is estimated at chunk 0's
        phonemes per character."""
        # What is left to speak: a trailing newline or space after the last sentence is
        # nothing, and a single chunk needs no margin (it cannot underrun).
        remaining_chars = sum(not ch.isspace() for ch in self.text[planner.planned_chars:])
        per_char = len(planned.phonemes) / max(1, len(planned.text))
        return self.scheduler.start_margin_s(
            first_audio_s=first_audio_s,
            remaining_phonemes=int(remaining_chars * per_char), speed=self.speed,
            slowdown=slowdown, chars_per_phoneme=1 / per_char if per_char else 1.0)


__all__ = ["QUEUE_CHUNKS", "Stream", "StreamCancelled"]
