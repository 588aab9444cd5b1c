"""The profiling lab on the real model: the runner across cells, judged rows, the reference
rendering and the audit of node placement. Every run log lives in a temporary
``KOKORO_LAB_DATA``.
"""


from __future__ import annotations

import math

import numpy as np
import pytest

from kokoro_lab.profiling import runlog
from kokoro_lab.profiling.audit import audit
from kokoro_lab.profiling.runner import profile
from tests.conftest import ipython_shell
from tests.profiling_support import TEXT, data_dir, report

__all__ = ['data_dir', 'report']  # fixtures, used by name








@pytest.mark.model
def test_profile_runs_every_available_cell_alternating(report):
    assert [c.key for c in report.cells][:2] == ["cpu/int8", "cpu/fp32"]
    for cell in report.cells:
        assert len(cell.runs) == 2
        assert cell.load_ms > 0 and cell.warmup_ms > 0
        assert "dequantized" in cell.model if cell.precision == "fp32" else True
        for run in cell.runs:
            f = run.figures
            assert all(math.isfinite(v) for v in f.values()), f
            assert 0 < f["first_chunk_ms"] <= f["first_audio_ms"] < f["total_ms"] + 1000
            assert f["rtf"] == pytest.approx(f["synthesis_ms"] / f["audio_ms"])
            assert f["audio_ms"] > 500  # three words are more than half a second of speech
            assert len(run.chunks) == f["chunks"] >= 1
            assert all(c["ready_ms"] >= c["start_ms"] >= 0 for c in run.chunks)
    # the order rotates between repeats so no cell always runs first
    cpu_cells = [c for c in report.cells if c.provider == "cpu"]
    assert [m.order for m in cpu_cells[0].runs] == [0, 1]
    assert [m.order for m in cpu_cells[1].runs] == [1, 0]


@pytest.mark.model
def test_profile_explains_absent_gpu_rows(report):
    from kokoro_lab.engine.sessions import available_providers

    if "cuda" in available_providers():
        pytest.skip("CUDA is available here")
    absent = {(a.provider, a.precision): a.reason for a in report.absent}
    assert set(absent) == {("cuda", "int8"), ("cuda", "fp32")}
    assert all("not available in this onnxruntime build" in reason
               for reason in absent.values())
    assert "| cuda | int8, fp32 | — |" in report.markdown()  # one line per provider
    assert any(row.get("absent") for row in report.summary())


@pytest.mark.model
def test_profile_is_logged_and_plotted(report, tmp_path):
    logged = runlog.RunLog(report.run_log).runs(batch=report.batch)
    assert {(r.provider, r.precision) for r in logged} == {(c.provider, c.precision)
                                                           for c in report.cells}
    for row in logged:
        cell = next(c for c in report.cells if c.key == f"{row.provider}/{row.precision}")
        assert row.figures["rtf"] == pytest.approx(cell.spread("rtf")["median"])
        assert row.figures["runs"] == 2 and row.text == TEXT and row.model == cell.model
    figures = report.figures()
    assert set(figures) == {"bars", "rtf_vs_length", "timeline"}
    bars = figures["bars"]
    assert {t.name for t in bars.data} == {"cpu"}
    assert all(t.error_y.array is not None for t in bars.data if t.xaxis == "x")
    chunks = sum(len(m.chunks) for c in report.cells for m in c.runs)
    assert sum(len(t.x) for t in figures["rtf_vs_length"].data) == chunks
    page = report.write_html(tmp_path / "profile.html").read_text(encoding="utf-8")
    assert "plotly" in page and "cpu" in page


@pytest.mark.asr
@pytest.mark.model
def test_profile_judges_each_row_by_ear_and_logs_it(tmp_path):
    from kokoro_lab.profiling.judges import reference_rendering

    report = profile(TEXT, providers=["cpu"], precisions=["int8"], repeats=1, progress=False,
                     run_log=tmp_path / "runs.sqlite", quality=True)
    (int8,) = report.cells
    scores = int8.quality
    assert scores["finite"] == 1.0 and scores["pesq_chunks"] >= 1
    assert 0.0 <= scores["wer"] <= 0.34  # "hello there world": at most one word wrong
    assert 1.0 <= scores["pesq_wb_min"] <= scores["pesq_wb"] <= 4.65
    for name in ("ovrl", "sig", "bak", "p808"):
        assert 1.0 <= scores[f"dnsmos_{name}"] <= 5.0
    reference = report.reference
    assert reference["label"] == "kokoro-onnx create, fp32 graph on cpu"
    assert 1.0 <= reference["dnsmos_ovrl"] <= 5.0 and reference["wer"] <= 0.34
    assert reference_rendering(TEXT, "af_heart").cached  # rendered once, then cached
    # Shown beside the speed figures, and stored in the run log.
    table = report.markdown()
    assert "| WER | PESQ-WB mean (min) | DNSMOS OVRL / SIG / P.808 |" in table
    assert f"{int8.quality['pesq_wb']:.2f} ({int8.quality['pesq_wb_min']:.2f})" in table
    assert "rendered whole by kokoro-onnx create, fp32 graph on cpu" in table
    (logged,) = runlog.RunLog(report.run_log).runs(batch=report.batch)
    for name in ("wer", "pesq_wb", "pesq_wb_min", "dnsmos_ovrl", "dnsmos_sig", "dnsmos_p808"):
        assert logged.figures[name] == pytest.approx(scores[name])
    assert logged.figures["reference_dnsmos_ovrl"] == pytest.approx(reference["dnsmos_ovrl"])


