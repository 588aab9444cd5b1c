"""Chunks already made, kept warm in memory: the same chunk is never synthesized twice.

The rule: a chunk is the same when everything that decides its samples is the same: its text
and phonemes, the boundary it ends on (its pause), the voice (names and weights), the speed,
and the graph that made it (decoder mode, precision, provider and the graph files, which name
any tuning variant by its hash). Such a chunk plays from the cache, marked ``cached`` (its
synthesis time is the lookup's). The cache is bounded by the bytes of audio it holds and drops
the least recently used chunk first. Profiling and benchmarks turn it off
(``Synthesizer(cache=False)``): they measure synthesis, not memory.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .synthesizer import Made

DEFAULT_CACHE_BYTES = 64 * 2**20  # about 11 minutes of 24 kHz float32 audio


class ChunkCache:
    """A thread-safe LRU of made chunks, bounded by ``max_bytes`` of audio."""

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES):
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self._items: OrderedDict[Hashable, Made] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Made | None:
        with self._lock:
            made = self._items.get(key)
            if made is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return made

    def put(self, key: Hashable, made: Made) -> None:
        size = made.finished_audio.audio.nbytes
        if size > self.max_bytes:
            return
        made.finished_audio.audio.setflags(write=False)  # shared by every replay
        with self._lock:
            if key in self._items:
                self.bytes -= self._items.pop(key).finished_audio.audio.nbytes
            self._items[key] = made
            self.bytes += size
            while self.bytes > self.max_bytes:
                _, dropped = self._items.popitem(last=False)
                self.bytes -= dropped.finished_audio.audio.nbytes

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.bytes = 0

    def __len__(self) -> int:
        return len(self._items)


__all__ = ["DEFAULT_CACHE_BYTES", "ChunkCache"]
