"""The lab's rejected vocoder rewrites compute what they replace (on hand-built graphs): the
``STFT`` as a ``Conv`` to float rounding, ``sin(u)^2`` as a polynomial to its stated error."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from kokoro_lab.engine.graphs.common import RewriteError
from kokoro_lab.lab.rewrites import (
    edge_bins_zeroed,
    sin_squared_coefficients,
    snake_polynomial,
    stft_as_conv,
)


def _model(nodes, inits, opset: int = 17) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, None)], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, None)], [numpy_helper.from_array(np.asarray(v), k)
                                            for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def stft_model() -> onnx.ModelProto:
    """``x [1, L, 1] -> STFT(step 5, Hann 20) -> Transpose``, as the vocoder's source has it."""
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(20) / 20)).astype(np.float32)
    nodes = [helper.make_node("STFT", ["x", "step", "window", "length"], ["s"], name="/stft",
                              onesided=1),
             helper.make_node("Transpose", ["s"], ["y"], perm=[0, 2, 1, 3])]
    return _model(nodes, {"step": np.array(5, np.int64), "window": window,
                          "length": np.array(20, np.int64)})


def test_stft_as_conv_gives_the_same_bins():
    model = stft_model()
    x = np.random.default_rng(0).normal(size=(1, 403, 1)).astype(np.float32)
    rewritten = stft_as_conv(model)
    assert "STFT" not in {n.op_type for n in rewritten.graph.node}
    expected, got = _run(model, x), _run(rewritten, x)
    assert got.shape == expected.shape == (1, 11, 77, 2)
    # ONNX Runtime's own STFT rounds to ~1e-6 of the largest bin (a DC bin's imaginary part
    # comes out 1e-5, not 0): the two agree to that rounding, not bit for bit
    np.testing.assert_allclose(got, expected, atol=1e-5 * np.abs(expected).max())


def test_edge_bins_zeroed_keeps_orts_stft_but_not_its_noise():
    model = stft_model()
    x = np.random.default_rng(1).normal(size=(1, 403, 1)).astype(np.float32)
    rewritten = edge_bins_zeroed(model, as_trained=False)
    assert "STFT" in {n.op_type for n in rewritten.graph.node}
    expected, got = _run(model, x), _run(rewritten, x)  # [1, bins, frames, 2]
    assert np.abs(expected[:, [0, -1], :, 1]).max() > 0 and not got[:, [0, -1], :, 1].any()
    np.testing.assert_array_equal(got[:, 1:-1], expected[:, 1:-1])
    np.testing.assert_array_equal(got[..., 0], expected[..., 0])
    with pytest.raises(RewriteError, match="sign test"):
        edge_bins_zeroed(model, as_trained=True)  # no atan2 to read them as trained


@pytest.mark.parametrize("square", ["Mul", "Pow"])
@pytest.mark.parametrize("degree", [3, 4])
def test_snake_polynomial_matches_sin_squared_within_its_error(square, degree):
    inputs = ["s", "s"] if square == "Mul" else ["s", "two"]
    nodes = [helper.make_node("Sin", ["x"], ["s"], name="/sin"),
             helper.make_node(square, inputs, ["s2"]),
             helper.make_node("Add", ["x", "s2"], ["y"])]
    model = _model(nodes, {"two": np.array(2.0, np.float32)})
    x = np.linspace(-40, 40, 100_001, dtype=np.float32)
    rewritten = snake_polynomial(model, degree)
    assert "Sin" not in {n.op_type for n in rewritten.graph.node}
    bound = {3: 2.5e-3, 4: 1e-4}[degree]  # the least-squares fit's error, plus float rounding
    np.testing.assert_allclose(_run(rewritten, x), _run(model, x), atol=bound)


def test_sin_squared_fit_tightens_with_degree():
    f = np.linspace(-0.5, 0.5, 1001)
    errors = [np.abs(np.polyval(np.r_[sin_squared_coefficients(d)[::-1], 0], f * f)
                     - np.sin(np.pi * f) ** 2).max() for d in (2, 3, 4, 5)]
    assert errors == sorted(errors, reverse=True) and errors[-1] < 1e-5


def test_rewrites_refuse_a_graph_without_their_pattern():
    plain = _model([helper.make_node("Sin", ["x"], ["y"])], {})
    with pytest.raises(RewriteError, match="STFT"):
        stft_as_conv(plain)
    with pytest.raises(RewriteError, match="sin"):
        snake_polynomial(plain)
