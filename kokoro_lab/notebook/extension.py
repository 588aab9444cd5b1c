"""``%load_ext kokoro_lab`` / ``%unload_ext kokoro_lab``: register the notebook layer's magics.

Loading registers ``%%speak`` (:mod:`.magic`), ``%speak_profile`` (:mod:`.profile_magic`) and
``%speak_studio`` (:mod:`.studio`), and starts warming the model in the background. Unloading
stops what is still being synthesized (audio already in the page plays out), frees the ONNX
Runtime sessions and removes the magics.
"""

from __future__ import annotations

from ..engine.sessions import SESSIONS
from ..profiling.judges import release_judges
from . import kernel
from .magic import SpeakMagics
from .profile_magic import ProfileMagics
from .studio import StudioMagics

# Every magics class the extension registers, %%speak's first (the docs list them from here).
MAGICS = (SpeakMagics, ProfileMagics, StudioMagics)


def give_empty_cells_a_body(lines: list[str]) -> list[str]:
    """An input transformer: a ``%%speak`` cell with nothing below it gets one blank line.

    IPython refuses a cell magic whose body is empty with a generic message ("… is a cell magic,
    but the cell body is empty") before the magic runs; with a blank body the magic says what
    to do itself.
    """
    if lines and lines[0].lstrip().startswith("%%speak") and not "".join(lines[1:]).strip():
        return [lines[0].rstrip("\n") + "\n", " \n"]
    return lines


def load_ipython_extension(ipython) -> None:
    """Register the magics and start warming the model."""
    if kernel.is_loaded(ipython):
        return
    transformers = ipython.input_transformers_cleanup
    if give_empty_cells_a_body not in transformers:
        transformers.append(give_empty_cells_a_body)
    loaded = [cls(shell=ipython) for cls in MAGICS]
    speak = loaded[0]
    for magics in loaded:
        ipython.register_magics(magics)
    kernel.register(ipython, loaded)
    if speak.warm_on_load:
        speak.warm()


def unload_ipython_extension(ipython) -> None:
    """Stop streams, free the sessions, and remove the magics."""
    if give_empty_cells_a_body in ipython.input_transformers_cleanup:
        ipython.input_transformers_cleanup.remove(give_empty_cells_a_body)
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
    # The sessions, the judges' models and what the C allocator holds free go back to the
    # system: an unloaded kernel is about as big as before the extension was loaded.
    release_judges()
    SESSIONS.clear()


__all__ = ["MAGICS", "load_ipython_extension", "unload_ipython_extension"]
