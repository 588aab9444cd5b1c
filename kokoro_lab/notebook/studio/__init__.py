"""The voice studio: one panel to pick a voice, blend two, set speed, provider and precision, speak.

The rules this package implements (each module states its part):

* **Controls apply to the next utterance**; voice and speed changes during playback apply from
  the next chunk on, every word said once (:mod:`.utterance`).
* **Bad values never raise into the notebook**: each is a specific message in the panel
  (:mod:`.panel`).
* **Only what this machine can run is offered**, with a note saying why the rest is missing
  (:mod:`.choices`).
* **One warm synthesizer and one voice at a time per kernel** (:mod:`.shared`).

``%speak_studio`` (:mod:`.magic`) opens the same panel from one line.
"""

from .choices import (
    availability_note,
    blend_label,
    precision_choices,
    provider_choices,
    stock_voices,
    voice_label,
    voice_options,
)
from .magic import StudioMagics
from .panel import DEFAULT_TEXT, NO_VOICE, Studio
from .shared import shared_synthesizer
from .utterance import LEAD_S, Settings, StudioResult, Utterance

__all__ = [
    "DEFAULT_TEXT", "LEAD_S", "NO_VOICE", "Settings", "Studio", "StudioMagics", "StudioResult",
    "Utterance", "availability_note", "blend_label", "precision_choices", "provider_choices",
    "shared_synthesizer", "stock_voices", "voice_label", "voice_options",
]
