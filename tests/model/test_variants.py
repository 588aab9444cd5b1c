"""The generator variants on the real graph: each rewrite finds every node it is meant for in
the released vocoder, and a variant that is not bit-identical still renders the very speech the
released graph renders (PESQ-WB over ``kokoro-lab tune``'s bar), with no ``Sin`` left in the
Snakes of ``matmul-fused-poly``, no ``STFT`` in ``matmul-fused-poly-stft`` and every resblock's
norm, Snake and quantizer in one compiled kernel in ``matmul-fused-kernel``."""

from __future__ import annotations

import collections

import numpy as np
import onnx
import pytest

from kokoro_lab.engine import Synthesizer, Tuning, assets
from kokoro_lab.engine.graphs.variants import VARIANTS_VERSION
from kokoro_lab.engine.sessions import stage_path
from kokoro_lab.profiling.tune import PESQ_MEAN_BAR
from kokoro_lab.quality import pesq_wb

TEXT = "A kettle whistled somewhere down the hall."  # not one of tune's held-out texts


def op_counts(path) -> collections.Counter:
    return collections.Counter(n.op_type for n in onnx.load(str(path)).graph.node)


@pytest.fixture(scope="module")
def released_audio() -> np.ndarray:
    return Synthesizer(tuning="off", cache=False, warm_up=False).render(TEXT).audio


def test_the_poly_variant_rewrites_every_snake_of_the_real_vocoder():
    model = assets.model_path("int8")
    fused = op_counts(stage_path(model, "generator", "matmul-fused"))
    poly = op_counts(stage_path(model, "generator", "matmul-fused-poly"))
    snakes = fused["InstanceNormalization"]
    assert snakes >= 40 and poly["InstanceNormalization"] == snakes
    # Each Snake's Sin became a polynomial after range reduction (no Round: it runs on one
    # thread); the Sins left are the source's and the iSTFT's phase.
    assert poly.get("Round", 0) == fused.get("Round", 0)
    assert poly["Sub"] - fused["Sub"] == 2 * snakes
    assert fused["Sin"] - poly["Sin"] == snakes and poly["Sin"] < 5
    assert poly["ConvInteger"] == fused["ConvInteger"] == 0


def test_the_stft_variant_replaces_the_real_sources_stft_and_its_zero_test():
    model = assets.model_path("int8")
    poly = op_counts(stage_path(model, "generator", "matmul-fused-poly"))
    stft = op_counts(stage_path(model, "generator", "matmul-fused-poly-stft"))
    assert poly["STFT"] == 1 and stft.get("STFT", 0) == 0 and stft["Conv"] == poly["Conv"] + 1
    assert stft.get("GreaterOrEqual", 0) == poly.get("GreaterOrEqual", 0) + 1


def test_the_kernel_variant_fuses_every_resblock_chain_of_the_real_vocoder():
    model = assets.model_path("int8")
    stft = op_counts(stage_path(model, "generator", "matmul-fused-poly-stft"))
    kernel = op_counts(stage_path(model, "generator", "matmul-fused-kernel"))
    snakes = stft["InstanceNormalization"]
    assert kernel["SnakeQuantize"] == snakes and kernel.get("InstanceNormalization", 0) == 0
    # Each chain's quantizer, time-major Transpose and Pad went into the kernel; the GEMMs stay.
    assert stft["DynamicQuantizeLinear"] - kernel.get("DynamicQuantizeLinear", 0) == snakes
    assert stft["Transpose"] - kernel["Transpose"] == snakes
    assert kernel["MatMulIntegerToFloat"] == stft["MatMulIntegerToFloat"]


@pytest.mark.parametrize("variant", ["matmul-fused", "matmul-fused-poly",
                                     "matmul-fused-poly-stft", "matmul-fused-kernel"])
def test_a_judged_variant_renders_the_released_speech(variant, released_audio):
    synth = Synthesizer(tuning=Tuning(variant=variant, spinning=False), cache=False,
                        warm_up=False)
    audio = synth.render(TEXT).audio
    assert synth.decoder_for().last.graph.endswith(f"generator-{variant}-v{VARIANTS_VERSION}.onnx")
    assert abs(audio.size - released_audio.size) <= 0.01 * released_audio.size
    assert not np.array_equal(audio, released_audio)  # not bit-identical: judged by ear
    assert pesq_wb(released_audio, audio) >= PESQ_MEAN_BAR
