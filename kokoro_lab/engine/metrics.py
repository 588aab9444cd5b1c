"""What one synthesized chunk and one whole utterance measured.

Times are ``time.perf_counter()`` seconds; ``*_ms`` fields are derived from them. "Time to
first audio" follows the project's definition: from the call until the first *audible* sample
(|x| > :data:`AUDIBLE`) would play, with playback starting at the first chunk (plus the start
margin the engine asked for on it, :attr:`Chunk.start_margin_ms`) and each chunk played right
after the previous one (or as soon as it is ready, whichever is later).

Word timings (:mod:`kokoro_lab.engine.words`): each chunk's ``words`` are timed in that chunk's
audio; :attr:`Result.words` places them in the joined audio, where each chunk starts after the
whole audio of the chunks before it, their pauses included.
"""

from __future__ import annotations

import wave
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .words import Word, join_words
from .words import to_srt as words_to_srt
from .words import to_vtt as words_to_vtt

SAMPLE_RATE = 24_000
AUDIBLE = 0.02



def plural(count: int, word: str) -> str:
    """``"1 chunk"``, ``"2 chunks"``."""
    return f"{count} {word}{'' if count == 1 else 's'}"


@dataclass
class Chunk:
    """One piece of streamed audio and how it was made.

    Facts for placing words on the audio (no extra model run makes them):

    * ``token_durations``: the front stage's per-token durations (``/encoder/Clip_output_0``,
      int), for every token including the leading and trailing pad tokens (every decoder mode
      gives them; ``None`` only for a chunk with no tokens). One duration unit is
      :data:`kokoro_lab.engine.words.SAMPLES_PER_UNIT` = 600 output samples (two 300-sample
      frames, 25 ms) at any speed — the speed is applied to the durations before they are
      rounded — so ``token_durations.sum() * 600`` is the full model output's length in samples.
    * ``trim_start``: samples of that full model output (as if nothing had been skipped) that
      precede ``audio[0]``: the pad frames the decoder skipped plus what the trim removed.
    * ``speech_samples``: samples of ``audio`` before the appended pause.
    * ``words``: every word of ``text`` with its span in seconds of ``audio``
      (:func:`kokoro_lab.engine.words.chunk_words` made from the facts above).

    ``start_margin_ms`` (chunk 0 only, else 0): how long the player should wait after this
    chunk arrives before starting playback, because the speed measured now says the rest of
    the text could not otherwise keep up (see
    :meth:`kokoro_lab.engine.scheduling.Scheduler.start_margin_s`).
    """

    index: int
    text: str
    phonemes: str
    audio: np.ndarray  # float32 mono at SAMPLE_RATE, trimmed, faded, with its trailing pause
    queued: float  # when the stream was asked for (shared by all chunks of one stream)
    started: float  # synthesis of this chunk began
    finished: float  # synthesis of this chunk ended (audio ready)
    provider: str
    precision: str
    voice: str
    speed: float
    pause_ms: float = 0.0  # silence appended after the speech (sentence or clause pause)
    threads: int = 0  # intra-op threads of the session that made it (1 on a CPU lane)
    decoder: str = ""  # the decoder mode that made it ("skip_pads" or "full")
    token_durations: np.ndarray | None = field(default=None, repr=False)
    trim_start: int = 0
    speech_samples: int = 0
    start_margin_ms: float = 0.0
    words: list[Word] = field(default_factory=list, repr=False)
    cached: bool = False  # played from the chunk cache (made before, same text and graph)

    @property
    def phoneme_count(self) -> int:
        return len(self.phonemes)

    @property
    def synthesis_ms(self) -> float:
        return (self.finished - self.started) * 1000

    @property
    def audio_ms(self) -> float:
        return len(self.audio) / SAMPLE_RATE * 1000

    @property
    def rtf(self) -> float:
        """Real-time factor: synthesis time over audio time (< 1 is faster than real time)."""
        return self.synthesis_ms / self.audio_ms if self.audio_ms else float("inf")

    @property
    def ready_ms(self) -> float:
        """Milliseconds from the stream's start until this chunk's audio was ready."""
        return (self.finished - self.queued) * 1000

    def metrics(self) -> dict:
        """The chunk's figures as a flat record (no audio)."""
        return {
            "index": self.index,
            "text": self.text,
            "phonemes": self.phoneme_count,
            "queued": self.queued,
            "started": self.started,
            "finished": self.finished,
            "ready_ms": round(self.ready_ms, 2),
            "synthesis_ms": round(self.synthesis_ms, 2),
            "audio_ms": round(self.audio_ms, 2),
            "rtf": round(self.rtf, 4),
            "provider": self.provider,
            "precision": self.precision,
            "voice": self.voice,
            "speed": self.speed,
            "threads": self.threads,
            "decoder": self.decoder,
            "start_margin_ms": round(self.start_margin_ms, 2),
        }


@dataclass
class Playback:
    """A simulated player fed by chunks as they become ready."""

    first_audio_ms: float  # call → first audible sample plays
    first_chunk_ms: float  # call → first chunk ready
    underrun_ms: float  # total silence inserted after first audio because a chunk was late
    underruns: int  # how many chunks arrived late
    total_ms: float  # call → last chunk ready
    played_out_ms: float = float("nan")  # call → the last chunk has played to its end

    def as_dict(self) -> dict:
        return {k: round(v, 2) if isinstance(v, float) else v for k, v in asdict(self).items()}


