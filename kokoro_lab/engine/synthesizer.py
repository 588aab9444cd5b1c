"""The persistent synthesizer: load once, stay warm, make chunks for every front door.

A :class:`Synthesizer` owns the warm sessions of one precision, provider and decoder mode (see
:mod:`kokoro_lab.engine.decoding`), the voice bank and the phonemizer. Its public API is what
every front door and benchmark uses:

* :meth:`Synthesizer.request` checks a speech request once (:mod:`.request`);
* :meth:`Synthesizer.stream` starts a :class:`~kokoro_lab.engine.stream.Stream` of chunks,
  planned to start speaking fast and keep ahead of playback;
* :meth:`Synthesizer.synthesize` waits for the whole :class:`Result`;
* :meth:`Synthesizer.render` makes one piece of text as one chunk, with no planning, so two
  configurations can be compared sample for sample.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from kokoro_onnx.tokenizer import Tokenizer

from . import assets
from .cache import ChunkCache
from .chunking import MAX_PHONEMES, TextError, boundary_of
from .decoding import DEFAULT_DECODER, Decoder, Rendered, check_decoder, silent_tokens
from .finish import FinishedAudio, finish_chunk
from .graphs.variants import VARIANTS
from .metrics import SAMPLE_RATE, Chunk, Result
from .request import SpeechRequest, check_speed, check_text
from .sessions import SESSIONS, check_available, default_threads, release_freed_memory, run_options
from .stream import Stream
from .tuning import Tuning
from .tuning import resolve as resolve_tuning
from .voices import Voice, VoiceBank, parse
from .words import Word, chunk_words

WARMUP_TEXT = "Hello."


class Synthesizer:
    """A warm Kokoro-82M engine for one precision, provider and decoder mode.

    ``decoder`` is ``"skip_pads"`` (default: the split graph, the vocoder skips the silent pad
    frames) or ``"full"`` (the whole released graph, bit-exact model output); see
    :mod:`kokoro_lab.engine.decoding`. ``tuning`` picks the vocoder graph variant and session
    settings (:mod:`kokoro_lab.engine.tuning`): ``"auto"`` this machine's measured profile (or
    the built-in choice), ``"off"`` the released graph with plain settings. ``cache=False``
    synthesizes every chunk even when the same one was made before (:mod:`.cache`). Every
    session the mode needs (one per stage, and the single-thread lane sessions on a multi-core
    CPU) is created and warmed here.

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
        cache: bool | ChunkCache = True,
        tuning: str | Tuning | None = "auto",
    ):
        self.precision = _check_precision(precision)
        self.provider = provider.lower()
        self.tuning = resolve_tuning(tuning, tuple(VARIANTS))
        self.threads = threads or self.tuning.threads or default_threads()
        self.lanes = lanes if lanes is not None else (
            self.tuning.lanes or default_lanes(self.provider, self.threads))
        if self.lanes < 1:
            raise ValueError(f"lanes must be at least 1, got {self.lanes}")
        self.decoder = check_decoder(decoder)
        # Chunks made before play from memory (see .cache); profiling and benchmarks pass False.
        self.cache = cache if isinstance(cache, ChunkCache) else ChunkCache() if cache else None
        self._model = model
        check_available(self.provider)
        self.bank = VoiceBank(assets.voices_path(voices))
        self.tokenizer = Tokenizer()
        self._silent = silent_tokens(self.tokenizer.vocab)
        self._main = self.decoder_for()
        if warm_up:
            self.warm_up()

    # -- configuration ---------------------------------------------------------------------

    def decoder_for(self, mode: str | None = None, precision: str | None = None,
                    provider: str | None = None, threads: int | None = None) -> Decoder:
        """The warm :class:`Decoder` of a mode, precision, provider and thread count (the
        synthesizer's own by default); its sessions are made once per process."""
        precision = precision or self.precision
        model = self._model if precision == self.precision else None
        # The graph variants rewrite the int8 release's integer convolutions; fp32 and fp16
        # graphs have none, so they run as derived.
        variant = self.tuning.variant if precision == "int8" else "released"
        return Decoder(mode or self.decoder, precision, (provider or self.provider).lower(),
                       threads or self.threads, model, self._silent,
                       variant=variant, spinning=self.tuning.spinning)

    def lane_decoder(self, main: Decoder) -> Decoder | None:
        """The decoder lanes share (concurrent runs are safe in ONNX Runtime), or None."""
        if self.lanes == 1 or main.provider != "cpu":
            return None
        return self.decoder_for(main.mode, main.precision, main.provider,
                                threads=max(1, self.threads // self.lanes))

    def warm_up(self, decoder: Decoder | str | None = None) -> None:
        """One short run on every session ``decoder`` (a mode name, or the synthesizer's own)
        and its lanes use: the first run of a session pays for its kernels and arena, which
        must not land on a user's first chunk."""
        main = decoder if isinstance(decoder, Decoder) else self.decoder_for(decoder)
        tokens, style = self.model_inputs(self.phonemize(WARMUP_TEXT, "en-us"), parse("af_heart"))
        for each in (main, self.lane_decoder(main)):
            if each is not None:
                each.render(tokens, style, 1.0, run_options())

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

    def model_inputs(self, phonemes: str, voice: Voice) -> tuple[np.ndarray, np.ndarray]:
        """Model inputs for phonemes: tokens with both pads ``[1, T]``, and the style row."""
        tokens = self.tokenizer.tokenize(phonemes, limit=MAX_PHONEMES)
        return (np.array([[0, *tokens, 0]], dtype=np.int64),
                self.bank.style(voice, max(len(tokens), 1)))

    # -- requests ---------------------------------------------------------------------------

    def request(self, text: str, voice: str | Voice = "af_heart", speed: float = 1.0,
                lang: str | None = None, *, precision: str | None = None,
                provider: str | None = None, decoder: str | None = None,
                adaptive: bool = True) -> SpeechRequest:
        """Check everything about one utterance now and return the checked request.

        Raises :class:`TextError`, :class:`~kokoro_lab.engine.voices.VoiceError`,
        ``ValueError`` (speed, precision, decoder) or
        :class:`~kokoro_lab.engine.sessions.ProviderUnavailable`, each saying what is wrong.
        """
        cleaned = check_text(text)
        resolved = self.resolve_voice(voice)
        provider = (provider or self.provider).lower()
        check_available(provider)
        return SpeechRequest(
            text=cleaned, voice=resolved, speed=check_speed(speed),
            lang=lang or resolved.lang, precision=_check_precision(precision or self.precision),
            provider=provider, decoder=check_decoder(decoder or self.decoder),
            adaptive=adaptive)

    def stream(self, text: str | SpeechRequest, voice: str | Voice = "af_heart",
               speed: float = 1.0, lang: str | None = None, **options) -> Stream:
        """Start synthesizing; iterate the result for :class:`Chunk` objects.

        ``text`` is a string (checked here with the other arguments, see :meth:`request`,
        whose keyword ``options`` this takes: ``precision``, ``provider``, ``decoder`` override
        the synthesizer's for this call, sessions being cached per stage, precision, provider
        and threads) or an already checked :class:`SpeechRequest`. ``adaptive=False`` plans
        fixed chunks instead (no small first chunk, every chunk filled to the efficiency cap,
        no lanes): the same text then always gives the same chunks, whatever the machine's
        speed, which comparisons of precisions need.
        """
        request = text if isinstance(text, SpeechRequest) else self.request(
            text, voice, speed, lang, **options)
        decoder = self.decoder_for(request.decoder, request.precision, request.provider)
        return Stream(self, decoder, request)

    def synthesize(self, text: str | SpeechRequest, voice: str | Voice = "af_heart",
                   speed: float = 1.0, lang: str | None = None, **options) -> Result:
        """Synthesize the whole text and return the joined audio with per-chunk metrics."""
        return self.stream(text, voice, speed, lang, **options).result()

    def render(self, text: str, voice: str | Voice = "af_heart", speed: float = 1.0,
               lang: str | None = None, *, phonemes: str | None = None, raw: bool = False,
               **options) -> Chunk:
        """Make ``text`` as one chunk: no planning, no lanes, the same input every time.

        ``phonemes`` skips the phonemizer (e.g. a planned chunk's own); more than the model's
        context (510 phonemes) is a :class:`TextError` (use :meth:`stream` for long text).
        ``raw=True`` returns the model's untrimmed output in ``chunk.audio`` (no fade, no
        pause; ``chunk.trim_start`` is then the samples the decoder skipped). ``options`` as
        in :meth:`request`.
        """
        request = self.request(text, voice, speed, lang, adaptive=False, **options)
        phonemes = phonemes if phonemes is not None else self.phonemize(request.text,
                                                                         request.lang)
        if len(phonemes) > MAX_PHONEMES:
            raise TextError(f"render() takes one chunk, at most {MAX_PHONEMES} phonemes; this "
                            f"text has {len(phonemes)}: use stream() or synthesize()")
        decoder = self.decoder_for(request.decoder, request.precision, request.provider)
        made = self.make(request.text, phonemes, boundary_of(request.text), request.voice,
                         request.speed, request.lang, decoder, finish=not raw)
        return made.chunk(0, queued=made.started, voice=request.voice.label, speed=request.speed)

    def close(self) -> None:
        """Drop this process's cached sessions (they are rebuilt on next use)."""
        SESSIONS.clear()

    # -- one chunk ----------------------------------------------------------------------------

    def make(self, text: str, phonemes: str, boundary: str, voice: Voice, speed: float,
             lang: str, decoder: Decoder, options: ort.RunOptions | None = None,
             finish: bool = True, opens_stream: bool = False) -> Made:
        """Run one chunk on ``decoder`` and finish its audio (trim, fades, pause; a chunk that
        ``opens_stream`` starts at its sound), or take it from the chunk cache when the same
        chunk was made before."""
        key = (text, phonemes, boundary, voice.parts, speed, finish, opens_stream, decoder.graph)
        if self.cache is not None and (hit := self.cache.get(key)) is not None:
            now = time.perf_counter()
            return dataclasses.replace(hit, started=now, finished=now, decoder=decoder,
                                       slowdown=1.0, cached=True)
        made = self._make(text, phonemes, boundary, voice, speed, lang, decoder, options, finish,
                          opens_stream)
        if self.cache is not None:
            self.cache.put(key, made)
        return made

    def _make(self, text: str, phonemes: str, boundary: str, voice: Voice, speed: float,
              lang: str, decoder: Decoder, options: ort.RunOptions | None,
              finish: bool, opens_stream: bool) -> Made:
        model = decoder.speed_model
        predicted_s = model.predict_synthesis_s(len(phonemes))
        started = time.perf_counter()
        rendered = self._render(decoder, phonemes, voice, speed, options)
        release_freed_memory()  # what this chunk's new input shapes needed: back to the system
        finished_audio = finish_chunk(rendered.audio, boundary, speed, opens_stream) if finish \
            else FinishedAudio(rendered.audio, 0.0, 0, len(rendered.audio))
        finished = time.perf_counter()
        model.observe(len(phonemes), finished - started,
                      len(finished_audio.audio) / SAMPLE_RATE, speed)
        trim_start = rendered.offset + finished_audio.trim_start
        words = [] if rendered.durations is None else chunk_words(
            text, phonemes, rendered.durations, trim_start, finished_audio.speech_samples,
            phonemize=lambda piece: self.phonemize(piece, lang), sample_rate=SAMPLE_RATE)
        return Made(text, phonemes, finished_audio, rendered, started, finished, decoder,
                    slowdown=(finished - started) / predicted_s if predicted_s > 0 else 1.0,
                    trim_start=trim_start, words=words)

    def _render(self, decoder: Decoder, phonemes: str, voice: Voice, speed: float,
                options: ort.RunOptions | None = None) -> Rendered:
        tokens, style = self.model_inputs(phonemes, voice)
        if tokens.shape[1] <= 2:  # nothing between the pads
            return Rendered(np.zeros(0, dtype=np.float32), 0, None)
        return decoder.render(tokens, style, speed, options)


@dataclass
class Made:
    """One synthesized chunk on its way to the consumer."""

    text: str
    phonemes: str
    finished_audio: FinishedAudio
    rendered: Rendered
    started: float
    finished: float
    decoder: Decoder
    slowdown: float  # measured synthesis time over what the speed model predicted
    trim_start: int  # samples of the full model output before the audio: skipped plus trimmed
    words: list[Word]  # the chunk's words, timed in its finished audio
    cached: bool = False  # taken from the chunk cache, not synthesized now

    def chunk(self, index: int, *, queued: float, voice: str, speed: float,
              start_margin_s: float = 0.0) -> Chunk:
        """The :class:`Chunk` a consumer gets."""
        audio = self.finished_audio
        return Chunk(
            index=index, text=self.text, phonemes=self.phonemes, audio=audio.audio,
            queued=queued, started=self.started, finished=self.finished,
            provider=self.decoder.provider, precision=self.decoder.precision, voice=voice,
            speed=speed, pause_ms=audio.pause_s * 1000, threads=self.decoder.threads,
            decoder=self.decoder.mode, token_durations=self.rendered.durations,
            trim_start=self.trim_start, speech_samples=audio.speech_samples,
            start_margin_ms=start_margin_s * 1000, words=self.words, cached=self.cached,
        )


def default_lanes(provider: str, threads: int) -> int:
    """Two lanes on a multi-core CPU; one on accelerators, whose single stream is already wide."""
    return 2 if provider == "cpu" and threads >= 2 else 1


def _check_precision(precision: str) -> str:
    if precision not in assets.PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of "
                         f"{', '.join(assets.PRECISIONS)}")
    return precision


__all__ = ["Made", "Synthesizer", "default_lanes"]
