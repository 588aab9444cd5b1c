"""The persistent streaming synthesizer: load once, stay warm, stream chunks as they are made.

A :class:`Stream` runs synthesis on a worker thread that stays ahead of the consumer through a
bounded queue (so a 100,000-character text never holds more than a few chunks of audio in
flight). Closing the stream or calling :meth:`Stream.cancel` aborts the inference in flight
(ONNX Runtime's ``RunOptions.terminate``, on whichever stage or lane is running) and stops the
worker before its next chunk.

Each chunk is decoded by the synthesizer's decoder mode (:mod:`kokoro_lab.engine.decoding`):
by default the split graph, with the vocoder skipping the silent pad frames. The player may
report how much audio it really has buffered (:meth:`Stream.observe_playback`); chunk sizing
then follows that measurement instead of a simulated playback.
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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from kokoro_onnx.tokenizer import Tokenizer
from kokoro_onnx.trim import trim as trim_silence

from . import assets
from .chunking import MAX_PHONEMES, ChunkPlanner, PlannedChunk, TextError, clean_text
from .decoding import DEFAULT_DECODER, Decoder, Rendered, check_decoder, silent_tokens
from .metrics import SAMPLE_RATE, Chunk, Result, plural
from .scheduling import Scheduler
from .sessions import (
    SESSIONS,
    check_available,
    default_threads,
    release_freed_memory,
    run_options,
)
from .voices import Voice, VoiceBank, VoiceError, parse
from .words import Word, chunk_words

SENTENCE_PAUSE_S = 0.25
CLAUSE_PAUSE_S = 0.1
FADE_S = 0.004  # short fades at chunk edges so joins never click
QUEUE_CHUNKS = 4  # chunks synthesized ahead of the consumer at most
MIN_SPEED, MAX_SPEED = 0.5, 2.0
WARMUP_TEXT = "Hello."


class StreamCancelled(RuntimeError):
    """Raised by :meth:`Stream.result` when the stream was cancelled before its end."""


def check_speed(speed: float) -> float:
    try:
        value = float(speed)
    except (TypeError, ValueError):
        raise ValueError(f"speed must be a number between 0.5 and 2.0, got {speed!r}") from None
    if not MIN_SPEED <= value <= MAX_SPEED:
        raise ValueError(f"speed must be between {MIN_SPEED} and {MAX_SPEED}, got {value:g}")
    return value


class Synthesizer:
    """A warm Kokoro-82M engine for one precision, provider and decoder mode.

    ``decoder`` is ``"skip_pads"`` (default: the split graph, the vocoder skips the silent pad
    frames) or ``"full"`` (the whole released graph, bit-exact model output); see
    :mod:`kokoro_lab.engine.decoding`. Every session the mode needs (one per stage, and the
    single-thread lane sessions on a multi-core CPU) is created and warmed here.

    >>> synth = Synthesizer()                       # int8 on CPU, built from the registries
    >>> for chunk in synth.stream("Hello there. How are you?"):
    ...     play(chunk.audio)                        # float32 mono, 24 kHz
    """

    def __init__(
        self,
        precision: str = "int8",
        provider: str = "cpu",
        *,
        model: str | Path | None = None,
        voices: str | Path | None = None,
        threads: int | None = None,
        lanes: int | None = None,
        decoder: str = DEFAULT_DECODER,
        warm_up: bool = True,
    ):
        self.precision = precision
        self.provider = provider.lower()
        self.threads = threads or default_threads()
        self.lanes = lanes if lanes is not None else default_lanes(self.provider, self.threads)
        if self.lanes < 1:
            raise ValueError(f"lanes must be at least 1, got {self.lanes}")
        self.decoder = check_decoder(decoder)
        self._model = model
        check_available(self.provider)
        self.bank = VoiceBank(assets.voices_path(voices))
        self.tokenizer = Tokenizer()
        self._silent = silent_tokens(self.tokenizer.vocab)
        self._main = self._decoder(self.decoder, self.precision, self.provider)
        if warm_up:
            self.warm_up(self._main)

    # -- configuration ---------------------------------------------------------------------

    def _decoder(self, mode: str, precision: str, provider: str, threads: int | None = None
                 ) -> Decoder:
        model = self._model if precision == self.precision else None
        return Decoder(mode, precision, provider, threads or self.threads, model, self._silent)

    def _lane_decoder(self, main: Decoder) -> Decoder | None:
        """The decoder lanes share (concurrent runs are safe in ONNX Runtime), or None."""
        if self.lanes == 1 or main.provider != "cpu":
            return None
        return self._decoder(main.mode, main.precision, main.provider,
                             threads=max(1, self.threads // self.lanes))

    def warm_up(self, main: Decoder) -> None:
        """One short run on every session ``main`` and its lanes use: the first run of a session
        pays for its kernels and arena, which must not land on a user's first chunk."""
        tokens, style = self._inputs(self.phonemize(WARMUP_TEXT, "en-us"), parse("af_heart"))
        for decoder in (main, self._lane_decoder(main)):
            if decoder is not None:
                decoder.render(tokens, style, 1.0, run_options())

    @property
    def active_providers(self) -> list[str]:
        """The providers ONNX Runtime actually runs this session on, in priority order."""
        return self._main.active_providers

    @property
    def load_ms(self) -> float:
        """Milliseconds it took to create the sessions of the default decoder mode."""
        return self._main.load_ms

    @property
    def voices(self) -> list[str]:
        return self.bank.names

    def resolve_voice(self, spec: str | Voice) -> Voice:
        resolved = parse(spec)
        self.bank.table(resolved)  # raises VoiceError for unknown names
        return resolved

    # -- text -------------------------------------------------------------------------------

    def phonemize(self, text: str, lang: str) -> str:
        return " ".join(self.tokenizer.phonemize(text, lang).split())

    def _inputs(self, phonemes: str, voice: Voice) -> tuple[np.ndarray, np.ndarray]:
        """Model inputs for phonemes: tokens with both pads ``[1, T]``, and the style row."""
        tokens = self.tokenizer.tokenize(phonemes, limit=MAX_PHONEMES)
        return (np.array([[0, *tokens, 0]], dtype=np.int64),
                self.bank.style(voice, max(len(tokens), 1)))

    def _render(self, decoder: Decoder, phonemes: str, voice: Voice, speed: float,
                options: ort.RunOptions | None = None) -> Rendered:
        tokens, style = self._inputs(phonemes, voice)
        if tokens.shape[1] <= 2:  # nothing between the pads
            return Rendered(np.zeros(0, dtype=np.float32), 0, None)
        return decoder.render(tokens, style, speed, options)

    # -- streaming --------------------------------------------------------------------------

    def stream(
        self,
        text: str,
        voice: str | Voice = "af_heart",
        speed: float = 1.0,
        lang: str | None = None,
        *,
        precision: str | None = None,
        provider: str | None = None,
        adaptive: bool = True,
        decoder: str | None = None,
    ) -> Stream:
        """Start synthesizing ``text``; iterate the result for :class:`Chunk` objects.

        Everything is validated before the worker starts, so bad input raises here.
        ``precision``/``provider``/``decoder`` override the synthesizer's for this call
        (sessions are cached per stage, precision, provider and threads). ``adaptive=False``
        plans fixed chunks instead (no small first chunk, every chunk filled to the efficiency
        cap, no lanes): the same text then always gives the same chunks, whatever the
        machine's speed, which comparisons of precisions need.
        """
        text = check_text(text)
        resolved = self.resolve_voice(voice)
        speed = check_speed(speed)
        main = self._decoder(decoder or self.decoder, precision or self.precision,
                             (provider or self.provider).lower())  # validates the mode first
        language = lang or resolved.lang
        return Stream(self, main, text, resolved, speed, language, adaptive)

    def synthesize(self, text: str, voice: str | Voice = "af_heart", speed: float = 1.0,
                   lang: str | None = None, **options) -> Result:
        """Synthesize the whole text and return the joined audio with per-chunk metrics."""
        return self.stream(text, voice, speed, lang, **options).result()

    def close(self) -> None:
        """Drop this process's cached sessions (they are rebuilt on next use)."""
        SESSIONS.clear()