def first_audible_sample(audio: np.ndarray, threshold: float = AUDIBLE) -> int | None:
    loud = np.flatnonzero(np.abs(audio) > threshold)
    return int(loud[0]) if loud.size else None


def simulate_playback(ready_ms: list[float], audio: list[np.ndarray],
                      start_margin_ms: float = 0.0) -> Playback:
    """Play each chunk when it is ready and the previous one has ended; measure the result.

    ``ready_ms[i]`` is when chunk ``i`` became available, relative to the call; playback
    starts ``start_margin_ms`` after the first chunk is ready.
    """
    clock = ready_ms[0] + start_margin_ms if ready_ms else 0.0  # when the queue runs dry
    first_audio = None
    underrun_ms, underruns = 0.0, 0
    for ready, samples in zip(ready_ms, audio, strict=True):
        start = max(clock, ready)
        if first_audio is not None and ready > clock:
            underrun_ms += ready - clock
            underruns += 1
        if first_audio is None:
            hit = first_audible_sample(samples)
            if hit is not None:
                first_audio = start + hit / SAMPLE_RATE * 1000
        clock = start + len(samples) / SAMPLE_RATE * 1000
    return Playback(
        first_audio_ms=first_audio if first_audio is not None else float("nan"),
        first_chunk_ms=ready_ms[0] if ready_ms else float("nan"),
        underrun_ms=underrun_ms,
        underruns=underruns,
        total_ms=ready_ms[-1] if ready_ms else float("nan"),
        played_out_ms=clock if ready_ms else float("nan"),
    )


@dataclass
class Result:
    """A whole utterance: joined audio plus per-chunk metrics."""

    chunks: list[Chunk] = field(default_factory=list)
    provider: str = ""
    precision: str = ""
    sample_rate: int = SAMPLE_RATE

    @property
    def audio(self) -> np.ndarray:
        if not self.chunks:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate([c.audio for c in self.chunks]).astype(np.float32, copy=False)

    @property
    def duration_s(self) -> float:
        return sum(len(c.audio) for c in self.chunks) / self.sample_rate

    @property
    def playback(self) -> Playback:
        margin = self.chunks[0].start_margin_ms if self.chunks else 0.0
        return simulate_playback([c.ready_ms for c in self.chunks],
                                 [c.audio for c in self.chunks], margin)

    @property
    def words(self) -> list[Word]:
        """Every word of the text, timed in seconds of :attr:`audio` (pauses included) and
        indexed in ``" ".join(chunk.text for chunk in chunks)``."""
        return join_words(self.chunks, self.sample_rate)

    def records(self) -> list[dict]:
        return [c.metrics() for c in self.chunks]

    def word_records(self) -> list[dict]:
        """One flat record per word: text, start, end, duration (seconds), chunk, characters."""
        chunk_of = [c.index for c in self.chunks for _ in c.words]
        return [{"word": w.text, "start": round(w.start, 3), "end": round(w.end, 3),
                 "duration": round(w.duration, 3), "chunk": chunk,
                 "char_start": w.char_start, "char_end": w.char_end}
                for w, chunk in zip(self.words, chunk_of, strict=True)]

    def to_dataframe(self, words: bool = False):
        """Per-chunk metrics (or, with ``words=True``, one row per word) as a pandas DataFrame
        (needs pandas)."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("to_dataframe() needs pandas: pip install pandas") from None
        return pd.DataFrame.from_records(self.word_records() if words else self.records())

    def to_vtt(self, path: str | Path | None = None, *, word_timestamps: bool = False) -> str:
        """WebVTT captions of :attr:`words` (see :func:`kokoro_lab.engine.words.to_vtt`);
        also written to ``path`` (UTF-8) when given."""
        return _written(words_to_vtt(self.words, word_timestamps=word_timestamps), path)

    def to_srt(self, path: str | Path | None = None) -> str:
        """SubRip captions of :attr:`words`; also written to ``path`` (UTF-8) when given."""
        return _written(words_to_srt(self.words), path)

    def save(self, path: str | Path) -> Path:
        """Write the audio as 16-bit PCM WAV."""
        return write_wav(path, self.audio, self.sample_rate)

    def summary(self) -> dict:
        return {
            "chunks": len(self.chunks),
            "audio_s": round(self.duration_s, 3),
            "provider": self.provider,
            "precision": self.precision,
            **self.playback.as_dict(),
        }

    def __repr__(self) -> str:
        s = self.summary()
        return (
            f"<Result {plural(s['chunks'], 'chunk')}, {s['audio_s']} s audio, first audio "
            f"{s['first_audio_ms']} ms, {self.provider}/{self.precision}>"
        )


def _written(text: str, path: str | Path | None) -> str:
    if path is not None:
        Path(path).write_text(text, encoding="utf-8")
    return text


def write_wav(path: str | Path, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> Path:
    path = Path(path)
    pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(pcm.tobytes())
    return path
