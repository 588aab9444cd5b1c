"""The engine: assets, sessions, text chunking, decoding, scheduling and metrics. It knows nothing
of Jupyter; the notebook layer, the CLI and the batch runner are front doors onto it."""

from .chunking import TextError
from .decoding import DECODERS, DecoderError
from .metrics import SAMPLE_RATE, Chunk, Result
from .request import SpeechRequest, check_speed, check_text
from .sessions import ProviderUnavailable, available_providers
from .stream import Stream, StreamCancelled
from .synthesizer import Synthesizer
from .tuning import Tuning
from .voices import Voice, VoiceError, voice

__all__ = [
    "DECODERS", "SAMPLE_RATE", "Chunk", "DecoderError", "ProviderUnavailable", "Result",
    "SpeechRequest", "Stream", "StreamCancelled", "Synthesizer", "TextError", "Tuning", "Voice",
    "VoiceError", "available_providers", "check_speed", "check_text", "voice",
]
