"""``manifest.jsonl``: the record of a render, streamed as items finish and read back to resume.

The rule: the manifest is append-only while a run is going (one JSON line per finished item,
flushed to disk as it is written), and the *last* line for an id wins. A run killed at any
moment therefore leaves at worst one torn final line, which is ignored on the next read. When a
run ends the manifest is compacted (rewritten atomically with one line per id, in input order).

An item is *done* only if its last record says ``status: "ok"``, its content hash matches the
item as it is now, and its audio file exists with the recorded size (and, when word timings
are asked for, its record holds them); anything else (failed, changed, missing or truncated
output, or missing words) is rendered again.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from ..engine.assets import atomic_write

MANIFEST = "manifest.jsonl"
LOCK = ".render.lock"
# Record fields in the order they are written (a stable order makes manifests diff cleanly).
FIELDS = (
    "id", "status", "text", "voice", "speed", "lang", "duration_s", "synthesis_s", "worker",
    "precision", "provider", "path", "format", "bytes", "hash", "error", "attempts",
    "finished_at", "meta", "words",
)


def ordered(record: dict[str, Any]) -> dict[str, Any]:
    """The record with the known fields first, in :data:`FIELDS` order."""
    out = {key: record[key] for key in FIELDS if key in record}
    out.update({k: v for k, v in record.items() if k not in out})
    return out


def read_manifest(path: Path) -> dict[str, dict[str, Any]]:
    """The last record of each id in a manifest; unreadable lines (a torn tail) are skipped."""
    records: dict[str, dict[str, Any]] = {}
    if not path.exists():
        return records
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a killed run: its item is simply redone
            if isinstance(record, dict) and isinstance(record.get("id"), str):
                records[record["id"]] = record
    return records


def is_done(record: dict[str, Any] | None, content_hash: str, out_dir: Path,
            words: bool = False) -> bool:
    """Whether ``record`` proves its item finished with this content and its file is whole
    (and, with ``words``, that it holds the word timings)."""
    if not record or record.get("status") != "ok" or record.get("hash") != content_hash:
        return False
    if words and not isinstance(record.get("words"), list):
        return False
    relative = record.get("path")
    if not isinstance(relative, str):
        return False
    try:
        size = (out_dir / relative).stat().st_size
    except OSError:
        return False
    return size > 0 and size == record.get("bytes")


class ManifestWriter:
    """Appends records to the manifest, one durable line each."""

    def __init__(self, path: Path, fsync_every: int = 32):
        self.path = path
        self.fsync_every = fsync_every
        self._unsynced = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] = path.open("a+", encoding="utf-8")
        # A torn last line (no newline) from a killed run must not swallow our first record.
        if self._file.tell() > 0:
            self._file.seek(self._file.tell() - 1)
            if self._file.read(1) != "\n":
                self._file.write("\n")

    def write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(ordered(record), ensure_ascii=False) + "\n")
        self._file.flush()
        self._unsynced += 1
        if self._unsynced >= self.fsync_every:
            self.sync()

    def sync(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._unsynced = 0

    def close(self) -> None:
        if not self._file.closed:
            self.sync()
            self._file.close()

    def __enter__(self) -> ManifestWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def compact(path: Path, order: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Rewrite the manifest with one line per id: ``order`` first, then any other ids.

    Records of ids not in ``order`` (from earlier runs over a larger corpus) are kept, so
    rendering a subset never forgets work already done.
    """
    records = read_manifest(path)
    with atomic_write(path) as out:
        for record in _in_order(records, order):
            out.write((json.dumps(ordered(record), ensure_ascii=False) + "\n").encode("utf-8"))
    return records


def _in_order(records: dict[str, dict[str, Any]], order: Iterable[str]) -> Iterator[dict]:
    seen = set()
    for item_id in order:
        if item_id in records and item_id not in seen:
            seen.add(item_id)
            yield records[item_id]
    for item_id, record in records.items():
        if item_id not in seen:
            yield record


@contextlib.contextmanager
def directory_lock(out_dir: Path) -> Iterator[None]:
    """Refuse a second render writing into the same directory at the same time."""
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; a concurrent run is the user's problem
        yield
        return
    with (out_dir / LOCK).open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise RuntimeError(
                f"another render is writing to {out_dir} (it holds {out_dir / LOCK}); wait for "
                "it to finish or choose another --out directory"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
