"""The split of the real Kokoro graph before the vocoder, the timed graph and windowed
decoding, on one short phrase (one session-scoped decoder, a handful of generator runs).
"""


from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from kokoro_lab.engine import split
from kokoro_lab.lab import windowed
from kokoro_lab.lab.windowed import WindowError
from kokoro_lab.quality import join_discontinuities, log_mel_distance
from tests.split_support import PHRASE


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
