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

def __getattr__(name: str):
    """Front doors that pull in heavier dependencies (ipywidgets, plotly, sqlite…) are imported
    on first use, so ``import kokoro_lab`` stays cheap for the CLI and batch workers."""
    if name == "Studio":
        from .notebook.studio import Studio

        return Studio
    if name in ("compare_voices", "voice_map"):
        from .notebook import explorer

        return getattr(explorer, name)
    if name in ("profile", "runs", "audit", "profile_ops"):
        from . import profiling

        return getattr(profiling, name)
    if name == "doctor":
        from .diagnostics import doctor

        return doctor
    raise AttributeError(f"module 'kokoro_lab' has no attribute {name!r}")


def load_ipython_extension(ipython) -> None:
    """``%load_ext kokoro_lab``: register the magics."""
    from .notebook.extension import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython) -> None:
    """``%unload_ext kokoro_lab``: stop streams and free the sessions."""
    from .notebook.extension import unload_ipython_extension as unload

    unload(ipython)


__all__ = [
    "SAMPLE_RATE", "Chunk", "ProviderUnavailable", "Result", "Stream", "Studio", "Synthesizer",
    "TextError", "Voice", "VoiceError", "assets", "audit", "available_providers",
    "compare_voices", "doctor", "profile", "profile_ops", "runs", "voice", "voice_map",
]
