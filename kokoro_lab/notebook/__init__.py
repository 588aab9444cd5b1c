"""The notebook layer: ``%%speak``, the streaming player widget and the live latency chart.

Load it in a notebook with ``%load_ext kokoro_lab``. The pieces are reusable on their own:
:class:`Player` plays any stream of float32 chunks gaplessly in the browser,
:class:`LatencyChart` plots chunks as they arrive, and :class:`Speech` wires an engine stream to
both on a worker thread.
"""

from .chart import LatencyChart
from .kernel import current_magics
from .magic import SpeakMagics, interpolate
from .player import FrontendMissing, Player
from .result import SpeakResult
from .speech import Speech

__all__ = [
    "FrontendMissing", "LatencyChart", "Player", "SpeakMagics", "SpeakResult", "Speech",
    "current_magics", "interpolate",
]
