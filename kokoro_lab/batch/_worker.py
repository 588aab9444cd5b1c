"""The work done for one item wherever it runs: synthesize, check, encode, optionally write.

The rule: nothing an item does can take its worker down. Every ``Exception`` raised while an
item is synthesized or encoded becomes a ``failed`` record carrying the error, so one
unspeakable line costs one line. (A worker *process* that dies is the runner's business: the
local pool and Dask both give its unfinished items to another worker.)

Workers return the encoded file as bytes and the driver writes it, so a cluster needs no shared
filesystem. With ``write_dir`` set (a directory every worker sees, e.g. NFS or Lustre), workers
write their own files atomically and return only the record, which keeps audio off the network.
"""

from __future__ import annotations

import io
import os
import socket
import time
import wave
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ..engine.assets import atomic_write
from ..engine.metrics import SAMPLE_RATE

FORMATS = ("auto", "flac", "wav")
AUDIO_DIR = "audio"

# One warm synthesizer per worker process: made by the process-pool initializer (or on first
# use) and then reused for every item the process renders.
_SYNTH: Any = None


def resolve_format(audio_format: str) -> str:
    """``auto`` means FLAC when ``soundfile`` can be imported, else WAV."""
    audio_format = audio_format.lower()
    if audio_format not in FORMATS:
        raise ValueError(f"audio format must be one of {', '.join(FORMATS)}, got {audio_format!r}")
    if audio_format == "auto":
        try:
            import soundfile  # noqa: F401
        except (ImportError, OSError):  # OSError: the wheel is there but libsndfile is not
            return "wav"
        return "flac"
    if audio_format == "flac":
        try:
            import soundfile  # noqa: F401
        except (ImportError, OSError):
            raise ValueError("FLAC output needs soundfile: pip install soundfile "
                             "(or choose the wav format)") from None
    return audio_format


def relative_path(item_id: str, audio_format: str) -> str:
    """Where an item's audio lives inside the output directory (POSIX form, for the manifest)."""
    return f"{AUDIO_DIR}/{item_id}.{audio_format}"


def encode(audio: np.ndarray, audio_format: str, sample_rate: int = SAMPLE_RATE) -> bytes:
    """Encode float32 mono audio as 16-bit FLAC or WAV bytes."""
    pcm = (np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0) * 32767).astype("<i2")
    buffer = io.BytesIO()
    if audio_format == "flac":
        import soundfile

        soundfile.write(buffer, pcm, sample_rate, format="FLAC", subtype="PCM_16")
    elif audio_format == "wav":
        with wave.open(buffer, "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(sample_rate)
            out.writeframes(pcm.tobytes())
    else:
        raise ValueError(f"cannot encode {audio_format!r}; use flac or wav")
    return buffer.getvalue()


def worker_label() -> str:
    """``host:pid`` of this process (Dask workers are named by their address instead)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def init_process(precision: str, provider: str, threads: int | None) -> None:
    """Process-pool initializer: load and warm this process's synthesizer once."""
    global _SYNTH
    from ..engine import Synthesizer

    _SYNTH = Synthesizer(precision=precision, provider=provider, threads=threads,
                         cache=False)


def process_synthesizer() -> Any:
    if _SYNTH is None:
        raise RuntimeError("this worker process has no synthesizer; init_process() did not run")
    return _SYNTH


def render_item(synth: Any, task: dict[str, Any], audio_format: str, write_dir: str | None,
                worker: str) -> tuple[dict[str, Any], bytes | None]:
    """Render one item; return its measured record and the encoded audio (or ``None``).

    The record holds only what the worker knows (status, duration, timing, where it ran);
    the driver adds the item's own fields.
    """
    started = time.perf_counter()
    record: dict[str, Any] = {"id": task["id"], "worker": worker}
    try:
        result = synth.synthesize(task["text"], voice=task["voice"], speed=task["speed"],
                                  lang=task.get("lang"))
        audio = result.audio
        if audio.size == 0 or not np.isfinite(audio).all():
            raise RuntimeError("the model returned no usable audio for this text")
        data: bytes | None = encode(audio, audio_format)
        record.update(
            status="ok",
            duration_s=round(len(audio) / SAMPLE_RATE, 4),
            synthesis_s=round(time.perf_counter() - started, 4),
            precision=result.precision,
            provider=result.provider,
            bytes=len(data),
        )
        if task.get("words"):
            record["words"] = word_rows(result.words)
        if write_dir is not None:
            with atomic_write(Path(write_dir) / relative_path(task["id"], audio_format)) as out:
                out.write(data)
            data = None
    except Exception as error:  # one bad item must never stop its worker
        data = None
        record.update(status="failed", error=f"{type(error).__name__}: {error}",
                      synthesis_s=round(time.perf_counter() - started, 4),
                      precision=getattr(synth, "precision", None),
                      provider=getattr(synth, "provider", None))
    record["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
    return record, data


def word_rows(words: Any) -> list[list]:
    """Word timings for the manifest: ``[text, start_s, end_s]`` per word, in text order."""
    return [[word.text, round(word.start, 3), round(word.end, 3)] for word in words]


def render_batch(synth: Any, tasks: list[dict[str, Any]], audio_format: str,
                 write_dir: str | None, worker: str) -> list[tuple[dict[str, Any], bytes | None]]:
    return [render_item(synth, task, audio_format, write_dir, worker) for task in tasks]


def render_batch_in_process(tasks: list[dict[str, Any]], audio_format: str,
                            write_dir: str | None) -> list[tuple[dict[str, Any], bytes | None]]:
    """The process-pool task: a batch of items on this process's warm synthesizer."""
    return render_batch(process_synthesizer(), tasks, audio_format, write_dir, worker_label())
