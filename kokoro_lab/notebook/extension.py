"""``%load_ext kokoro_lab`` / ``%unload_ext kokoro_lab``: register the notebook layer's magics.

Loading registers ``%%speak`` (:mod:`.magic`), ``%speak_profile`` (:mod:`.profile_magic`) and
``%speak_studio`` (:mod:`.studio`), and starts warming the model in the background. Unloading
stops what is still being synthesized (audio already in the page plays out), frees the ONNX
Runtime sessions and removes the magics.
"""

from __future__ import annotations

from ..engine.sessions import SESSIONS
from . import kernel
from .magic import SpeakMagics
from .profile_magic import ProfileMagics
from .studio import StudioMagics


def load_ipython_extension(ipython) -> None:
    """Register the magics and start warming the model."""
    if kernel.is_loaded(ipython):
        return
    speak = SpeakMagics(shell=ipython)
    loaded = [speak, ProfileMagics(shell=ipython), StudioMagics(shell=ipython)]
    for magics in loaded:
        ipython.register_magics(magics)
    kernel.register(ipython, loaded)
    if speak.warm_on_load:
        speak.warm()


def unload_ipython_extension(ipython) -> None:
    """Stop streams, free the sessions, and remove the magics."""
    manager = ipython.magics_manager
    for magics in kernel.unregister(ipython):
        closer = getattr(magics, "close", None)
        if callable(closer):
            closer()
        for kind, table in magics.magics.items():
            for name in table:
                manager.magics[kind].pop(name, None)
        manager.registry.pop(type(magics).__name__, None)
        if magics in ipython.configurables:
            ipython.configurables.remove(magics)
    SESSIONS.clear()


__all__ = ["load_ipython_extension", "unload_ipython_extension"]
