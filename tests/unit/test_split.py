"""The graph rewrites for the split before the vocoder, the phase input and the windowed
generator, on small hand-built ONNX graphs.
"""


from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from kokoro_lab.engine import phase, split
from kokoro_lab.lab import windowed
from kokoro_lab.lab.windowed import Window, WindowError, plan_windows


@pytest.mark.parametrize(("begin", "finish", "total", "first", "size", "context", "lookahead"), [
    (0, 266, 266, 16, 80, 24, 8),
    (20, 240, 266, 16, 80, 24, 8),
    (5, 12, 40, 16, 80, 24, 8),
    (0, 1000, 1000, 7, 33, 0, 0),
    (30, 31, 60, 16, 80, 3, 1),
])
def test_windows_tile_the_span_without_gaps(begin, finish, total, first, size, context,
                                            lookahead):
    plan = plan_windows(begin, finish, total, first, size, context, lookahead)
    assert plan[0].first == begin and plan[-1].last == finish
    for before, after in zip(plan[:-1], plan[1:], strict=True):
        assert before.last == after.first  # contiguous, no overlap in what is kept
    for w in plan:
        assert 0 <= w.start <= w.first < w.last <= w.end <= total
        assert w.start == max(0, w.first - context) or w.frames >= windowed.MIN_WINDOW
        assert w.end >= min(total, w.last + lookahead)
        assert w.frames >= min(total, windowed.MIN_WINDOW)
    if finish - begin > first:
        assert plan[0].last - plan[0].first == first
    # a trailing sliver is merged, never decoded alone
    if len(plan) > 1:
        assert plan[-1].last - plan[-1].first >= size // 2


@pytest.mark.parametrize("bad", [
    dict(first_window=0), dict(window=0), dict(context=-1), dict(lookahead=-2),
    dict(begin=10, finish=10), dict(finish=300),
])
def test_bad_window_parameters_are_refused(bad):
    args = dict(begin=0, finish=100, total=100, first_window=16, window=80, context=8,
                lookahead=8)
    args.update(bad)
    with pytest.raises(WindowError):
        plan_windows(**args)


def test_phase_offsets_continue_the_cumulative_phase():
    rng = np.random.default_rng(0)
    f0 = np.where(rng.random(200) < 0.3, 0.0, rng.uniform(80, 300, 200)).astype(np.float32)
    increments = phase.harmonic_increments(f0)
    assert increments.shape == (200, phase.HARMONICS)
    assert np.all((increments >= 0) & (increments < 1))
    offsets = phase.phase_offsets(f0)
    exact = np.concatenate([np.zeros((1, 9)), np.cumsum(increments.astype(np.float64), 0)])
    cycles = exact * phase.CYCLES_PER_UNIT
    for s in (0, 1, 57, 200):
        got = offsets[s].astype(np.float64) * phase.CYCLES_PER_UNIT
        # same phase modulo one cycle (float32 rounding of the reduced offset only)
        diff = np.mod(got - cycles[s] + 0.5, 1.0) - 0.5
        assert np.max(np.abs(diff)) < 1e-4
    assert np.all(np.abs(offsets) * phase.CYCLES_PER_UNIT < 1.0)  # kept small


def _run(model: onnx.ModelProto, feeds: dict) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def _cumsum_graph() -> onnx.ModelProto:
    axis = helper.make_tensor("axis", TensorProto.INT64, [], [1])
    node = helper.make_node("CumSum", ["x", "axis"], ["y"], name=phase.CUMSUM_NODE)
    sine = helper.make_node("Sin", ["y"], ["audio"])
    graph = helper.make_graph(
        [node, sine], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, None, 9])],
        [helper.make_tensor_value_info("audio", TensorProto.FLOAT, [1, None, 9])],
        initializer=[axis])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_phase_input_is_added_after_the_cumsum():
    model = phase.add_phase_input(_cumsum_graph())
    onnx.checker.check_model(model)
    x = np.random.default_rng(1).random((1, 30, 9)).astype(np.float32)
    offset = np.linspace(0, 1, 9, dtype=np.float32).reshape(1, 1, 9)
    got = _run(model, {"x": x, phase.PHASE_INPUT: offset})[0]
    np.testing.assert_allclose(got, np.sin(np.cumsum(x, axis=1) + offset), rtol=1e-5, atol=1e-5)
    plain = _run(_cumsum_graph(), {"x": x})[0]
    zero = _run(model, {"x": x, phase.PHASE_INPUT: np.zeros((1, 1, 9), np.float32)})[0]
    assert np.array_equal(plain, zero)


def test_phase_input_needs_the_source_cumsum():
    graph = _cumsum_graph()
    graph.graph.node[0].name = "/elsewhere/CumSum"
    with pytest.raises(split.SplitError, match="CumSum"):
        phase.add_phase_input(graph)


