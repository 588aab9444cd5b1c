"""Helpers the unit and model tests of profiling share."""

from __future__ import annotations

import pytest

from kokoro_lab.profiling import runlog
from kokoro_lab.profiling.runner import profile

TEXT = "Hello there, world."


@pytest.fixture(autouse=True)
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(runlog.DATA_ENV, str(tmp_path / "data"))
    return tmp_path / "data"


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """int8 and fp32 on the CPU, plus CUDA (absent on CPU-only machines), two repeats."""
    path = tmp_path_factory.mktemp("log") / "runs.sqlite"
    return profile(TEXT, providers=["cpu", "cuda"], precisions=["int8", "fp32"], repeats=2,
                   progress=False, run_log=path)


JUDGED = {"wer": 0.0, "pesq_wb": 3.91, "pesq_wb_min": 3.5, "dnsmos_ovrl": 3.3,
          "dnsmos_sig": 3.6, "dnsmos_bak": 4.0, "dnsmos_p808": 3.8, "finite": 1.0}


REFERENCE = {"label": "kokoro-onnx create, fp32 graph on cpu", "precision": "fp32",
             "wer": 0.0, "dnsmos_ovrl": 3.4, "dnsmos_sig": 3.7, "dnsmos_bak": 4.0,
             "dnsmos_p808": 3.9}