@pytest.mark.model
def test_pesq_compares_each_chunk_with_its_text_rendered_whole():
    from types import SimpleNamespace

    from kokoro_lab.profiling.judges import chunk_pesq, reference_rendering

    texts = ["Hello there,", "how are you today?"]
    same = [SimpleNamespace(text=t, audio=reference_rendering(t, "af_heart").audio)
            for t in texts]
    scores = chunk_pesq(same, "af_heart")
    assert scores["pesq_chunks"] == 2 and scores["pesq_wb_min"] > 4.5  # heard as the same
    other = [SimpleNamespace(text=t, audio=reference_rendering(t, "bm_george").audio)
             for t in texts]
    scores = chunk_pesq(other, "af_heart")  # another voice saying the same words
    assert scores["pesq_wb"] < 3.0 and scores["pesq_wb_min"] <= scores["pesq_wb"]
    short = [SimpleNamespace(text="Hi.", audio=np.zeros(1000, np.float32))]
    assert chunk_pesq(short, "af_heart")["pesq_chunks"] == 0  # too short for PESQ: left out






@pytest.mark.model
def test_audit_lists_node_placement_on_cpu():
    report = audit("int8", "cpu", text="Hello.", warn=False)
    assert report.active_providers == ["CPUExecutionProvider"]
    assert len(report.nodes) > 500 and report.graph_nodes > 1000
    assert set(report.by_provider()) == {"CPUExecutionProvider"}
    assert report.cpu_share() == pytest.approx(1.0)
    ops = {row["op_type"] for row in report.by_op()}
    # int8's integer ops, as ORT runs them (MatMulInteger is fused into these two)
    assert {"ConvInteger", "DynamicQuantizeLSTM", "DynamicQuantizeLinear"} <= ops
    assert {"MatMulIntegerToFloat", "DynamicQuantizeMatMul"} & ops
    assert report.warning is None
    assert "ConvInteger" in report.markdown(top=50)


@pytest.mark.model
def test_cli_profile_and_runs(capsys, data_dir):
    from kokoro_lab.cli import main

    assert main(["profile", "Hello.", "--providers", "cpu", "--precisions", "int8",
                 "--repeats", "1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "| cpu | int8 |" in out and "logged as batch" in out
    assert main(["runs", "--json"]) == 0
    assert '"precision": "int8"' in capsys.readouterr().out
    assert main(["runs"]) == 0
    assert "cpu/int8" in capsys.readouterr().out


@pytest.mark.model
def test_speak_profile_magic_shows_figures(monkeypatch):
    import plotly.io as pio

    # a notebook kernel sets this itself; a bare shell has no renderer
    monkeypatch.setattr(pio.renderers, "default", "plotly_mimetype")

    from kokoro_lab.notebook.profile_magic import ProfileMagics

    shell = ipython_shell()
    shell.register_magics(ProfileMagics(shell=shell))
    shown = []
    monkeypatch.setattr(shell.display_pub, "publish", lambda data, **kw: shown.append(data))
    # a terminal shell shows text/plain only; a notebook front end accepts every type
    monkeypatch.setattr(shell.display_formatter, "active_types",
                        shell.display_formatter.format_types)
    shell.run_line_magic("speak_profile", "-p cpu -P int8 -r 1 --no-log Hello.")
    report = shell.user_ns["_speak_profile"]
    assert [c.key for c in report.cells] == ["cpu/int8"] and report.batch is None
    kinds = ["table" if "text/markdown" in d else "figure"
             for d in shown if "text/markdown" in d or "application/vnd.plotly.v1+json" in d]
    assert kinds == ["table", "figure", "figure", "figure"]  # the table first, then figures
    assert "| cpu | int8 |" in next(d["text/markdown"] for d in shown if "text/markdown" in d)
    from IPython.core.error import UsageError

    with pytest.raises(UsageError, match="repeats"):
        shell.run_line_magic("speak_profile", "-r 0 Hello.")
