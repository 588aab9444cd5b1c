"""kokoro_lab: Kokoro-82M as a live, measurable streaming instrument in Jupyter.

Load the notebook layer with ``%load_ext kokoro_lab``; use the engine directly with
:class:`Synthesizer`.
"""

from . import assets
from .engine import (
    SAMPLE_RATE,
    Chunk,
    ProviderUnavailable,
    Result,
    Stream,
    Synthesizer,
    TextError,
    Voice,
    VoiceError,
    available_providers,
    voice,
)

__version__ = "0.1.0"


def load_ipython_extension(ipython) -> None:
    """``%load_ext kokoro_lab``: register the magics."""
    from .notebook.magic import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython) -> None:
    """``%unload_ext kokoro_lab``: stop streams and free the sessions."""
    from .notebook.magic import unload_ipython_extension as unload

    unload(ipython)


__all__ = [
    "SAMPLE_RATE", "Chunk", "ProviderUnavailable", "Result", "Stream", "Synthesizer",
    "TextError", "Voice", "VoiceError", "assets", "available_providers", "voice",
]
