"""Kernel-wide state the voice lab shares: one warm synthesizer, and one voice at a time.

* Every Studio, comparison and voice map uses the kernel's synthesizer: ``%%speak``'s when the
  extension is loaded, else one created here once (int8 on CPU).
* One utterance plays at a time in a kernel: a new Studio utterance stops the one playing,
  from any Studio, and whatever ``%%speak`` is playing.
"""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING

from ...engine import Synthesizer
from ..kernel import current_magics

if TYPE_CHECKING:
    from .utterance import Utterance

_SHARED: Synthesizer | None = None
_SHARED_LOCK = threading.Lock()
_PLAYING: weakref.ref | None = None


def shared_synthesizer() -> Synthesizer:
    """The kernel's warm synthesizer: ``%%speak``'s when the extension is loaded, else one
    created here once (int8 on CPU) and reused by every Studio, comparison and voice map."""
    global _SHARED
    magics = _speak_magics()
    if magics is not None:
        return magics.synth
    with _SHARED_LOCK:
        if _SHARED is None:
            _SHARED = Synthesizer()
        return _SHARED


def _speak_magics():
    try:
        return current_magics()
    except Exception:  # no IPython at all (plain Python): there is no %%speak to share with
        return None


def stop_playing(reason: str) -> None:
    """Stop the utterance playing in this kernel (from any Studio) and any ``%%speak``."""
    current = _PLAYING() if _PLAYING is not None else None
    if current is not None and current.running:
        current.stop(reason)
    magics = _speak_magics()
    if magics is not None:
        magics.stop(reason)


def now_playing(utterance: Utterance) -> None:
    """Record ``utterance`` as the one the next :func:`stop_playing` stops."""
    global _PLAYING
    _PLAYING = weakref.ref(utterance)
