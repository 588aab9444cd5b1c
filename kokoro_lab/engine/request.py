"""A speech request, checked once: the one object every front door hands the engine.

The rule: text, voice, speed, language, precision, provider and decoder are validated in one
place, before any work starts, and the checked :class:`SpeechRequest` is what
:meth:`~kokoro_lab.engine.synthesizer.Synthesizer.stream` runs. The magic, the Studio, the CLI
and the batch renderer build one with :meth:`Synthesizer.request` (bad input raises there, in
the caller's thread, with a specific message) and may start it later, on another thread, without
checking anything again. The text is normalised once (:func:`~.chunking.clean_text`) and the
request carries the normalised text from then on.
"""

from __future__ import annotations

from dataclasses import dataclass

from .chunking import TextError, clean_text
from .voices import Voice

MIN_SPEED, MAX_SPEED = 0.5, 2.0
PREVIEW_CHARS = 40


def preview(text: str, limit: int = PREVIEW_CHARS) -> str:
    """``text`` on one line, cut to ``limit`` characters with an ellipsis (for labels)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def check_speed(speed: float) -> float:
    """``speed`` as a float, or ValueError saying the allowed range."""
    try:
        value = float(speed)
    except (TypeError, ValueError):
        raise ValueError(f"speed must be a number between {MIN_SPEED} and {MAX_SPEED}, "
                         f"got {speed!r}") from None
    if not MIN_SPEED <= value <= MAX_SPEED:
        raise ValueError(f"speed must be between {MIN_SPEED} and {MAX_SPEED}, got {value:g}")
    return value


def check_text(text: str) -> str:
    """The normalised text if it has something to speak, else :class:`TextError` saying what
    is wrong (not a string, empty, or no letters or digits)."""
    if not isinstance(text, str):
        raise TextError(f"text must be a str, got {type(text).__name__}")
    cleaned = clean_text(text)
    if not cleaned.strip():
        raise TextError("the text is empty: nothing to speak")
    if not any(ch.isalnum() for ch in cleaned):
        raise TextError(f"nothing speakable in {preview(text)!r}: it has no letters or digits")
    return cleaned


@dataclass(frozen=True)
class SpeechRequest:
    """Checked input for one utterance (make it with :meth:`Synthesizer.request`).

    ``text`` is already normalised; ``voice`` resolved against the voice bank; ``speed`` in
    range; ``provider`` available here (a short name); ``precision`` and ``decoder`` known.
    ``adaptive=False`` plans fixed chunks (see :meth:`Synthesizer.stream`).
    """

    text: str
    voice: Voice
    speed: float
    lang: str
    precision: str
    provider: str
    decoder: str
    adaptive: bool = True

    @property
    def label(self) -> str:
        """The text on one line, shortened, for players and logs."""
        return preview(self.text, 60)


__all__ = ["MAX_SPEED", "MIN_SPEED", "SpeechRequest", "check_speed", "check_text", "preview"]
