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

# Front doors that pull in heavier dependencies (ipywidgets, plotly, sqlite…) are imported on
# first use, so `import kokoro_lab` stays cheap for the CLI and batch workers.
_LAZY = {
    "Studio": "kokoro_lab.notebook.studio",
    "compare_voices": "kokoro_lab.notebook.explorer",
    "voice_map": "kokoro_lab.notebook.explorer",
    "profile": "kokoro_lab.profiling",
    "runs": "kokoro_lab.profiling",
    "audit": "kokoro_lab.profiling",
    "doctor": "kokoro_lab.doctor",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'kokoro_lab' has no attribute {name!r}")


def load_ipython_extension(ipython) -> None:
    """``%load_ext kokoro_lab``: register the magics."""
    from .notebook.magic import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython) -> None:
    """``%unload_ext kokoro_lab``: stop streams and free the sessions."""
    from .notebook.magic import unload_ipython_extension as unload

    unload(ipython)


__all__ = [
    "SAMPLE_RATE", "Chunk", "ProviderUnavailable", "Result", "Stream", "Studio", "Synthesizer",
    "TextError", "Voice", "VoiceError", "assets", "audit", "available_providers",
    "compare_voices", "doctor", "profile", "runs", "voice", "voice_map",
]
