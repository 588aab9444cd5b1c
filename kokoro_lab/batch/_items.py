"""What one utterance of a corpus is, and how a corpus file is read.

The rule: an item's *id* names its output file and its *content hash* says what that file must
contain. A rerun treats an item as done only when both match the manifest, so editing a line of
the corpus (or changing its voice, speed, language, precision or audio format) redoes exactly
that item.

Input formats:

* a text file: one utterance per non-blank line; ids are the 1-based line numbers, zero-padded
  (``000001``), so they stay stable when lines are edited in place;
* JSONL (``.jsonl``/``.ndjson``): one object per line with ``text`` and optional ``id``,
  ``voice``, ``speed`` and ``lang``; other keys are kept and copied to the manifest as ``meta``.

Malformed input (bad JSON, a missing ``text``, a duplicate or unsafe id, a speed that is not a
number) is refused before anything is synthesized, with the line number. Text the model cannot
speak, or an unknown voice, is not an input error: that item fails alone and the run goes on.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

JSONL_SUFFIXES = (".jsonl", ".ndjson")
KNOWN_KEYS = ("id", "text", "voice", "speed", "lang")
# Ids become file names on every platform and every shared filesystem: keep them plain.
SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class InputError(ValueError):
    """The corpus cannot be read; the message names the line and what is wrong with it."""


@dataclass(frozen=True)
class Item:
    """One utterance to render: what to say and how, and where its audio goes."""

    id: str
    text: str
    voice: str = "af_heart"
    speed: float = 1.0
    lang: str | None = None
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def content_hash(self, precision: str, audio_format: str) -> str:
        """Hash of everything that decides the audio file's content (not where it is written)."""
        key = json.dumps(
            [self.text, self.voice, round(float(self.speed), 6), self.lang, precision,
             audio_format],
            ensure_ascii=False,
        )
        return hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]

    def as_task(self) -> dict[str, Any]:
        """The plain dict sent to a worker process (cheap to pickle, no class needed there)."""
        return {"id": self.id, "text": self.text, "voice": self.voice, "speed": self.speed,
                "lang": self.lang}


def read_items(path: str | Path, *, voice: str = "af_heart", speed: float = 1.0,
               lang: str | None = None) -> list[Item]:
    """Read a corpus file: JSONL when its suffix is ``.jsonl``/``.ndjson``, else plain text.

    ``voice``/``speed``/``lang`` are the defaults for lines that do not set their own.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"corpus file {path} does not exist")
    jsonl = path.suffix.lower() in JSONL_SUFFIXES
    with path.open(encoding="utf-8") as lines:
        records = _jsonl(lines, path) if jsonl else _text_lines(lines)
        return normalize_items(records, voice=voice, speed=speed, lang=lang, origin=str(path))


def _text_lines(lines: Iterable[str]) -> Iterator[tuple[int, dict]]:
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if text:
            yield number, {"id": f"{number:06d}", "text": text}


def _jsonl(lines: Iterable[str], path: Path) -> Iterator[tuple[int, dict]]:
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise InputError(f"{path}:{number}: not valid JSON ({error.msg})") from None
        if not isinstance(record, dict):
            raise InputError(f"{path}:{number}: expected a JSON object with a 'text' key, "
                             f"got {type(record).__name__}")
        yield number, record


def normalize_items(
    items: Iterable[str | Mapping[str, Any] | Item | tuple[int, Mapping[str, Any]]],
    *,
    voice: str = "af_heart",
    speed: float = 1.0,
    lang: str | None = None,
    origin: str = "items",
) -> list[Item]:
    """Turn strings, dicts or :class:`Item` objects into checked items with unique ids.

    ``voice``/``speed``/``lang`` are the defaults for items that do not set their own. Items
    without an id get their 1-based position, zero-padded. Raises :class:`InputError` naming
    the offending item.
    """
    out: list[Item] = []
    seen: dict[str, int] = {}
    for position, raw in enumerate(items, 1):
        number = position
        if isinstance(raw, tuple) and len(raw) == 2 and isinstance(raw[0], int):
            number, raw = raw  # (line number, record) from a file reader
        where = f"{origin}:{number}"
        item = _item(raw, number, where, voice, speed, lang)
        if item.id in seen:
            raise InputError(f"{where}: id {item.id!r} is used twice (first at "
                             f"{origin}:{seen[item.id]}); ids name the output files")
        seen[item.id] = number
        out.append(item)
    return out


def _item(raw: Any, number: int, where: str, voice: str, speed: float,
          lang: str | None) -> Item:
    if isinstance(raw, Item):
        record: Mapping[str, Any] = {"id": raw.id, "text": raw.text, "voice": raw.voice,
                                     "speed": raw.speed, "lang": raw.lang, **raw.meta}
    elif isinstance(raw, str):
        record = {"text": raw}
    elif isinstance(raw, Mapping):
        record = raw
    else:
        raise InputError(f"{where}: an item must be a str, a dict or an Item, "
                         f"got {type(raw).__name__}")
    text = record.get("text")
    if not isinstance(text, str):
        raise InputError(f"{where}: 'text' must be a string, got "
                         f"{'nothing' if text is None else type(text).__name__}")
    item_id = record.get("id")
    item_id = f"{number:06d}" if item_id is None else str(item_id)
    if not SAFE_ID.match(item_id):
        raise InputError(f"{where}: id {item_id!r} cannot name a file; use 1-128 letters, "
                         "digits, '.', '_' or '-', starting with a letter or digit")
    item_voice = record.get("voice") or voice
    if not isinstance(item_voice, str):
        raise InputError(f"{where}: 'voice' must be a string such as 'af_heart' or "
                         f"'af_heart:0.7,bf_emma:0.3', got {type(item_voice).__name__}")
    item_speed = record.get("speed", speed)
    if item_speed is None:
        item_speed = speed
    if isinstance(item_speed, bool) or not isinstance(item_speed, (int, float)):
        raise InputError(f"{where}: 'speed' must be a number, got {item_speed!r}")
    item_lang = record.get("lang") or lang
    if item_lang is not None and not isinstance(item_lang, str):
        raise InputError(f"{where}: 'lang' must be an espeak language code such as 'en-us'")
    meta = {k: v for k, v in record.items() if k not in KNOWN_KEYS and k != "meta"}
    if isinstance(record.get("meta"), Mapping):
        meta = {**record["meta"], **meta}
    return Item(id=item_id, text=text, voice=item_voice, speed=float(item_speed),
                lang=item_lang, meta=meta)
