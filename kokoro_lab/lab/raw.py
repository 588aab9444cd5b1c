"""Raw session timings against input length, with and without ONNX Runtime I/O binding.

The streaming runner measures what a listener gets; this measures the model call alone, so
the fixed cost per call and the cost per phoneme can be read off per provider and precision.

With ``io_binding=True`` the inputs are placed on the provider's device once (as a pipeline
that keeps its style vectors there would) and the output is bound on the device, so the timed
call is the model plus one copy of the audio back to the host; without it ORT copies inputs
in and the output out on every call. On the CPU provider both paths are the same memory and
the difference is only ORT's bookkeeping.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from ..engine import assets, sessions
from ..engine.chunking import MAX_PHONEMES
from ..engine.voices import VoiceBank, parse

DEVICE_OF = {"CUDAExecutionProvider": "cuda", "TensorrtExecutionProvider": "cuda",
             "ROCMExecutionProvider": "cuda", "DmlExecutionProvider": "dml"}
DEFAULT_LENGTHS = (16, 64, 128, 256, MAX_PHONEMES)


@dataclass
class RawTiming:
    provider: str
    precision: str
    tokens: int
    io_binding: bool
    median_ms: float
    min_ms: float
    audio_ms: float

    @property
    def rtf(self) -> float:
        return self.median_ms / self.audio_ms if self.audio_ms else float("inf")


SOURCE_TEXT = ("The quick brown fox jumps over the lazy dog, and then it runs back into the "
               "forest to sleep until the morning comes again.")


def _token_pattern(voice: str) -> list[int]:
    from kokoro_onnx.tokenizer import Tokenizer

    tokenizer = Tokenizer()
    return tokenizer.tokenize(tokenizer.phonemize(SOURCE_TEXT, parse(voice).lang))


def _inputs(tokens: int, voice: str, bank: VoiceBank, pattern: list[int]) -> dict:
    # Real speech tokens, repeated to the length asked for, so the audio length is realistic.
    ids = (pattern * (tokens // len(pattern) + 1))[:tokens]
    return {"tokens": np.array([[0, *ids, 0]], dtype=np.int64),
            "style": bank.style(parse(voice), tokens),
            "speed": np.array([1.0], dtype=np.float32)}


def _runner(session: ort.InferenceSession, inputs: dict, io_binding: bool, provider: str):
    if not io_binding:
        return lambda: session.run(None, inputs)[0]
    device = DEVICE_OF.get(sessions.provider_name(provider), "cpu")
    binding = session.io_binding()
    for name, value in inputs.items():
        binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(value, device, 0))
    output = session.get_outputs()[0].name

    def call():
        binding.bind_output(output, device)  # re-bound: the output's shape is not fixed
        session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]

    return call


def raw_timings(precision: str = "int8", provider: str = "cpu",
                lengths: tuple[int, ...] = DEFAULT_LENGTHS, repeats: int = 3,
                io_binding: tuple[bool, ...] = (False, True), voice: str = "af_heart",
                threads: int | None = None) -> list[RawTiming]:
    """Median model-call time per token count (after one warm-up call per length)."""
    if any(not 1 <= n <= MAX_PHONEMES for n in lengths):
        raise ValueError(f"lengths must be between 1 and {MAX_PHONEMES} tokens, got {lengths}")
    loaded = sessions.SESSIONS.get(precision, provider, threads=threads)
    bank = VoiceBank(assets.voices_path())
    pattern = _token_pattern(voice)
    out = []
    for tokens in lengths:
        inputs = _inputs(tokens, voice, bank, pattern)
        for bound in io_binding:
            call = _runner(loaded.session, inputs, bound, provider)
            audio = call()  # warm-up: allocations and (CUDA) algorithm choice for this shape
            times = []
            for _ in range(repeats):
                started = time.perf_counter()
                call()
                times.append((time.perf_counter() - started) * 1000)
            out.append(RawTiming(provider, precision, tokens, bound, statistics.median(times),
                                 min(times), audio.size / 24_000 * 1000))
    return out


__all__ = ["RawTiming", "raw_timings"]
