"""This machine's tuning profile (saved, trusted only on the same CPU, never when corrupt) and
the chunk cache (bounded, least recently used out, read-only audio)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from kokoro_lab.engine import tuning
from kokoro_lab.engine.cache import ChunkCache
from kokoro_lab.engine.tuning import OFF, Tuning, TuningWarning, built_in


@pytest.fixture
def config(tmp_path, monkeypatch):
    monkeypatch.setenv(tuning.CONFIG_ENV, str(tmp_path))
    return tmp_path


def test_a_saved_profile_is_used_on_this_cpu(config):
    path = tuning.save_profile(Tuning(variant="released", spinning=False, name="fast"))
    assert path == config / tuning.PROFILE_FILE
    loaded = tuning.resolve("auto", ("released",))
    assert loaded.name == "fast" and not loaded.spinning and str(path) in loaded.source
    assert tuning.resolve("off") is OFF


def test_no_profile_means_the_built_in_tuning(config):
    assert tuning.resolve(None) == built_in() == tuning.resolve("auto")
    assert built_in().variant in ("released", "matmul-exact")  # only what needs no judging
    assert not built_in().spinning


@pytest.mark.parametrize("damage, why", [
    (lambda data: {**data, "cpu": {**data["cpu"], "model": "Some Other CPU"}}, "another CPU"),
    (lambda data: {**data, "version": 0}, "format version"),
    (lambda data: {**data, "tuning": {**data["tuning"], "variant": "gone"}}, "not one"),
])
def test_a_profile_that_must_not_be_trusted_is_refused_loudly(config, damage, why):
    path = tuning.save_profile(Tuning(name="x"))
    path.write_text(json.dumps(damage(json.loads(path.read_text()))))
    with pytest.warns(TuningWarning, match=why):
        assert tuning.resolve("auto", ("released",)) == built_in()


def test_a_by_ear_certificate_holds_only_for_the_graph_version_it_was_judged_on(config):
    from kokoro_lab.engine.graphs.variants import VARIANTS_VERSION

    known = ("released", "matmul-exact", "matmul-fused-poly")
    path = tuning.save_profile(Tuning(variant="matmul-fused-poly", name="poly"))
    assert tuning.resolve("auto", known).name == "poly"
    for graphs in (VARIANTS_VERSION - 1, None):  # an older graph; a profile from before versions
        data = json.loads(path.read_text())
        path.write_text(json.dumps({**data, "graphs": graphs}))
        with pytest.warns(TuningWarning, match=f"passed by ear on another version \\(graphs "
                                               f"{graphs}\\) than .* \\(graphs {VARIANTS_VERSION}"):
            assert tuning.resolve("auto", known) == built_in()
    tuning.save_profile(Tuning(variant="matmul-exact", name="exact"))  # exact: no certificate
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "graphs": VARIANTS_VERSION - 1}))
    assert tuning.resolve("auto", known).name == "exact"


def test_a_kernel_variants_certificate_holds_only_for_the_kernel_source_it_was_judged_on(config):
    path = tuning.save_profile(Tuning(variant="matmul-fused-kernel", name="kernel"))
    data = json.loads(path.read_text())
    assert data["kernel"] and data["graphs"]
    path.write_text(json.dumps({**data, "kernel": "an older kernel"}))
    with pytest.warns(TuningWarning, match="another version \\(kernel an older kernel\\)"):
        assert tuning.resolve("auto", ("released", "matmul-fused-kernel")) == built_in()


def test_a_corrupt_profile_is_refused_and_left_for_tune_to_replace(config):
    path = tuning.save_profile(Tuning(name="x"))
    path.write_text("{not json")
    with pytest.warns(TuningWarning, match="corrupt"):
        assert tuning.resolve("auto") == built_in()
    assert path.read_text() == "{not json"


def test_a_profile_whose_kernel_cannot_be_built_is_refused_loudly(config, monkeypatch):
    from kokoro_lab.engine.graphs import native

    def unavailable():
        raise native.NativeUnavailable("no C++ compiler (set CXX, or install g++)")

    monkeypatch.setattr(native, "library_path", unavailable)
    tuning.save_profile(Tuning(variant="matmul-fused-kernel", name="kernel"))
    with pytest.warns(TuningWarning, match="needs the fused kernel: no C\\+\\+ compiler"):
        assert tuning.resolve("auto", ("released", "matmul-fused-kernel")) == built_in()


def test_bad_tuning_arguments_are_refused():
    with pytest.raises(ValueError, match="'auto', 'off' or a Tuning"):
        tuning.resolve("fastest")
    with pytest.raises(ValueError, match="unknown graph variant 'nope'"):
        tuning.resolve(Tuning(variant="nope"), ("released",))
    assert "no spinning" in Tuning(name="t", spinning=False).label


def _made(seconds: float, value: float = 0.1):
    audio = np.full(int(seconds * 24000), value, np.float32)
    return SimpleNamespace(finished_audio=SimpleNamespace(audio=audio))


def test_the_chunk_cache_is_bounded_and_drops_the_least_recently_used():
    one_second = 24000 * 4
    cache = ChunkCache(max_bytes=3 * one_second)
    for key in "abc":
        cache.put(key, _made(1.0))
    assert cache.get("a") is not None  # a is now the most recently used
    cache.put("d", _made(1.0))
    assert cache.get("b") is None and cache.get("a") is not None and len(cache) == 3
    assert cache.bytes <= cache.max_bytes
    cache.put("huge", _made(10.0))  # larger than the whole cache: not kept
    assert cache.get("huge") is None
    assert (cache.hits, cache.misses) == (2, 2)


def test_cached_audio_is_read_only():
    cache = ChunkCache()
    made = _made(0.5)
    cache.put("k", made)
    with pytest.raises(ValueError):
        cache.get("k").finished_audio.audio[0] = 1.0
    with pytest.raises(ValueError, match="positive"):
        ChunkCache(max_bytes=0)