def default_lanes(provider: str, threads: int) -> int:
    """Two lanes on a multi-core CPU; one on accelerators, whose single stream is already wide."""
    return 2 if provider == "cpu" and threads >= 2 else 1


def check_text(text: str) -> str:
    """``text`` if it has something to speak, else :class:`TextError` saying what is wrong."""
    if not isinstance(text, str):
        raise TextError(f"text must be a str, got {type(text).__name__}")
    cleaned = clean_text(text)
    if not cleaned.strip():
        raise TextError("the text is empty: nothing to speak")
    if not any(ch.isalnum() for ch in cleaned):
        raise TextError(f"nothing speakable in {_preview(text)}: it has no letters or digits")
    return text


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

    ``loaded`` is the stream's :class:`~kokoro_lab.engine.decoding.Decoder` (its ``provider``,
    ``precision`` and ``mode`` say what made the audio).
    """

    _DONE = object()

    def __init__(self, synth: Synthesizer, loaded: Decoder, text: str, voice: Voice,
                 speed: float, lang: str, adaptive: bool):
        self.synth = synth
        self.loaded = loaded
        self.text = text
        self.voice = voice
        self.speed = speed
        self.lang = lang
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
        self.adaptive = adaptive
        self.scheduler = Scheduler(loaded.speed_model, adaptive=adaptive)
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
        """Plan and synthesize chunks, in latency mode or lane mode (see :mod:`scheduling`).

        Latency mode runs one chunk at a time on the all-cores decoder: the buffer is short, so
        the next chunk must come as soon as possible. Once the buffer can cover a lane chunk,
        lane mode keeps ``lanes`` chunks in flight on single-thread sessions, which on a CPU
        makes more audio per second than one session using every core. Chunks are always
        delivered in text order.
        """
        synth = self.synth
        planner = ChunkPlanner(self.text, lambda t: synth.phonemize(t, self.lang))
        planner.first = self.adaptive
        scheduler = self.scheduler
        lane = synth._lane_decoder(self.loaded) if self.adaptive else None
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
                    made = self._synthesize(planned, self.loaded)
                if not self._deliver(index, planned, made, planner):
                    return
                index += 1
        if index == 0 and not self._cancel.is_set():
            raise TextError(f"nothing speakable in {_preview(self.text)}: it produced no phonemes")

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
            in_flight.append((planned, lanes.submit(self._synthesize, planned, lane)))

    def _synthesize(self, planned: PlannedChunk, decoder: Decoder) -> Made:
        """Run one chunk on ``decoder`` and finish its audio (trim, fades, pause)."""
        model = decoder.speed_model
        predicted_s = model.predict_synthesis_s(len(planned.phonemes))
        started = time.perf_counter()
        rendered = self.synth._render(decoder, planned.phonemes, self.voice, self.speed,
                                      self._run_options)
        release_freed_memory()  # what this chunk's new input shapes needed: back to the system
        finished_audio = finish_chunk(rendered.audio, planned.boundary, self.speed)
        finished = time.perf_counter()
        model.observe(len(planned.phonemes), finished - started,
                      len(finished_audio.audio) / SAMPLE_RATE, self.speed)
        trim_start = rendered.offset + finished_audio.trim_start
        return Made(finished_audio, rendered, started, finished, decoder,
                    slowdown=(finished - started) / predicted_s if predicted_s > 0 else 1.0,
                    trim_start=trim_start,
                    words=self._words(planned, rendered, finished_audio, trim_start))

    def _words(self, planned: PlannedChunk, rendered: Rendered, audio: FinishedAudio,
               trim_start: int) -> list[Word]:
        """The chunk's words timed in its audio, from the durations the model spoke with.

        About 0.1 ms a word (1.5 ms for an 18-word chunk, 0.04 % of its synthesis; mostly
        phonemizing each word), after the chunk's timing is taken. The phonemizer holds its own
        lock, so lanes may call it.
        """
        if rendered.durations is None:  # no tokens: nothing was spoken
            return []
        return chunk_words(planned.text, planned.phonemes, rendered.durations,
                           trim_start, audio.speech_samples,
                           phonemize=lambda text: self.synth.phonemize(text, self.lang),
                           sample_rate=SAMPLE_RATE)

    def _deliver(self, index: int, planned: PlannedChunk, made: Made,
                 planner: ChunkPlanner) -> bool:
        audio = made.finished_audio
        now = time.perf_counter()
        margin_s = 0.0
        if index == 0 and self.adaptive:
            margin_s = self._start_margin_s(planned, audio, made.slowdown, planner)
        self.scheduler.chunk_ready(now, len(audio.audio) / SAMPLE_RATE, start_margin_s=margin_s)
        chunk = Chunk(
            index=index, text=planned.text, phonemes=planned.phonemes, audio=audio.audio,
            queued=self.queued, started=made.started, finished=made.finished,
            provider=made.decoder.provider, precision=made.decoder.precision,
            voice=self.voice.label, speed=self.speed, pause_ms=audio.pause_s * 1000,
            threads=made.decoder.threads, decoder=made.decoder.mode,
            token_durations=made.rendered.durations,
            trim_start=made.trim_start,
            speech_samples=audio.speech_samples, start_margin_ms=margin_s * 1000,
            words=made.words,
        )
        if self.on_chunk is not None:
            self.on_chunk(chunk)
        return self._put(chunk)

    def _start_margin_s(self, planned: PlannedChunk, audio: FinishedAudio, slowdown: float,
                        planner: ChunkPlanner) -> float:
        """The wait before playback that the speed measured now says avoids stalls (see
        :meth:`Scheduler.start_margin_s`); the rest of the text is estimated at chunk 0's
        phonemes per character."""
        remaining_chars = max(0, len(self.text) - planner.planned_chars)
        per_char = len(planned.phonemes) / max(1, len(planned.text))
        return self.scheduler.start_margin_s(
            first_audio_s=len(audio.audio) / SAMPLE_RATE,
            remaining_phonemes=int(remaining_chars * per_char), speed=self.speed,
            slowdown=slowdown, chars_per_phoneme=1 / per_char if per_char else 1.0)


@dataclass
class FinishedAudio:
    """A chunk's playable audio and where its speech sits in the raw output."""

    audio: np.ndarray  # trimmed, faded, with the boundary pause appended
    pause_s: float
    trim_start: int  # raw samples the trim removed before the speech
    speech_samples: int  # samples of ``audio`` before the pause


