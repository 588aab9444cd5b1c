"""The generator graph variants on hand-built graphs of the released pattern: the exact GEMM
rewrite gives the very same numbers, the fused one the same convolution to float rounding,
AdaIN + Snake fold into instance norm without changing what they compute, and the Snake's
polynomial form is the Snake to within the polynomial's error."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from kokoro_lab.engine.graphs import variants
from kokoro_lab.engine.graphs.common import Graph, RewriteError

C, M, K, T = 8, 6, 3, 40


def _const(name: str, value) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value), name)


def conv_graph(bias: bool, dilation: int = 2, spread: int = 64) -> onnx.ModelProto:
    """x → DynamicQuantizeLinear → ConvInteger(uint8 w) [→ Add int32 bias] → Cast → Mul(scales),
    as the released int8 graph quantizes each vocoder convolution; weights ``128 ± spread``
    (within 64 of the zero point no pair of them can saturate a 16-bit sum)."""
    rng = np.random.default_rng(0)
    weight = rng.integers(128 - spread, 128 + spread + 1, (M, C, K)).astype(np.uint8)
    pad = dilation * (K - 1) // 2
    nodes = [
        helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"]),
        helper.make_node("ConvInteger", ["xq", "w", "xz", "wz"], ["acc"], name="/conv",
                         kernel_shape=[K], pads=[pad, pad], dilations=[dilation]),
        helper.make_node("Mul", ["xs", "ws"], ["scale"]),
    ]
    inits = [_const("w", weight), _const("wz", np.array(128, np.uint8)),
             _const("ws", np.array(0.01, np.float32))]
    last = "acc"
    if bias:
        nodes += [helper.make_node("Div", ["bias_f", "scale"], ["bq"]),
                  helper.make_node("Floor", ["bq"], ["bfl"]),
                  helper.make_node("Cast", ["bfl"], ["bi"], to=TensorProto.INT32),
                  helper.make_node("Reshape", ["bi", "bshape"], ["b3"]),
                  helper.make_node("Add", ["acc", "b3"], ["acc_b"])]
        inits += [_const("bias_f", rng.normal(0, 0.5, M).astype(np.float32)),
                  _const("bshape", np.array([1, M, 1], np.int64))]
        last = "acc_b"
    nodes += [helper.make_node("Cast", [last], ["accf"], to=TensorProto.FLOAT),
              helper.make_node("Mul", ["accf", "scale"], ["y"])]
    graph = helper.make_graph(nodes, "conv", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [1, C, None])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, [1, M, None])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def run(model: onnx.ModelProto, feeds: dict) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


@pytest.mark.parametrize(("bias", "pairs_in_16_bits"), [(False, False), (True, True)])
def test_the_exact_gemm_rewrite_gives_the_very_same_numbers(bias, pairs_in_16_bits):
    model = conv_graph(bias)
    x = {"x": np.random.default_rng(1).normal(0, 1, (1, C, T)).astype(np.float32)}
    exact = variants.conv_integer_to_matmul(model, exact=True, pairs_in_16_bits=pairs_in_16_bits)
    assert not [n for n in exact.graph.node if n.op_type == "ConvInteger"]
    assert [n.op_type for n in exact.graph.node].count("MatMulInteger") == 1
    np.testing.assert_array_equal(run(exact, x), run(model, x))
    fused = variants.conv_integer_to_matmul(model, pairs_in_16_bits=pairs_in_16_bits)
    assert [n.op_type for n in fused.graph.node].count("MatMulIntegerToFloat") == 1
    np.testing.assert_allclose(run(fused, x), run(model, x), rtol=1e-4, atol=0.02)


def test_weights_that_could_saturate_a_16_bit_pair_stay_a_conv_integer_there():
    # 128 ± 100: pairs of |w| up to 200; a uint8 activation of 255 makes 51,000 > 32,767
    model = conv_graph(bias=True, spread=100)
    kept = variants.conv_integer_to_matmul(model, exact=True, pairs_in_16_bits=True)
    assert [n.op_type for n in kept.graph.node].count("ConvInteger") == 1
    assert "MatMulInteger" not in {n.op_type for n in kept.graph.node}
    widened = variants.conv_integer_to_matmul(model, exact=True, pairs_in_16_bits=False)
    assert "ConvInteger" not in {n.op_type for n in widened.graph.node}


def pair_sums_in_16_bits(activations: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """A GEMM as vpmaddubsw computes it: rows 2i and 2i+1 multiplied and added in a saturating
    int16, the pairs then added in int32."""
    a, w = activations.astype(np.int64), weight.astype(np.int64)
    if w.shape[0] % 2:
        a, w = np.pad(a, ((0, 0), (0, 1))), np.pad(w, ((0, 1), (0, 0)))
    pairs = a[:, 0::2, None] * w[None, 0::2] + a[:, 1::2, None] * w[None, 1::2]
    return np.clip(pairs, -32768, 32767).sum(axis=1)


def worst_activations(weight: np.ndarray) -> np.ndarray:
    """Per column, the uint8 activations that push its pair sums furthest up and down."""
    return np.concatenate([np.where(weight.T > 0, 255, 0), np.where(weight.T < 0, 255, 0)])


def test_the_pair_rule_holds_exactly_when_a_16_bit_pair_gemm_is_exact():
    rng = np.random.default_rng(5)
    for trial in range(300):
        k, n = rng.integers(1, 9), rng.integers(1, 4)
        weight = rng.integers(-128 + trial % 64, 128 - trial % 64, (k, n)).astype(np.int8)
        exact = np.all([np.array_equal(pair_sums_in_16_bits(a[None], weight[:, [j]]),
                                       a[None].astype(np.int64) @ weight[:, [j]])
                        for j in range(n) for a in worst_activations(weight[:, [j]])])
        assert variants.pairs_fit_16_bits(weight) == exact


def test_the_pair_rule_bounds_every_pair_of_rows_the_gemm_adds_in_16_bits():
    fits = variants.pairs_fit_16_bits
    assert fits(np.array([[127, -1], [1, -127]], np.int8))  # 127 + 1 = 128: 32,640 fits
    assert not fits(np.array([[127], [2]], np.int8))  # 129 * 255 = 32,895 does not
    assert fits(np.array([[127], [-127]], np.int8))  # opposite signs: never both at 255
    assert not fits(np.array([[-128], [-1]], np.int8))  # -129 * 255 = -32,895
    assert fits(np.array([[64], [64], [-128]], np.int8))  # an odd last row pairs with zero
    assert not fits(np.array([[1], [1], [-128], [-1]], np.int8))  # rows 2 and 3 pair
    assert fits(np.array([[100], [0], [0], [100]], np.int8))  # 0 + 3 are never added in 16 bits


def test_the_cached_graphs_name_the_gemm_they_were_rewritten_for(monkeypatch):
    monkeypatch.setattr(variants, "gemm_is_exact", lambda: True)
    assert variants.gemm_tag() == ""
    monkeypatch.setattr(variants, "gemm_is_exact", lambda: False)
    assert variants.gemm_tag() == "-pairs16"


def adain_snake_graph() -> onnx.ModelProto:
    """AdaIN over time, then a Snake: ``y + sin(a*y)^2 / a`` with ``y = norm(x)*(1+g) + b``."""
    rng = np.random.default_rng(2)
    alpha = rng.uniform(0.5, 2.0, (1, C, 1)).astype(np.float32)
    nodes = [
        helper.make_node("ReduceMean", ["x", "axis"], ["mean"], keepdims=1),
        helper.make_node("Sub", ["x", "mean"], ["centre"]),
        helper.make_node("Mul", ["centre", "centre"], ["square"]),
        helper.make_node("ReduceMean", ["square", "axis"], ["var"], keepdims=1),
        helper.make_node("Add", ["var", "eps"], ["var_eps"]),
        helper.make_node("Sqrt", ["var_eps"], ["std"]),
        helper.make_node("Div", ["centre", "std"], ["normed"]),
        helper.make_node("Mul", ["normed", "gamma1"], ["scaled"], name="/block/scale"),
        helper.make_node("Add", ["scaled", "beta"], ["y"]),
        helper.make_node("Mul", ["y", "alpha"], ["ay"]),
        helper.make_node("Sin", ["ay"], ["s"]),
        helper.make_node("Pow", ["s", "two"], ["s2"]),
        helper.make_node("Mul", ["s2", "recip"], ["s2a"]),
        helper.make_node("Add", ["y", "s2a"], ["out"]),
    ]
    inits = [_const("axis", np.array([2], np.int64)), _const("eps", np.array(1e-5, np.float32)),
             _const("alpha", alpha), _const("recip", (1 / alpha).astype(np.float32)),
             _const("two", np.array(2.0, np.float32))]
    graph = helper.make_graph(nodes, "adain", [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, C, None]),
        helper.make_tensor_value_info("gamma1", TensorProto.FLOAT, [1, C, 1]),
        helper.make_tensor_value_info("beta", TensorProto.FLOAT, [1, C, 1])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, C, None])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_adain_and_snake_fold_into_instance_norm():
    model = adain_snake_graph()
    rng = np.random.default_rng(3)
    feeds = {"x": rng.normal(0, 2, (1, C, T)).astype(np.float32),
             "gamma1": rng.uniform(0.5, 1.5, (1, C, 1)).astype(np.float32),
             "beta": rng.normal(0, 0.3, (1, C, 1)).astype(np.float32)}
    folded = variants.adain_to_instance_norm(model)
    ops = [n.op_type for n in folded.graph.node]
    assert "InstanceNormalization" in ops and "Pow" not in ops and "ReduceMean" not in ops
    np.testing.assert_allclose(run(folded, feeds), run(model, feeds), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("degree", [2, 3])
def test_the_snake_polynomial_computes_the_snake_without_sin(degree):
    """The folded polynomial is the Snake to within the polynomial's own error on sin^2 (scaled
    by 1/a), over many periods of the sine: the range reduction and the folds are exact."""
    model = adain_snake_graph()
    rng = np.random.default_rng(4)
    feeds = {"x": rng.normal(0, 2, (1, C, 400)).astype(np.float32),
             "gamma1": rng.uniform(0.5, 3.0, (1, C, 1)).astype(np.float32),
             "beta": rng.normal(0, 3.0, (1, C, 1)).astype(np.float32)}
    folded = variants.adain_to_instance_norm(model, sine_degree=degree)
    ops = [n.op_type for n in folded.graph.node]
    assert "Sin" not in ops and "Round" not in ops and "InstanceNormalization" in ops
    f = np.linspace(-0.5, 0.5, 2001)
    fit_error = np.abs(np.polyval(np.r_[variants.sin_squared_coefficients(degree)[::-1], 0],
                                  f * f) - np.sin(np.pi * f) ** 2).max()
    alpha = numpy_helper.to_array(next(i for i in model.graph.initializer if i.name == "alpha"))
    reference = run(model, feeds)
    assert np.abs(run(folded, feeds) - reference).max() <= fit_error / alpha.min() + 1e-4
    # A degree-2 fit is not the Snake exactly: the test would see a broken fold, not just noise.
    assert np.abs(run(folded, feeds) - reference).max() > 1e-6


def test_the_range_reduction_holds_far_from_zero_and_at_ties():
    """``sin_squared_nodes`` rounds by adding and removing a shift, not ``Round``: it must still
    reduce any Snake input (here up to 10**5 periods, and exact half-periods) to ``|f| <= 1/2``,
    where the polynomial is fitted."""
    graph = helper.make_graph([], "reduce", [helper.make_tensor_value_info(
        "t", TensorProto.FLOAT, [None])], [helper.make_tensor_value_info(
        "y", TensorProto.FLOAT, [None])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    g = Graph(model.graph)
    nodes, out = variants.sin_squared_nodes(g, "s/", "t", variants.sin_squared_coefficients(5))
    model.graph.node.extend(nodes + [helper.make_node("Identity", [out], ["y"])])
    model.graph.initializer.extend(g.new_init.values())
    t = np.r_[np.arange(-8, 8.5, 0.5), np.random.default_rng(1).uniform(-1e5, 1e5, 4000)]
    t = t.astype(np.float32)
    expected = np.sin(np.pi * t.astype(np.float64)) ** 2
    assert np.abs(run(model, {"t": t}) - expected).max() < 1e-5


@pytest.mark.parametrize("name", ["matmul-fused-poly", "matmul-fused-poly-stft"])
def test_the_by_ear_variants_are_never_run_unmeasured(name):
    """Not bit-identical, so neither the built-in tuning nor anything but ``tune``'s by-ear
    certificate puts them on the default path."""
    from kokoro_lab.engine.tuning import built_in

    assert name in variants.VARIANTS and name not in variants.EXACT
    assert built_in().variant in variants.EXACT


def test_a_graph_without_the_pattern_is_refused_and_names_are_checked():
    plain = helper.make_model(helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "plain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])]))
    with pytest.raises(RewriteError, match="no ConvInteger"):
        variants.conv_integer_to_matmul(plain)
    with pytest.raises(RewriteError, match="no AdaIN"):
        variants.adain_to_instance_norm(plain)
    with pytest.raises(ValueError, match="unknown graph variant 'fastest'"):
        variants.build("fastest", plain)
    assert variants.build("released", plain) is plain


@pytest.mark.parametrize(("flags", "exact"), [
    ("fpu sse2 avx2 avx512f avx512_vnni", True),  # VNNI: 32-bit dot products
    ("fpu sse2 avx2 avx_vnni", True),
    ("fpu sse2 avx2 amx_tile amx_int8", True),
    ("fpu sse2 avx2 fma", False),  # AVX2 only: pairs summed in 16 bits saturate
    ("fpu sse2 avx2 avx512f avx512bw", False),
])
def test_the_gemm_is_exact_for_any_weights_only_with_vnni_amx_or_on_arm(tmp_path, flags, exact):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: test\nflags\t\t: {flags}\n")
    assert variants.gemm_is_exact(str(cpuinfo)) is exact
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd asimddp\n")
    assert variants.gemm_is_exact(str(arm)) is True
    assert variants.gemm_is_exact(str(tmp_path / "missing")) is False
