"""The generator variants on the real graph: each rewrite finds every node it is meant for in
the released vocoder, and a variant that is not bit-identical still renders the very speech the
released graph renders (PESQ-WB over ``kokoro-lab tune``'s bar), with no ``Sin`` left in the
Snakes of ``matmul-fused-poly``, no ``STFT`` in ``matmul-fused-poly-stft`` and every resblock's
norm, Snake and quantizer in one compiled kernel in ``matmul-fused-kernel``."""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np
import onnx
import pytest

from kokoro_lab.engine import Synthesizer, Tuning, assets, split
from kokoro_lab.engine.graphs import variants
from kokoro_lab.engine.graphs.variants import VARIANTS_VERSION, gemm_tag
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
    time_major = kernel["SnakeQuantizeTimeMajor"]
    assert kernel["SnakeQuantize"] + time_major == snakes
    assert kernel.get("InstanceNormalization", 0) == 0
    # Each resblock's second convolution reads its first's GEMM output without a Transpose.
    assert time_major == snakes // 2
    # Each chain's quantizer, time-major Transpose and Pad went into the kernel; the GEMMs stay.
    assert stft["DynamicQuantizeLinear"] - kernel.get("DynamicQuantizeLinear", 0) == snakes
    assert stft["Transpose"] - kernel["Transpose"] == snakes + time_major
    assert kernel["MatMulIntegerToFloat"] == stft["MatMulIntegerToFloat"]


def test_the_front_keeps_only_the_convolutions_whose_weights_could_saturate_a_16_bit_pair():
    front = onnx.load(str(split.split_model(assets.model_path("int8")).front))
    rewritten = variants.conv_integer_to_matmul(front, exact=True, pairs_in_16_bits=True)
    inits = {t.name: t for t in front.graph.initializer}

    def fits(conv: onnx.NodeProto) -> bool:
        weight = onnx.numpy_helper.to_array(inits[conv.input[1]]).astype(np.int32) - \
            int(onnx.numpy_helper.to_array(inits[conv.input[3]]).ravel()[0])
        m, c, k = weight.shape
        return variants.pairs_fit_16_bits(weight.transpose(2, 1, 0).reshape(k * c, m))

    convs = [n for n in front.graph.node if n.op_type == "ConvInteger"]
    kept = {n.name for n in rewritten.graph.node if n.op_type == "ConvInteger"}
    assert kept == {n.name for n in convs if not fits(n)}
    assert 0 < len(kept) < len(convs) // 4  # the few whose weights need the widening kernel


def test_the_exact_variant_renders_the_released_audio_bit_for_bit(released_audio):
    # Front and generator as GEMMs, on this CPU's rule for which convolutions are exact there.
    synth = Synthesizer(tuning=Tuning(variant="matmul-exact", spinning=False), cache=False,
                        warm_up=False)
    audio = synth.render(TEXT).audio
    front, generator = (Path(s.graph).name for s in synth.decoder_for().sessions)
    assert front.startswith("front-matmul-exact") and generator.startswith("generator-matmul-exact")
    np.testing.assert_array_equal(audio, released_audio)


@pytest.mark.parametrize("variant", ["matmul-fused", "matmul-fused-poly",
                                     "matmul-fused-poly-stft", "matmul-fused-kernel"])
def test_a_judged_variant_renders_the_released_speech(variant, released_audio):
    synth = Synthesizer(tuning=Tuning(variant=variant, spinning=False), cache=False,
                        warm_up=False)
    audio = synth.render(TEXT).audio
    assert synth.decoder_for().last.graph.endswith(
        f"generator-{variant}{gemm_tag()}-v{VARIANTS_VERSION}.onnx")
    assert abs(audio.size - released_audio.size) <= 0.01 * released_audio.size
    assert not np.array_equal(audio, released_audio)  # not bit-identical: judged by ear
    assert pesq_wb(released_audio, audio) >= PESQ_MEAN_BAR
