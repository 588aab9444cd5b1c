"""Cache files: hashed once per version of a file, written atomically.

The rules: a cached file is written to a temporary name beside its target and renamed into
place, so an interrupted build never leaves a half file under the final name; a file's sha256
is remembered while its size, mtime and inode stay the same, so checking a 90–330 MB model on
every session lookup costs nothing after the first time.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class AssetError(RuntimeError):
    """An asset could not be found or built; the message says what was tried and the fix."""


_HASHES: dict[tuple[str, int, int, int], str] = {}


def display_path(path: str | os.PathLike[str]) -> str:
    """A path as reports and results files show it: the user's home written as ``~``.

    Reports get pasted into issues and results get committed; neither should carry one
    machine's home directory (nor its user name).
    """
    text = str(path)
    home = str(Path.home())
    if home not in ("", "/") and (text == home or text.startswith(home + os.sep)):
        return "~" + text[len(home):]
    return text


def file_sha256(path: Path) -> str:
    """sha256 of a file, remembered while its size, mtime and inode stay the same.

    Every session lookup verifies its model file; re-reading 90–330 MB each time would add
    up to a second to every ``%%speak``. Any rewrite, truncation or replacement of the file
    changes its stat, so a damaged file is still caught.
    """
    stat = Path(path).stat()
    key = (str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ino)
    if key not in _HASHES:
        _HASHES[key] = _hash_file(path)
    return _HASHES[key]


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as src:
        for block in iter(lambda: src.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def npm_integrity(path: Path) -> str:
    digest = hashlib.sha512(Path(path).read_bytes()).digest()
    return "sha512-" + base64.b64encode(digest).decode()


@contextmanager
def atomic_write(target: Path) -> Iterator[io.BufferedWriter]:
    """Write to a temporary file beside ``target`` and rename it into place on success."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        with os.fdopen(handle, "wb") as out:
            yield out
        os.chmod(temp, 0o644)  # mkstemp makes 0600; cached assets are meant to be shared
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


__all__ = ["AssetError", "atomic_write", "file_sha256", "npm_integrity"]
