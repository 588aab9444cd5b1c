"""The harmonic source's STFT as a Conv (:mod:`kokoro_lab.engine.graphs.source`), on a
hand-built graph of the exported pattern: the same bins as ONNX Runtime's STFT to rounding,
the DC and Nyquist imaginary parts exactly zero, and their phase read as PyTorch reads it."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from kokoro_lab.engine.graphs.common import RewriteError
from kokoro_lab.engine.graphs.source import stft_as_conv

N_FFT, STEP = 20, 5


def source_model(with_phase: bool = True) -> onnx.ModelProto:
    """``x [1, L, 1] -> STFT -> Transpose -> Gather`` real and imaginary parts, and the
    export's ``atan2`` sign test ``Where(imag > 0, +pi, -pi)`` for a negative real part."""
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)).astype(np.float32)
    nodes = [helper.make_node("STFT", ["x", "step", "window", "length"], ["s"], name="/stft",
                              onesided=1),
             helper.make_node("Transpose", ["s"], ["st"], perm=[0, 2, 1, 3]),
             helper.make_node("Gather", ["st", "i0"], ["real"], axis=3),
             helper.make_node("Gather", ["st", "i1"], ["imag"], axis=3)]
    outputs = ["real", "imag"]
    if with_phase:
        nodes += [helper.make_node("Greater", ["imag", "zero"], ["upper"]),
                  helper.make_node("Where", ["upper", "pi", "minus_pi"], ["phase"])]
        outputs.append("phase")
    inits = {"step": np.array(STEP, np.int64), "window": window,
             "length": np.array(N_FFT, np.int64), "i0": np.array(0, np.int64),
             "i1": np.array(1, np.int64), "zero": np.array(0.0, np.float32),
             "pi": np.array(np.pi, np.float32), "minus_pi": np.array(-np.pi, np.float32)}
    graph = helper.make_graph(
        nodes, "source", [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in outputs],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def run(model: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})


def test_the_conv_gives_the_stft_bins_with_exact_zeros_where_a_real_signal_has_them():
    model = source_model()
    x = np.random.default_rng(0).normal(size=(1, 403, 1)).astype(np.float32)
    rewritten = stft_as_conv(model)
    assert "STFT" not in {n.op_type for n in rewritten.graph.node}
    (real, imag, _), (real2, imag2, phase2) = run(model, x), run(rewritten, x)
    assert real2.shape == real.shape == (1, N_FFT // 2 + 1, 77)
    scale = np.abs(real).max()
    np.testing.assert_allclose(real2, real, atol=1e-5 * scale)
    np.testing.assert_allclose(imag2[:, 1:-1], imag[:, 1:-1], atol=1e-5 * scale)
    # ONNX Runtime's transform leaves rounding noise in DC and Nyquist imaginary parts ...
    assert np.abs(imag[:, [0, -1]]).max() > 0
    # ... which a real signal does not have; the Conv gives exact zeros, read as PyTorch's
    # angle reads them: +pi wherever the real part is negative.
    assert not imag2[:, [0, -1]].any()
    edges = real2[:, [0, -1]] < 0
    assert edges.any() and np.all(phase2[:, [0, -1]][edges] == np.float32(np.pi))


def test_without_the_trained_phase_the_zero_test_is_left_as_exported():
    rewritten = stft_as_conv(source_model(), as_trained=False)
    ops = {n.op_type for n in rewritten.graph.node}
    assert "Greater" in ops and "GreaterOrEqual" not in ops and "STFT" not in ops


def test_a_graph_without_the_pattern_is_refused():
    with pytest.raises(RewriteError, match="sign test"):
        stft_as_conv(source_model(with_phase=False))
    plain = source_model()
    del plain.graph.node[0]
    with pytest.raises(RewriteError, match="no STFT"):
        stft_as_conv(plain, as_trained=False)
