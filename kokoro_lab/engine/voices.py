"""Voices by name, and blends of voices as first-class, reusable voices.

A voice is a table of style vectors (510 rows × 1 × 256): row ``n - 1`` is the style for an
utterance of ``n`` phoneme tokens. A blend is the weighted mean of its parts' tables, with the
weights normalised to sum to one, so blending never changes the vectors' scale.

Spellings accepted wherever a voice is asked for: ``"af_heart"``, a blend string
``"af_heart:0.7,bf_emma:0.3"`` (a part without a weight counts 1), or a :class:`Voice`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# The first letter of a voice name is its language, the second its gender.
LANGUAGES = {
    "a": ("en-us", "American English"),
    "b": ("en-gb", "British English"),
    "e": ("es", "Spanish"),
    "f": ("fr-fr", "French"),
    "h": ("hi", "Hindi"),
    "i": ("it", "Italian"),
    "j": ("ja", "Japanese"),
    "p": ("pt-br", "Brazilian Portuguese"),
    "z": ("cmn", "Mandarin Chinese"),
}
GENDERS = {"f": "female", "m": "male"}

_PART = re.compile(r"^\s*([A-Za-z0-9_]+)\s*(?::\s*([-+0-9.eE]+)\s*)?$")


class VoiceError(ValueError):
    """A voice name or blend could not be resolved."""


@dataclass(frozen=True)
class Voice:
    """A named voice or blend: ``parts`` are (voice name, normalised weight) pairs."""

    parts: tuple[tuple[str, float], ...]
    name: str = ""

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        if len(self.parts) == 1:
            return self.parts[0][0]
        return ",".join(f"{v}:{w:g}" for v, w in self.parts)

    @property
    def lang(self) -> str:
        """The language of the heaviest part, which decides phonemisation."""
        main = max(self.parts, key=lambda part: part[1])[0]
        return language_of(main)

    def __str__(self) -> str:
        return self.label


def language_of(voice_name: str) -> str:
    code = LANGUAGES.get(voice_name[:1])
    return code[0] if code else "en-us"


def describe_voice(voice_name: str) -> dict:
    """Language, gender and display name of a stock voice, from its name."""
    lang = LANGUAGES.get(voice_name[:1], ("?", "unknown"))
    return {
        "name": voice_name,
        "lang": lang[0],
        "language": lang[1],
        "gender": GENDERS.get(voice_name[1:2], "unknown"),
        "display": voice_name.split("_", 1)[-1].capitalize(),
    }


def voice(*names: str, weights: tuple[float, ...] | list[float] | None = None,
          name: str = "") -> Voice:
    """A voice or blend, e.g. ``voice("af_heart", "bf_emma", weights=(0.7, 0.3))``.

    Names are checked against the stock voices when the voice is used, not here, so a blend
    can be defined before the voices file is built.
    """
    if not names:
        raise VoiceError("voice() needs at least one voice name")
    if len(names) == 1 and weights is None and any(mark in names[0] for mark in ":,"):
        return Voice(parse(names[0]).parts, name=name)  # a blend spelled as one string
    if weights is None:
        weights = [1.0] * len(names)
    if len(weights) != len(names):
        raise VoiceError(f"{len(names)} voices but {len(weights)} weights")
    return Voice(_normalise(list(zip(names, map(float, weights), strict=True))), name=name)


def parse(spec: str | Voice) -> Voice:
    """Parse ``"af_heart"`` or ``"af_heart:0.7,bf_emma:0.3"`` into a :class:`Voice`."""
    if isinstance(spec, Voice):
        return spec
    if not isinstance(spec, str) or not spec.strip():
        raise VoiceError("a voice must be a non-empty name such as 'af_heart'")
    parts = []
    for piece in spec.split(","):
        match = _PART.match(piece)
        if not match:
            raise VoiceError(
                f"cannot read {piece.strip()!r} in voice {spec!r}; write a name or a blend "
                "such as 'af_heart:0.7,bf_emma:0.3'"
            )
        parts.append((match.group(1), float(match.group(2)) if match.group(2) else 1.0))
    return Voice(_normalise(parts))


def _normalise(parts: list[tuple[str, float]]) -> tuple[tuple[str, float], ...]:
    if any(not np.isfinite(w) or w < 0 for _, w in parts):
        raise VoiceError(f"blend weights must be finite and not negative, got {parts}")
    total = sum(w for _, w in parts)
    if total <= 0:
        raise VoiceError(f"blend weights must sum to a positive number, got {parts}")
    merged: dict[str, float] = {}
    for name, weight in parts:
        merged[name] = merged.get(name, 0.0) + weight / total
    return tuple((n, w) for n, w in merged.items() if w > 0)


class VoiceBank:
    """The stock voices of one voices file, and the style tables of voices and blends."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        with np.load(self.path) as data:
            self._tables = {name: data[name].astype(np.float32) for name in data.files}
        self._blends: dict[tuple[tuple[str, float], ...], np.ndarray] = {}

    @property
    def names(self) -> list[str]:
        return sorted(self._tables)

    def __contains__(self, name: str) -> bool:
        return name in self._tables

    def table(self, spec: str | Voice) -> np.ndarray:
        """The style table (rows × 1 × 256) of a voice or blend."""
        resolved = parse(spec)
        for name, _ in resolved.parts:
            if name not in self._tables:
                raise VoiceError(f"unknown voice {name!r}; {self._suggest(name)}")
        if resolved.parts not in self._blends:
            self._blends[resolved.parts] = sum(
                weight * self._tables[name] for name, weight in resolved.parts
            ).astype(np.float32)
        return self._blends[resolved.parts]

    def style(self, spec: str | Voice, token_count: int) -> np.ndarray:
        """The (1, 256) style for an utterance of ``token_count`` tokens."""
        table = self.table(spec)
        return table[min(max(token_count, 1), len(table)) - 1]

    def _suggest(self, name: str) -> str:
        """Close matches, and where to read every name (a sample of six helps nobody)."""
        import difflib

        close = difflib.get_close_matches(name, self.names, n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        return (f"{hint}All {len(self._tables)} names: `kokoro-lab voices` in a shell, or "
                "kokoro_lab.Synthesizer().voices (a name reads language, gender, name: "
                "af_heart is American English, female, Heart)")
