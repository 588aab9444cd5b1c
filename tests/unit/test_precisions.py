"""Derived precisions without the model: labels, cache names, the fp16 range checks and the
fp32 rewrite on hand-built quantized graphs.
"""


from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from kokoro_lab.engine import assets, precisions
from kokoro_lab.engine.graphs import dequantize, fp16
from tests.precisions_support import relative_error, run


def test_unknown_precision_is_refused_with_the_choices(tmp_path):
    with pytest.raises(ValueError, match="derived precisions are fp32, fp16"):
        precisions.derived_model(tmp_path / "x.onnx", "int4", tmp_path)
    with pytest.raises(ValueError, match="choose one of int8, fp32, fp16"):
        precisions.describe_precision("bf16")


def test_missing_source_gives_a_clear_error(tmp_path):
    with pytest.raises(assets.AssetError, match="does not exist"):
        precisions.derived_model(tmp_path / "missing.onnx", "fp32", tmp_path)


def test_labels_say_where_the_graph_came_from():
    assert precisions.describe_precision("fp32") == "fp32, dequantized from the int8 release"
    assert precisions.describe_precision("int8").startswith("int8, the released graph")
    label = precisions.describe_precision("fp16")
    assert label.startswith("fp16 mixed (fp32 islands: ") and "from the int8 release" in label
    for island in fp16.FP16_FP32_ISLANDS:
        assert island in label


def test_expected_path_is_named_by_the_source_hash(tmp_path):
    path = precisions.expected_path(tmp_path, "fp16", assets.INT8_SHA256)
    assert path.parent == tmp_path
    assert assets.INT8_SHA256[:12] in path.name and "fp16" in path.name
    assert precisions.expected_path(tmp_path, "fp16", "ab" * 32) != path


def test_rewrite_of_a_graph_without_the_pattern_fails_loudly():
    # A MatMulInteger whose input was not dynamically quantized is not the pattern we undo.
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "w"], ["y"])], "g",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, [1, 2])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [1, 2])],
        [numpy_helper.from_array(np.ones((2, 2), np.int8), "w")],
    )
    with pytest.raises(precisions.RewriteError, match="should come from DynamicQuantizeLinear"):
        dequantize.dequantize_model(helper.make_model(graph))


def test_fp16_safety_of_constants():
    assert fp16._fp16_safe(np.array([1.0, -3e4, 1e-5], np.float32))
    assert not fp16._fp16_safe(np.array([1e5], np.float32))  # overflows to inf
    assert not fp16._fp16_safe(np.array([1e-9], np.float32))  # an epsilon becomes 0
    weights = np.full(10_000, 0.01, np.float32)
    weights[:5] = 1e-9  # a few vanishing weights are harmless …
    assert fp16._fp16_safe(weights)
    weights[:500] = 1e-9  # … 5 % of them are not
    assert not fp16._fp16_safe(weights)


def _toy_float_model(rng) -> onnx.ModelProto:
    """MatMul → Conv(+bias) → bidirectional LSTM, small enough to quantize in a second."""
    def weight(name, shape):
        return numpy_helper.from_array((0.2 * rng.standard_normal(shape)).astype(np.float32), name)

    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h1"]),  # [1, T, 32]
        helper.make_node("Transpose", ["h1"], ["h1t"], perm=[0, 2, 1]),
        helper.make_node("Conv", ["h1t", "cw", "cb"], ["c1"], pads=[1, 1], kernel_shape=[3]),
        helper.make_node("Transpose", ["c1"], ["seq"], perm=[2, 0, 1]),  # [T, 1, 24]
        helper.make_node("LSTM", ["seq", "lw", "lr", "lb"], ["y"], hidden_size=8,
                         direction="bidirectional"),
    ]
    inits = [weight("w1", (16, 32)), weight("cw", (24, 32, 3)), weight("cb", (24,)),
             weight("lw", (2, 32, 24)), weight("lr", (2, 32, 8)), weight("lb", (2, 64))]
    graph = helper.make_graph(
        nodes, "toy", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, None, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("weight_type", ["QInt8", "QUInt8"])
def test_rewrite_undoes_onnxruntime_dynamic_quantization(weight_type, tmp_path):
    """Today's ORT quantizer (float bias after the conv, not folded into int32) is undone too,
    and the float graph matches the original float model within the weight rounding."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    rng = np.random.default_rng(3)
    onnx.save(_toy_float_model(rng), tmp_path / "float.onnx")
    quantize_dynamic(tmp_path / "float.onnx", tmp_path / "int8.onnx",
                     weight_type=getattr(QuantType, weight_type),
                     op_types_to_quantize=["MatMul", "Conv", "LSTM"])
    quantized = onnx.load(tmp_path / "int8.onnx")
    assert {"MatMulInteger", "ConvInteger", "DynamicQuantizeLSTM"} <= {
        n.op_type for n in quantized.graph.node}
    rewritten = dequantize.dequantize_model(quantized)
    onnx.checker.check_model(rewritten)
    assert precisions.quantized_op_counts(rewritten) == {}
    assert sorted(n.op_type for n in rewritten.graph.node if n.op_type in (
        "MatMul", "Conv", "LSTM")) == ["Conv", "LSTM", "MatMul"]
    x = rng.standard_normal((1, 11, 16)).astype(np.float32)
    original = run(_toy_bytes(tmp_path / "float.onnx"), {"x": x})
    restored = run(rewritten.SerializeToString(), {"x": x})
    dynamic = run(quantized.SerializeToString(), {"x": x})
    assert restored.shape == original.shape == dynamic.shape
    # Only the 8-bit weight rounding separates restored from original ...
    assert relative_error(restored, original) < 0.03
    # ... and the activation rounding is gone: restored is closer to float than int8 is.
    assert relative_error(restored, original) < relative_error(dynamic, original)


def _toy_bytes(path) -> bytes:
    return onnx.load(path).SerializeToString()