@dataclass
class Made:
    """One synthesized chunk on its way to the consumer."""

    finished_audio: FinishedAudio
    rendered: Rendered
    started: float
    finished: float
    decoder: Decoder
    slowdown: float  # measured synthesis time over what the speed model predicted
    trim_start: int  # samples of the full model output before the audio: skipped plus trimmed
    words: list[Word]  # the chunk's words, timed in its finished audio


def finish_chunk(raw: np.ndarray, boundary: str, speed: float) -> FinishedAudio:
    """Trim the model's silent pads, fade the edges and add the pause the boundary asks for."""
    pause = {"sentence": SENTENCE_PAUSE_S, "clause": CLAUSE_PAUSE_S}.get(boundary, 0.02) / speed
    if raw.size == 0:
        return FinishedAudio(raw, 0.0, 0, 0)
    trimmed, (head, _) = trim_silence(raw)
    audio = np.array(trimmed, dtype=np.float32)
    fade = min(int(FADE_S * SAMPLE_RATE), len(audio) // 2)
    if fade:
        ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
        audio[:fade] *= ramp
        audio[-fade:] *= ramp[::-1]
    speech = len(audio)
    audio = np.concatenate([audio, np.zeros(int(pause * SAMPLE_RATE), np.float32)])
    return FinishedAudio(audio, pause, int(head), speech)


def finish_audio(raw: np.ndarray, boundary: str, speed: float) -> tuple[np.ndarray, float]:
    """:func:`finish_chunk`'s audio and pause (seconds)."""
    finished = finish_chunk(raw, boundary, speed)
    return finished.audio, finished.pause_s


def _preview(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")


__all__ = ["Synthesizer", "Stream", "StreamCancelled", "VoiceError", "TextError", "check_speed"]
