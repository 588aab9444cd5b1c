"""What one kernel's notebook layer shares: the loaded magics, found by the widgets beside them.

The Studio, the voice explorer and ``%speak_profile`` use ``%%speak``'s warm synthesizer and
stop its speech when they speak; they find it here rather than by importing the magic module,
so the notebook layer has no import cycle. :mod:`.extension` registers and unregisters.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .magic import SpeakMagics

_LOADED: dict[int, list[Any]] = {}  # id(shell) -> the magics instances the extension made


def register(shell, magics: list) -> None:
    """Remember the magics the extension made for ``shell`` (``%%speak``'s first)."""
    _LOADED[id(shell)] = list(magics)


def unregister(shell) -> list:
    """Forget ``shell``'s magics and return them (for unloading)."""
    return _LOADED.pop(id(shell), [])


def is_loaded(shell) -> bool:
    return id(shell) in _LOADED


def loaded(shell) -> list:
    """The magics instances the extension registered in ``shell`` (empty when not loaded)."""
    return list(_LOADED.get(id(shell), []))


def current_magics(shell=None) -> SpeakMagics | None:
    """The loaded ``%%speak`` magics of ``shell`` (the running IPython by default), or None."""
    if shell is None:
        from IPython import get_ipython

        shell = get_ipython()
    loaded = _LOADED.get(id(shell))
    return loaded[0] if loaded else None


__all__ = ["current_magics", "is_loaded", "loaded", "register", "unregister"]