def _norm_graph() -> onnx.ModelProto:
    """x → instance norm over time → audio, the way the AdaIN blocks are exported."""
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [2])
    nodes = [
        helper.make_node("ReduceMean", ["x", "axes"], ["mean"], name="m"),
        helper.make_node("Sub", ["x", "mean"], ["centred"]),
        helper.make_node("Mul", ["centred", "centred"], ["square"]),
        helper.make_node("ReduceMean", ["square", "axes"], ["var"], name="v"),
        helper.make_node("Sqrt", ["var"], ["std"]),
        helper.make_node("Div", ["centred", "std"], ["audio"]),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, None])],
        [helper.make_tensor_value_info("audio", TensorProto.FLOAT, [1, 4, None])],
        initializer=[axes])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_statistics_mix_local_and_prior():
    model, names = windowed.add_stats_inputs(_norm_graph())
    onnx.checker.check_model(model)
    assert names == ["mean", "var"] == windowed.stat_names(model)
    x = np.random.default_rng(2).normal(3.0, 2.0, (1, 4, 50)).astype(np.float32)
    ones = np.ones((1, 1, 1), np.float32)

    def feeds(local, prior_mean, prior_var):
        return {"x": x, "mean/prior": prior_mean, "var/prior": prior_var,
                windowed.LOCAL_WEIGHT: np.array(local, np.float32),
                windowed.PRIOR_WEIGHT: np.array(1 - local, np.float32)}

    plain = _run(_norm_graph(), {"x": x})[0]
    audio, local_mean, local_var = _run(model, feeds(1.0, 0 * ones, 0 * ones))
    assert np.array_equal(audio, plain)  # weight 1 on local is the original graph, bit for bit
    np.testing.assert_allclose(local_mean, x.mean(axis=2, keepdims=True), rtol=1e-5)
    np.testing.assert_allclose(local_var, x.var(axis=2, keepdims=True), rtol=1e-4)
    fixed = _run(model, feeds(0.0, ones * 3, ones * 4))[0]
    np.testing.assert_allclose(fixed, (x - 3) / 2, rtol=1e-5, atol=1e-5)  # prior only


def _toy_split_graph() -> onnx.ModelProto:
    gen = split.GENERATOR_PREFIX
    nodes = [
        helper.make_node("Relu", ["tokens"], ["feat"], name="/front/a"),
        helper.make_node("DynamicQuantizeLinear", ["feat"], ["q", "q_scale", "q_zp"],
                         name="/front/q"),
        helper.make_node("Cast", ["q"], ["qf"], name="/front/cast", to=TensorProto.FLOAT),
        helper.make_node("Mul", ["qf", "q_scale"], ["front_only"], name="/front/use_q"),
        helper.make_node("Relu", ["feat"], ["g1"], name=gen + "relu"),
        helper.make_node("Cast", ["q"], ["gq"], name=gen + "cast", to=TensorProto.FLOAT),
        helper.make_node("Add", ["g1", "gq"], ["g2"], name=gen + "add"),
        # outside the generator's name scope but downstream of it: a name cut would miss it
        helper.make_node("Mul", ["g2", "front_only"], ["audio"], name="/decoder/tail"),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("tokens", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("audio", TensorProto.FLOAT, [4])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_cut_follows_dependencies_and_traces_quantizers_back():
    assert split.boundary_tensors(_toy_split_graph()) == ["feat", "front_only"]
    with pytest.raises(split.SplitError, match="crosses"):
        split.check_boundary(_toy_split_graph())


def test_graph_without_a_vocoder_is_refused():
    graph = _norm_graph()
    with pytest.raises(split.SplitError, match="not a Kokoro"):
        split.boundary_tensors(graph)


def test_missing_model_file_is_refused(tmp_path):
    with pytest.raises(split.SplitError, match="does not exist"):
        split.split_model(tmp_path / "nope.onnx")


def _toy_durations_graph(typed: bool) -> onnx.ModelProto:
    nodes = [helper.make_node("Clip", ["tokens"], [split.DURATIONS], name="/encoder/Clip"),
             helper.make_node("Relu", [split.DURATIONS], ["audio"], name="/decoder/relu")]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("tokens", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("audio", TensorProto.FLOAT, [1, 4])],
        value_info=[helper.make_tensor_value_info(split.DURATIONS, TensorProto.FLOAT, [1, 4])]
        if typed else [])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("typed", [True, False])
def test_durations_become_the_second_output_once(typed):
    model = split.add_durations_output(_toy_durations_graph(typed))
    assert [out.name for out in model.graph.output] == ["audio", split.DURATIONS]
    assert model.graph.output[1].type.tensor_type.elem_type == TensorProto.FLOAT
    again = split.add_durations_output(model)
    assert [out.name for out in again.graph.output] == ["audio", split.DURATIONS]
    feeds = {"tokens": np.array([[-1.0, 0.5, 2.0, 3.0]], np.float32)}
    audio, durations = _run(model, feeds)
    assert np.array_equal(durations, feeds["tokens"])  # a Clip without bounds passes through
    assert np.array_equal(audio, np.maximum(feeds["tokens"], 0))


def test_a_graph_without_durations_gets_no_timed_graph():
    with pytest.raises(split.SplitError, match="no /encoder/Clip_output_0"):
        split.add_durations_output(_norm_graph())




def test_bad_decoder_options_are_refused():
    with pytest.raises(WindowError, match="stats must be"):
        windowed.WindowedDecoder(precision="int8", stats="global")
    with pytest.raises(WindowError, match="lookahead"):
        windowed.WindowedDecoder(precision="int8", lookahead=0, crossfade_ms=5)


def test_window_dataclass_counts_frames():
    assert Window(2, 5, 20, 28).frames == 26
