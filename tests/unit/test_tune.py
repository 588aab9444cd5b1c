"""``kokoro-lab tune``'s decisions, on made-up measurements: the certificate, the winner, and
what is saved (never a candidate that failed, never on a busy machine unless forced)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kokoro_lab.engine import tuning
from kokoro_lab.engine.tuning import Tuning
from kokoro_lab.profiling import tune as tune_module
from kokoro_lab.profiling.tune import TuneRow


def _row(name: str, ms: float, pesq: float = 4.4, dnsmos: float = 0.0) -> TuneRow:
    row = TuneRow(Tuning(variant="matmul-fused", name=name), ms_per_audio_s=ms,
                  speedup=440 / ms, pesq_mean=pesq, pesq_min=pesq - 0.1, dnsmos_delta=dnsmos)
    return row


def test_the_certificate_names_what_failed(monkeypatch):
    monkeypatch.setattr(tune_module.quality, "pesq_wb", lambda ref, deg: 3.5)
    monkeypatch.setattr(tune_module.quality, "dnsmos", lambda audio: {"ovrl": 3.0})
    row = TuneRow(Tuning(name="x"), ms_per_audio_s=500.0, speedup=0.9)
    audio = {("t", "v"): tune_module.np.zeros(100, "float32")}
    tune_module._judge(row, audio, audio)
    assert not row.passed
    assert "PESQ-WB 3.50" in row.note and "slower than the released graph" in row.note


@pytest.mark.parametrize("busy, force, saved", [(0.05, False, True), (0.6, False, False),
                                                 (0.6, True, True)])
def test_the_fastest_passing_candidate_is_saved_unless_the_machine_was_busy(
        monkeypatch, tmp_path, busy, force, saved):
    monkeypatch.setenv(tuning.CONFIG_ENV, str(tmp_path))
    rows = {"slow": _row("slow", 300.0), "fast but bad": _row("fast but bad", 150.0),
            "fast": _row("fast", 200.0)}
    rows["slow"].passed = rows["fast"].passed = True
    rows["fast but bad"].note = "PESQ-WB under the bar"

    class Baseline:
        def __init__(self, tuning):
            self.tuning = tuning

        def row(self):
            return TuneRow(self.tuning, ms_per_audio_s=440.0, speedup=1.0, passed=True)

    monkeypatch.setattr(tune_module, "_Measured", Baseline)
    monkeypatch.setattr(tune_module, "candidates", lambda: [r.tuning for r in rows.values()])
    monkeypatch.setattr(tune_module, "_measure", lambda t, baseline, repeats: rows[t.name])
    monkeypatch.setattr(tune_module._OtherProcesses, "share", lambda self: busy)
    report = tune_module.tune(budget_s=60, force=force, progress=False)
    assert report.winner is rows["fast"] and report.noisy == (busy > tune_module.BUSY_SHARE)
    assert (report.saved is not None) == saved
    if saved:
        assert tuning.load_profile().name == "fast"
    table = report.markdown()
    assert "**winner**" in table and "PESQ-WB under the bar" in table


def test_the_candidates_try_the_likeliest_winners_first():
    names = [t.name for t in tune_module.candidates()]
    assert names[:4] == ["matmul-fused-kernel, no spinning", "matmul-fused-poly-stft, no spinning",
                         "matmul-fused-poly, no spinning", "matmul-fused, no spinning"]
    assert "released, no spinning" in names


def test_the_report_names_the_saved_profile_without_this_machines_home():
    """tune's table gets committed to benchmarks/results: no home directory in it."""
    saved = Path.home() / ".config" / "kokoro-lab" / "tuning.json"
    text = tune_module.TuneReport(rows=[], winner=None, others_busy=0.0, noisy=False,
                                  saved=str(saved)).markdown()
    assert "saved as this machine's profile: ~/.config/kokoro-lab/tuning.json" in text
    assert str(Path.home()) + "/" not in text
