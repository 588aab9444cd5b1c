"""Derived fp32/fp16 graphs of the real release: the rewrite agrees op by op with the int8
graph's own ops (each quantized pattern cut out of both graphs and run on the same input:
fed the *fake-quantized* input the float op reproduces the integer chain to float rounding,
fed the raw input it stays within the activation quantization error), and every precision
speaks a sentence. The derived graphs are built once per cache (``KOKORO_LAB_CACHE``).
"""


from __future__ import annotations

import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from kokoro_lab.engine import assets, precisions
from kokoro_lab.engine.graphs import fp16
from tests.precisions_support import SENTENCES, TEXT, relative_error, run


@pytest.fixture(scope="session")
def int8_path():
    return assets.model_path("int8")


@pytest.fixture(scope="session")
def fp32_path(int8_path):
    return precisions.derived_model(int8_path, "fp32", assets.cache_dir())


@pytest.fixture(scope="session")
def fp16_path(int8_path, fp32_path):
    return precisions.derived_model(int8_path, "fp16", assets.cache_dir())


@pytest.fixture(scope="session")
def int8_model(int8_path):
    return onnx.load(str(int8_path))


@pytest.fixture(scope="session")
def fp32_model(fp32_path):
    return onnx.load(str(fp32_path))


@pytest.fixture(scope="session")
def fp16_model(fp16_path):
    return onnx.load(str(fp16_path))


def subgraph(model: onnx.ModelProto, inputs: dict[str, int], output: str) -> bytes:
    """The nodes computing ``output`` from ``inputs`` (name → element type) and constants."""
    producer = {o: n for n in model.graph.node for o in n.output}
    init = {t.name: t for t in model.graph.initializer}
    order = {n.output[0]: i for i, n in enumerate(model.graph.node)}
    picked, needed_init, stack, seen = {}, set(), [output], set()
    while stack:
        name = stack.pop()
        if not name or name in inputs or name in seen:
            continue
        seen.add(name)
        if name in init:
            needed_init.add(name)
            continue
        node = producer[name]
        picked[node.output[0]] = node
        stack.extend(node.input)
    nodes = sorted(picked.values(), key=lambda n: order[n.output[0]])
    graph = helper.make_graph(
        nodes, "cut",
        [helper.make_tensor_value_info(i, t, None) for i, t in inputs.items()],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, None)],
        [init[n] for n in sorted(needed_init)],
    )
    cut = helper.make_model(graph, opset_imports=model.opset_import, ir_version=model.ir_version)
    return cut.SerializeToString()




