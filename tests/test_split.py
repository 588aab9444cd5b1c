"""The graph split before the vocoder and the windowed generator decoding.

Fast tests run the graph rewrites on small hand-built ONNX graphs; the ``model`` tests run the
real Kokoro graph on one short phrase (one session-scoped decoder, a handful of generator runs).
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from kokoro_lab.engine import split, windowed
from kokoro_lab.engine.windowed import Window, WindowError, plan_windows
from kokoro_lab.quality import join_discontinuities, log_mel_distance

# ---------------------------------------------------------------------------------------------
# fast: window plans


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


# ---------------------------------------------------------------------------------------------
# fast: harmonic phase offsets


def test_phase_offsets_continue_the_cumulative_phase():
    rng = np.random.default_rng(0)
    f0 = np.where(rng.random(200) < 0.3, 0.0, rng.uniform(80, 300, 200)).astype(np.float32)
    increments = windowed.harmonic_increments(f0)
    assert increments.shape == (200, windowed.HARMONICS)
    assert np.all((increments >= 0) & (increments < 1))
    offsets = windowed.phase_offsets(f0)
    exact = np.concatenate([np.zeros((1, 9)), np.cumsum(increments.astype(np.float64), 0)])
    cycles = exact * windowed.CYCLES_PER_UNIT
    for s in (0, 1, 57, 200):
        got = offsets[s].astype(np.float64) * windowed.CYCLES_PER_UNIT
        # same phase modulo one cycle (float32 rounding of the reduced offset only)
        diff = np.mod(got - cycles[s] + 0.5, 1.0) - 0.5
        assert np.max(np.abs(diff)) < 1e-4
    assert np.all(np.abs(offsets) * windowed.CYCLES_PER_UNIT < 1.0)  # kept small


def _run(model: onnx.ModelProto, feeds: dict) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def _cumsum_graph() -> onnx.ModelProto:
    axis = helper.make_tensor("axis", TensorProto.INT64, [], [1])
    node = helper.make_node("CumSum", ["x", "axis"], ["y"], name=windowed.CUMSUM_NODE)
    sine = helper.make_node("Sin", ["y"], ["audio"])
    graph = helper.make_graph(
        [node, sine], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, None, 9])],
        [helper.make_tensor_value_info("audio", TensorProto.FLOAT, [1, None, 9])],
        initializer=[axis])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_phase_input_is_added_after_the_cumsum():
    model = windowed.add_phase_input(_cumsum_graph())
    onnx.checker.check_model(model)
    x = np.random.default_rng(1).random((1, 30, 9)).astype(np.float32)
    offset = np.linspace(0, 1, 9, dtype=np.float32).reshape(1, 1, 9)
    got = _run(model, {"x": x, windowed.PHASE_INPUT: offset})[0]
    np.testing.assert_allclose(got, np.sin(np.cumsum(x, axis=1) + offset), rtol=1e-5, atol=1e-5)
    plain = _run(_cumsum_graph(), {"x": x})[0]
    zero = _run(model, {"x": x, windowed.PHASE_INPUT: np.zeros((1, 1, 9), np.float32)})[0]
    assert np.array_equal(plain, zero)


def test_phase_input_needs_the_source_cumsum():
    graph = _cumsum_graph()
    graph.graph.node[0].name = "/elsewhere/CumSum"
    with pytest.raises(split.SplitError, match="CumSum"):
        windowed.add_phase_input(graph)


# ---------------------------------------------------------------------------------------------
# fast: statistics inputs


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


# ---------------------------------------------------------------------------------------------
# fast: the dependency cut


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


# ---------------------------------------------------------------------------------------------
# real model

PHRASE = "Hello there, how are you today?"


@pytest.fixture(scope="session")
def case():
    from kokoro_onnx.tokenizer import Tokenizer

    from kokoro_lab import assets

    tokenizer = Tokenizer()
    ids = tokenizer.tokenize(tokenizer.phonemize(PHRASE, "en-us"))
    tokens = np.array([[0, *ids, 0]], dtype=np.int64)
    style = np.load(assets.voices_path())["af_heart"][len(ids)]
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    full = ort.InferenceSession(str(assets.model_path("int8")), options,
                                providers=["CPUExecutionProvider"])
    reference = full.run(None, {"tokens": tokens, "style": style,
                                "speed": np.array([1.0], np.float32)})[0].ravel()
    decoder = windowed.WindowedDecoder(precision="int8", threads=2)
    front = decoder.front(tokens, style, 1.0)
    audio, stats = decoder.unsplit(front)
    return dict(tokens=tokens, style=style, reference=reference, decoder=decoder, front=front,
                unsplit=audio, stats=stats)


@pytest.mark.model
def test_real_graph_cut_crosses_the_three_boundary_tensors():
    from kokoro_lab import assets

    model = onnx.load(str(assets.model_path("int8")), load_external_data=False)
    assert split.boundary_tensors(model) == sorted(split.BOUNDARY)


@pytest.mark.model
def test_split_stages_chained_equal_the_unsplit_model(case):
    paths = case["decoder"].paths
    assert paths.front.is_file() and paths.generator.is_file()
    assert split.split_model(paths.source) == paths  # second call: served from the cache
    stages = case["decoder"].stages
    audio = stages(case["tokens"], case["style"], 1.0)
    assert np.array_equal(audio, case["reference"])
    front = case["front"]
    assert front[split.FEATURES].shape[:2] == (1, 512)
    assert audio.size == front[split.F0].shape[-1] * split.FRAME_SAMPLES
    assert 2 * int(front[split.DURATIONS].sum()) == front[split.F0].shape[-1]


@pytest.mark.model
def test_windowed_graph_as_one_window_is_the_unsplit_generator(case):
    assert np.array_equal(case["unsplit"], case["reference"])
    assert len(case["stats"]) == 88  # 44 AdaIN blocks, a mean and a variance each


@pytest.mark.model
def test_skipping_the_pad_never_cuts_speech(case):
    decoder = case["decoder"]
    begin, finish, total = decoder.span(case["front"])
    audible = np.flatnonzero(np.abs(case["reference"]) > 0.02)
    assert begin > 0 and begin * split.FRAME_SAMPLES <= audible[0]
    assert finish * split.FRAME_SAMPLES >= audible[-1]


@pytest.mark.model
def test_windows_with_whole_chunk_statistics_match_unsplit_without_clicks(case):
    """Phase offsets, context, lookahead and crossfades are right: with the statistics the
    unsplit run used, windowed output is within the 1 dB bar and its joins do not click."""
    decoder = windowed.WindowedDecoder(
        precision="int8", threads=2, first_window=16, window=40, context=24, lookahead=8,
        prior=case["stats"], prior_frames=1e12)
    pieces = list(decoder.stream(case["tokens"], case["style"], 1.0))
    plan = decoder.last_stats.windows
    assert len(pieces) == len(plan) >= 2
    audio = np.concatenate(pieces)
    begin = plan[0].first * split.FRAME_SAMPLES
    assert audio.size == (plan[-1].last - plan[0].first) * split.FRAME_SAMPLES
    reference = case["reference"][begin:begin + audio.size]
    assert log_mel_distance(audio, reference) < 1.0
    assert join_discontinuities(pieces) == []


@pytest.mark.model
def test_cumulative_statistics_stream_without_clicks(case):
    """The default (no whole-chunk statistics available) streams joinable pieces; how far it
    is from unsplit is measured by benchmarks/streaming_decoder.py, not asserted here."""
    decoder = case["decoder"]
    pieces = list(decoder.stream(case["tokens"], case["style"], 1.0))
    assert len(pieces) >= 2
    assert all(p.dtype == np.float32 and np.all(np.isfinite(p)) for p in pieces)
    assert join_discontinuities(pieces) == []
    stats = decoder.last_stats
    assert len(stats.window_s) == len(pieces) and stats.front_s > 0


@pytest.mark.model
def test_prior_must_cover_every_statistic(case):
    partial = dict(list(case["stats"].items())[:10])
    with pytest.raises(WindowError, match="lacks 78 of 88"):
        windowed.WindowedDecoder(precision="int8", prior=partial)


def test_bad_decoder_options_are_refused():
    with pytest.raises(WindowError, match="stats must be"):
        windowed.WindowedDecoder(precision="int8", stats="global")
    with pytest.raises(WindowError, match="lookahead"):
        windowed.WindowedDecoder(precision="int8", lookahead=0, crossfade_ms=5)


def test_window_dataclass_counts_frames():
    assert Window(2, 5, 20, 28).frames == 26


@pytest.mark.model
@pytest.mark.parametrize(("precision", "tolerance"), [("fp32", 0.0), ("fp16", 1e-3)])
def test_derived_precisions_split_at_the_same_tensors(precision, tolerance):
    """fp32 chains bit-exactly; fp16 to within a few fp16 steps (ONNX Runtime fuses the fp16
    casts differently when the graph is cut)."""
    from kokoro_onnx.tokenizer import Tokenizer

    from kokoro_lab import assets

    tokenizer = Tokenizer()
    ids = tokenizer.tokenize(tokenizer.phonemize("Hello.", "en-us"))
    tokens = np.array([[0, *ids, 0]], dtype=np.int64)
    style = np.load(assets.voices_path())["af_heart"][len(ids)]
    paths = split.split_paths(precision)
    stages = split.SplitSession(paths, threads=2)
    full = ort.InferenceSession(str(paths.source), providers=["CPUExecutionProvider"])
    reference = full.run(None, {"tokens": tokens, "style": style,
                                "speed": np.array([1.0], np.float32)})[0].ravel()
    audio = stages(tokens, style, 1.0)
    assert audio.shape == reference.shape
    assert np.max(np.abs(audio - reference)) <= tolerance


@pytest.mark.model
@pytest.mark.parametrize("precision", ["int8", "fp16"])
def test_timed_graph_is_the_released_graph_plus_its_durations(precision):
    """The ``"full"`` decoder's graph: the released audio bit for bit, and the front stage's
    durations (fp16 has no value_info for them, so their type is inferred)."""
    from kokoro_onnx.tokenizer import Tokenizer

    from kokoro_lab import assets

    tokenizer = Tokenizer()
    ids = tokenizer.tokenize(tokenizer.phonemize(PHRASE, "en-us"))
    feeds = {"tokens": np.array([[0, *ids, 0]], dtype=np.int64),
             "style": np.load(assets.voices_path())["af_heart"][len(ids)],
             "speed": np.array([1.1], np.float32)}
    source = assets.model_path(precision)
    timed = split.timed_model(source)
    assert timed == split.timed_model(source)  # served from the cache
    released = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"])
    session = ort.InferenceSession(str(timed), providers=["CPUExecutionProvider"])
    audio, durations = session.run(None, feeds)
    assert np.array_equal(audio, released.run(None, feeds)[0])
    front = ort.InferenceSession(str(split.split_model(source).front),
                                 providers=["CPUExecutionProvider"])
    assert np.array_equal(durations, front.run([split.DURATIONS], feeds)[0])
    assert durations.sum() * split.DURATION_FRAMES * split.FRAME_SAMPLES == audio.size