def run_cut(model: onnx.ModelProto, name: str, value: np.ndarray, output: str,
            extra: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """Run the part of ``model`` between the tensor ``name`` (fed ``value``) and ``output``."""
    feeds = {name: value, **(extra or {})}
    types = {k: helper.np_dtype_to_tensor_dtype(v.dtype) for k, v in feeds.items()}
    return run(subgraph(model, types, output), feeds)


def fake_quantize(x: np.ndarray) -> np.ndarray:
    """What DynamicQuantizeLinear does to an activation: uint8 over [min(0,x), max(0,x)]."""
    low, high = min(0.0, float(x.min())), max(0.0, float(x.max()))
    scale = (high - low) / 255.0
    zero = np.clip(np.round(-low / scale), 0, 255)
    q = np.clip(np.round(x / scale) + zero, 0, 255)
    return ((q - zero) * scale).astype(np.float32)


def nodes_of(model: onnx.ModelProto, op_type: str) -> list[onnx.NodeProto]:
    return [n for n in model.graph.node if n.op_type == op_type]


def pick(items: list, count: int) -> list:
    """``count`` items spread evenly over the list: first, last and between."""
    if len(items) <= count:
        return items
    return [items[round(i * (len(items) - 1) / (count - 1))] for i in range(count)]


def float_node(fp32_model: onnx.ModelProto, output: str) -> onnx.NodeProto:
    matches = [n for n in fp32_model.graph.node if output in n.output]
    assert len(matches) == 1, f"{output} should have one producer in the fp32 graph"
    return matches[0]




@pytest.mark.model
def test_int8_graph_has_the_documented_patterns(int8_model):
    counts = {op: len(nodes_of(int8_model, op)) for op in precisions.QUANTIZED_OPS}
    assert counts["MatMulInteger"] == 148
    assert counts["ConvInteger"] == 87
    assert counts["DynamicQuantizeLSTM"] == 6
    assert counts["DequantizeLinear"] == 4


@pytest.mark.model
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_no_quantized_ops_left_and_checker_passes(precision, fp32_model, fp16_model):
    model = fp32_model if precision == "fp32" else fp16_model
    assert precisions.quantized_op_counts(model) == {}
    onnx.checker.check_model(model)
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta[precisions.METADATA_KEY].startswith(precisions.describe_precision(precision))
    assert meta["kokoro_lab.source_sha256"] == assets.INT8_SHA256


@pytest.mark.model
def test_fp32_replaces_each_pattern_with_its_float_op(int8_model, fp32_model):
    meta = {p.key: p.value for p in fp32_model.metadata_props}
    assert meta["kokoro_lab.rewritten_ops"] == (
        "ConvInteger×87, DequantizeLinear×4, DynamicQuantizeLSTM×6, MatMulInteger×148"
    )
    # Every output the int8 patterns produced is now produced by the float op.
    for op, float_op in (("DynamicQuantizeLSTM", "LSTM"), ("DequantizeLinear", "Gather")):
        for node in nodes_of(int8_model, op):
            assert float_node(fp32_model, node.output[0]).op_type == float_op
    assert len(nodes_of(fp32_model, "LSTM")) == 6
    assert all(t.data_type != TensorProto.INT8 and t.data_type != TensorProto.UINT8
               for t in fp32_model.graph.initializer)
    # The graph's interface is unchanged.
    assert [i.name for i in fp32_model.graph.input] == [i.name for i in int8_model.graph.input]
    assert [o.name for o in fp32_model.graph.output] == ["audio"]


@pytest.mark.model
def test_fp16_islands_stay_fp32_and_the_rest_is_fp16(fp32_model, fp16_model):
    islands = fp16.fp32_islands(fp32_model)
    assert set(islands.values()) == set(fp16.FP16_FP32_ISLANDS)
    types = fp16.tensor_types(fp16_model)
    float_types = (TensorProto.FLOAT, TensorProto.FLOAT16)
    island_nodes = 0
    for node in fp16_model.graph.node:
        tensors = [n for n in (*node.input, *node.output) if types.get(n) in float_types]
        if node.output[0] in islands and tensors:
            island_nodes += 1
            assert all(types[n] == TensorProto.FLOAT for n in tensors), node.name
    assert island_nodes > 30
    # The heavy ops outside the islands really compute in fp16.
    for op in ("MatMul", "Conv", "LSTM", "ConvTranspose"):
        outside = [n for n in nodes_of(fp16_model, op) if n.output[0] not in islands]
        assert outside, op
        assert all(types[n.output[0]] == TensorProto.FLOAT16 for n in outside), op
    assert types["audio"] == TensorProto.FLOAT
    assert [i.type.tensor_type.elem_type for i in fp16_model.graph.input] == [
        TensorProto.INT64, TensorProto.FLOAT, TensorProto.FLOAT]


@pytest.mark.model
def test_derived_files_are_smaller_or_larger_as_their_precision_says(int8_path, fp32_path,
                                                                     fp16_path):
    int8, fp32, fp16 = (p.stat().st_size for p in (int8_path, fp32_path, fp16_path))
    assert 3.0 < fp32 / int8 < 4.0  # 82M weights: 1 byte → 4 bytes
    assert 0.45 < fp16 / fp32 < 0.6  # mostly 2 bytes; islands and biases stay 4


def _activation_for(node: onnx.NodeProto, model: onnx.ModelProto, rng) -> np.ndarray:
    init = {t.name: t for t in model.graph.initializer}
    weight = init[node.input[1]].dims
    if node.op_type == "MatMul":
        return rng.standard_normal((1, 23, weight[0])).astype(np.float32)
    group = next((a.i for a in node.attribute if a.name == "group"), 1)
    return rng.standard_normal((1, weight[1] * group, 37)).astype(np.float32)


@pytest.mark.model
@pytest.mark.parametrize("op", ["MatMulInteger", "ConvInteger"])
def test_matmul_and_conv_agree_with_the_integer_ops(op, int8_model, fp32_model):
    rng = np.random.default_rng(0)
    chosen = pick(nodes_of(int8_model, op), 6)
    # Make sure a bias-free conv (no int32 Add) is among those checked.
    if op == "ConvInteger":
        users = {i for n in int8_model.graph.node if n.op_type == "Add" for i in n.input}
        chosen += [n for n in nodes_of(int8_model, op) if n.output[0] not in users][:1]
    for node in chosen:
        activation = [n for n in int8_model.graph.node if node.input[0] in n.output][0].input[0]
        float_op = [n for n in fp32_model.graph.node
                    if n.op_type == op.removesuffix("Integer") and n.input[0] == activation]
        # Several ops may share one quantized activation: take the one at the same output.
        float_op = [n for n in float_op
                    if _pattern_output(int8_model, node) == n.output[0]]
        assert len(float_op) == 1, node.name
        output = float_op[0].output[0]
        x = _activation_for(float_op[0], fp32_model, rng)
        quantized = run_cut(int8_model, activation, x, output)
        float_cut = subgraph(fp32_model, {activation: TensorProto.FLOAT}, output)
        exact = run(float_cut, {activation: fake_quantize(x)})
        plain = run(float_cut, {activation: x})
        assert quantized.shape == plain.shape
        # Same input quantization → same numbers up to float rounding of the accumulation; the
        # int8 conv also rounds its bias to floor(bias / (x_scale·w_scale)), up to one step.
        tolerance = 1e-4 if op == "MatMulInteger" else 1e-3
        assert relative_error(quantized, exact) < tolerance, node.name
        # Raw input → differs only by the 8-bit activation rounding (~1% of the signal).
        assert relative_error(quantized, plain) < 0.05, node.name


def _pattern_output(model: onnx.ModelProto, node: onnx.NodeProto) -> str:
    """The final Mul output of a MatMulInteger/ConvInteger pattern."""
    current = node
    while current.op_type != "Mul":
        current = [n for n in model.graph.node if current.output[0] in n.input][0]
    return current.output[0]


@pytest.mark.model
def test_lstm_agrees_with_dynamic_quantize_lstm(int8_model, fp32_model):
    rng = np.random.default_rng(1)
    init = {t.name: t for t in int8_model.graph.initializer}
    for node in nodes_of(int8_model, "DynamicQuantizeLSTM"):
        input_size = init[node.input[1]].dims[1]
        x = (0.5 * rng.standard_normal((29, 1, input_size))).astype(np.float32)
        # Initial states computed from the token count are fed as inputs (small, nonzero).
        states = {name: (0.1 * rng.standard_normal((2, 1, 256))).astype(np.float32)
                  for name in node.input[5:7] if name and name not in init}
        output = node.output[0]
        quantized = run_cut(int8_model, node.input[0], x, output, states)
        plain = run_cut(fp32_model, node.input[0], x, output, states)
        assert quantized.shape == plain.shape == (29, 2, 1, 256)
        # The quantized LSTM also re-quantizes its hidden state at every step, so only the
        # quantization-error bound applies; a wrong W/R layout or gate order gives ~100 %.
        assert relative_error(quantized, plain) < 0.05, node.name


@pytest.mark.model
def test_embedding_gathers_are_exact(int8_model, fp32_model):
    rng = np.random.default_rng(2)
    init = {t.name: t for t in int8_model.graph.initializer}
    for node in nodes_of(int8_model, "DequantizeLinear"):
        gather = [n for n in int8_model.graph.node if node.input[0] in n.output][0]
        rows = init[gather.input[0]].dims[0]
        indices = rng.integers(0, rows, (1, 17)).astype(np.int64)
        output = node.output[0]
        quantized = run_cut(int8_model, gather.input[1], indices, output)
        plain = run_cut(fp32_model, gather.input[1], indices, output)
        np.testing.assert_array_equal(quantized, plain)


@pytest.fixture(scope="session")
def renderings(fp32_path, fp16_path):
    """{precision: [audio per sentence]} through the real Synthesizer, plus int8 in a second
    voice (the yardstick for "how different is different")."""
    from kokoro_lab import Synthesizer

    synth = Synthesizer(precision="int8", warm_up=False)
    # Fixed chunk plans, so every precision speaks exactly the same chunks.
    spoken = {p: [synth.stream(s, voice="af_heart", precision=p, adaptive=False).result()
                  for s in SENTENCES]
              for p in ("int8", "fp32", "fp16")}
    spoken["other voice"] = [synth.stream(TEXT, voice="am_adam", adaptive=False).result()]
    return spoken


@pytest.mark.model
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_derived_precision_speaks_like_int8(precision, renderings):
    from kokoro_lab.quality import log_mel_distance

    reference, result = renderings["int8"][0].audio, renderings[precision][0].audio
    assert renderings[precision][0].precision == precision
    assert np.isfinite(result).all()
    assert 0.05 < float(np.abs(result).max()) <= 1.5
    assert abs(result.size - reference.size) / reference.size < 0.05
    # A precision change must be well below a voice change on the same text (~11 dB).
    voice_change = log_mel_distance(reference, renderings["other voice"][0].audio)
    assert log_mel_distance(reference, result) < 0.6 * voice_change


@pytest.mark.model
@pytest.mark.asr
def test_every_precision_is_as_intelligible_as_fp32(renderings):
    """The issue's bar: WER by the independent ASR within +0.03 of fp32, finite audio."""
    from kokoro_lab import quality

    rates = {p: quality.corpus_wer(SENTENCES, [quality.transcribe(r.audio)
                                               for r in renderings[p]])
             for p in ("int8", "fp32", "fp16")}
    for precision, rate in rates.items():
        assert all(np.isfinite(r.audio).all() for r in renderings[precision])
        assert rate <= rates["fp32"] + 0.03, rates
    assert rates["fp32"] <= 0.2, rates  # easy sentences: fp32 itself must be understood


@pytest.mark.model
def test_fp16_tensors_outside_islands_stay_in_fp16_range(fp32_model, synth_inputs):
    """Provider-independent check: run the fp32 graph exposing every tensor; whatever fp16
    would hold must fit fp16 (|x| < 65504) with room to spare, so no GPU is needed to know the
    fp16 graph does not overflow on this sentence."""
    islands = fp16.fp32_islands(fp32_model)
    probe = onnx.ModelProto()
    probe.CopyFrom(fp32_model)
    in_fp16, everything = set(), set()
    for node in probe.graph.node:
        everything.update(n for n in node.output if n and n != "audio")
        if node.output[0] in islands or node.op_type in fp16.FP32_OPS:
            continue
        # Produced in fp16, or cast to fp16 on the way into an fp16 node.
        in_fp16.update(n for n in node.output if n)
        if node.op_type not in ("Shape", "Size", "Cast"):
            in_fp16.update(n for n in node.input if n)
    for name in sorted(everything):
        probe.graph.output.add().name = name
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    outputs = [o.name for o in session.get_outputs()]
    worst, island_max = {}, 0.0
    for name, value in zip(outputs, session.run(None, synth_inputs), strict=True):
        value = np.asarray(value)
        if value.dtype != np.float32 or not value.size:
            continue
        peak = float(np.abs(value).max())
        if name not in in_fp16:
            island_max = max(island_max, peak)
        elif peak > 16384:  # a 4x margin below 65504 for longer or louder sentences
            worst[name] = peak
    assert worst == {}
    assert island_max > 16384  # the islands are where the large values are


@pytest.fixture(scope="session")
def synth_inputs(int8_path):
    from kokoro_lab.engine.synthesizer import Tokenizer
    from kokoro_lab.engine.voices import VoiceBank, parse

    tokenizer = Tokenizer()
    tokens = tokenizer.tokenize(" ".join(tokenizer.phonemize(TEXT, "en-us").split()), limit=510)
    bank = VoiceBank(assets.voices_path())
    return {"tokens": np.array([[0, *tokens, 0]], dtype=np.int64),
            "style": bank.style(parse("af_heart"), len(tokens)),
            "speed": np.array([1.0], dtype=np.float32)}


@pytest.mark.model
def test_corrupt_cached_file_is_rebuilt(int8_path, fp32_path, tmp_path):
    target = precisions.expected_path(tmp_path, "fp32", assets.file_sha256(int8_path))
    shutil.copy(fp32_path, target)
    shutil.copy(fp32_path.with_suffix(".sha256"), target.with_suffix(".sha256"))
    stamp = target.with_suffix(".sha256").read_text()
    assert precisions.derived_model(int8_path, "fp32", tmp_path) == target  # reused as is
    with open(target, "r+b") as handle:  # an interrupted copy: half the file
        handle.truncate(target.stat().st_size // 2)
    stale = target.with_name(target.name.replace(f"-r{precisions.REWRITE_VERSION}.", "-r0."))
    stale.write_bytes(b"built by an older rewriter")
    rebuilt = precisions.derived_model(int8_path, "fp32", tmp_path)
    assert rebuilt == target
    assert assets.file_sha256(target) == stamp == target.with_suffix(".sha256").read_text()
    onnx.checker.check_model(str(target))
    assert not list(tmp_path.glob(".*.part"))  # no temporary files left behind
    assert not stale.exists()  # older revisions of the same derivation are cleaned up
