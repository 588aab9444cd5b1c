"""The profiling lab: the runner and audit on the real model, the run log's guarantees.

Every test that writes a run log points ``KOKORO_LAB_DATA`` at a temporary folder, so the
user's own log is never touched.
"""

from __future__ import annotations

import html
import math
import multiprocessing
import sqlite3
import threading

import numpy as np
import pytest

from kokoro_lab.engine.sessions import ProviderUnavailable
from kokoro_lab.profiling import plots, runlog
from kokoro_lab.profiling.audit import PlacementReport, audit, fallback_warning, parse_profile
from kokoro_lab.profiling.runner import Cell, Measurement, ProfileReport, profile
from tests.conftest import ipython_shell

TEXT = "Hello there, world."


@pytest.fixture(autouse=True)
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(runlog.DATA_ENV, str(tmp_path / "data"))
    return tmp_path / "data"


# --------------------------------------------------------------------------------------------
# runner


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """int8 and fp32 on the CPU, plus CUDA (absent on CPU-only machines), two repeats."""
    path = tmp_path_factory.mktemp("log") / "runs.sqlite"
    return profile(TEXT, providers=["cpu", "cuda"], precisions=["int8", "fp32"], repeats=2,
                   progress=False, run_log=path)


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


def test_profile_rejects_bad_arguments_before_loading_anything():
    with pytest.raises(ValueError, match="repeats"):
        profile(TEXT, providers=["cpu"], precisions=["int8"], repeats=0)
    with pytest.raises(ValueError, match="unknown precision 'int4'"):
        profile(TEXT, providers=["cpu"], precisions=["int4"])
    with pytest.raises(ProviderUnavailable, match="unknown provider 'cdua'"):
        profile(TEXT, providers=["cdua"], precisions=["int8"])
    with pytest.raises(ValueError, match="text"):
        profile("  ", providers=["cpu"], precisions=["int8"])


def _fake_report(quality: dict | None = None, absent: list | None = None) -> ProfileReport:
    chunks = [
        {"index": 0, "phonemes": 20, "start_ms": 0.0, "ready_ms": 500.0, "synthesis_ms": 500.0,
         "audio_ms": 300.0, "rtf": 1.67},
        {"index": 1, "phonemes": 80, "start_ms": 500.0, "ready_ms": 1200.0,
         "synthesis_ms": 700.0, "audio_ms": 1500.0, "rtf": 0.47},
    ]
    figures = {"first_audio_ms": 510.0, "first_chunk_ms": 500.0, "rtf": 0.67,
               "synthesis_ms": 1200.0, "audio_ms": 1800.0, "total_ms": 1200.0,
               "underrun_ms": 400.0}
    cell = Cell("cpu", "int8", "int8", 100.0, 50.0, ["CPUExecutionProvider"],
                runs=[Measurement(0, 0, figures, chunks)], quality=dict(quality or {}))
    return ProfileReport("x", "af_heart", 1, [cell], list(absent or []), machine={})


JUDGED = {"wer": 0.0, "pesq_wb": 3.91, "pesq_wb_min": 3.5, "dnsmos_ovrl": 3.3,
          "dnsmos_sig": 3.6, "dnsmos_bak": 4.0, "dnsmos_p808": 3.8, "finite": 1.0}
REFERENCE = {"label": "kokoro-onnx create, fp32 graph on cpu", "precision": "fp32",
             "wer": 0.0, "dnsmos_ovrl": 3.4, "dnsmos_sig": 3.7, "dnsmos_bak": 4.0,
             "dnsmos_p808": 3.9}


def test_a_judged_report_reads_speed_and_quality_side_by_side(tmp_path):
    from kokoro_lab.profiling.runner import Absent

    reason = ("provider 'cuda' (CUDAExecutionProvider) is not available in this onnxruntime "
              "build; available: cpu. Install ONNX Runtime's GPU build in place of the CPU one "
              "(make setup GPU=1); `kokoro-lab doctor` checks the result.")
    report = _fake_report(JUDGED, [Absent("cuda", "int8", reason)])
    report.reference = REFERENCE
    table = report.markdown().splitlines()
    assert table[0].count("|") == table[1].count("|") == table[2].count("|") == table[3].count(
        "|")  # the absent row has a cell under every column
    assert "| 0.00 | 3.91 (3.50) | 3.30 / 3.60 / 3.80 | int8 |" in table[2]
    assert "DNSMOS OVRL / SIG / P.808 3.40 / 3.70 / 3.90" in table[-1]
    bars = plots.bars(report)
    titles = [a.text for a in bars.layout.annotations]
    assert {"PESQ-WB vs reference", "DNSMOS OVRL", "word error rate (ASR)",
            "time to first audio (ms)"} <= set(titles)
    assert [t.y[0] for t in bars.data if t.yaxis in ("y4", "y5", "y6")] == [3.91, 3.3, 0.0]
    reference_lines = [s.y0 for s in bars.layout.shapes if s.line.dash == "dash"]
    assert reference_lines == [3.4, 0.0]  # DNSMOS OVRL and WER of the reference
    # The absent note keeps every word of the reason, wrapped between words.
    note = next(a.text for a in bars.layout.annotations if a.text.startswith("absent cuda"))
    assert " ".join(note.replace("<br>", " ").split()) == html.escape(
        f"absent cuda (int8): {reason}")
    page = report.write_html(tmp_path / "profile.html").read_text(encoding="utf-8")
    assert "pesq_wb" in page and "rendered whole by kokoro-onnx" in page


def test_an_unjudged_report_keeps_its_speed_only_table():
    report = _fake_report()
    assert "PESQ" not in report.markdown() and not report.judged
    assert len({t.yaxis for t in plots.bars(report).data}) == 3  # one row of panels
    assert plots.bars(report).layout.title.text.startswith("1 cell × 1 repeat ·")


def test_timeline_draws_the_stall_after_playback_began_in_the_latency_charts_colours():
    from kokoro_lab.notebook import chart

    report = _fake_report()
    spans, stalls = plots.playback_schedule(report.cells[0].runs[0].chunks)
    # chunk 0 plays 500–800 ms; chunk 1 is ready at 1200 ms: a 400 ms stall
    assert spans == [(500.0, 800.0), (1200.0, 2700.0)]
    assert stalls == [(800.0, 1200.0)]
    fig = plots.timeline(report)
    lanes = {t.name: t for t in fig.data}
    assert (list(lanes["stall"].base), list(lanes["stall"].x)) == ([800.0], [400.0])
    # the %%speak chart's colours: one reading of a colour everywhere
    assert lanes["synthesis"].marker.color == chart.SYNTHESIS
    assert lanes["playing"].marker.color == chart.AUDIO
    assert lanes["stall"].marker.color == chart.STALL
    (first_audio,) = fig.layout.shapes
    assert first_audio.x0 == 510.0 and first_audio.line.color == chart.FIRST
    assert list(fig.layout.yaxis.categoryarray) == ["playback", "synthesis"]  # synthesis on top


# --------------------------------------------------------------------------------------------
# placement audit


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


def _event(name, op, provider, dur, ts):
    return {"cat": "Node", "name": f"{name}_kernel_time", "dur": dur, "ts": ts,
            "args": {"op_name": op, "provider": provider}}


def test_parse_profile_counts_only_the_last_run_and_warns_on_fallback():
    events = [
        {"cat": "Session", "name": "model_run", "ts": 0, "dur": 100},
        _event("conv_0", "ConvInteger", "CPUExecutionProvider", 999, 10),  # the warm-up run
        {"cat": "Session", "name": "model_run", "ts": 200, "dur": 100},
        _event("conv_0", "ConvInteger", "CPUExecutionProvider", 60, 210),
        _event("mm_0", "MatMul", "CUDAExecutionProvider", 30, 220),
        _event("copy", "MemcpyToHost", "CUDAExecutionProvider", 10, 230),
        {"cat": "Node", "name": "conv_0_fence_before", "ts": 209, "dur": 1, "args": {}},
    ]
    nodes = parse_profile(events)
    assert {(n.name, n.provider, n.time_us) for n in nodes} == {
        ("conv_0", "CPUExecutionProvider", 60.0), ("mm_0", "CUDAExecutionProvider", 30.0),
        ("copy", "CUDAExecutionProvider", 10.0)}
    report = PlacementReport("cuda", "int8", ["CUDAExecutionProvider",
                                                        "CPUExecutionProvider"], nodes)
    assert report.cpu_share() == pytest.approx(0.6)
    assert report.ops_on("CPUExecutionProvider") == ["ConvInteger"]
    warning = fallback_warning(report)
    assert "60%" in warning and "ConvInteger" in warning and "fp32 or fp16" in warning
    report.nodes[0].time_us = 20.0  # now most work is on CUDA
    assert fallback_warning(report) is None


# --------------------------------------------------------------------------------------------
# run log


def test_runlog_lives_in_the_data_dir_override(data_dir):
    assert runlog.default_path() == data_dir / "runs.sqlite"
    assert runlog.runs() == []  # no file yet: nothing logged, nothing created
    assert not runlog.default_path().exists()


def test_runlog_schema_and_round_trip(tmp_path):
    log = runlog.RunLog(tmp_path / "runs.sqlite")
    first = log.record("profile", "cpu", "int8", {"rtf": 0.8, "first_audio_ms": 900.0,
                                                  "nan": float("nan")},
                       model="int8, released", text="hi", batch="b1")
    log.record("bench", "cpu", "fp32", {"rtf": 0.9}, batch="b2")
    with sqlite3.connect(log.path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == runlog.SCHEMA_VERSION
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        columns = [row[1] for row in db.execute("PRAGMA table_info(runs)")]
    assert columns == list(runlog._COLUMNS)
    rows = log.runs()
    assert [r.kind for r in rows] == ["bench", "profile"]  # newest first
    row = log.runs(kind="profile")[0]
    assert row.id == first and row.batch == "b1" and row.text == "hi"
    assert row.figures == {"rtf": 0.8, "first_audio_ms": 900.0, "nan": None}
    machine = runlog.machine_info()
    assert row.machine == machine["machine"] and row.cpu == machine["cpu"]
    assert row.versions["onnxruntime"] and row.versions["numpy"]
    assert row.flat()["rtf"] == 0.8
    assert log.runs(precision="fp32", limit=5)[0].figures == {"rtf": 0.9}
    with pytest.raises(ValueError):
        log.record("", "cpu", "int8", {})


def test_runlog_compares_machines(tmp_path):
    here, there = runlog.RunLog(tmp_path / "a.sqlite"), runlog.RunLog(tmp_path / "b.sqlite")
    for rtf in (0.8, 0.9, 1.0):
        here.record("profile", "cpu", "int8", {"rtf": rtf})
    there.record("profile", "cuda", "fp16", {"rtf": 0.02},
                 machine={"machine": "gpu-box", "gpu": "NVIDIA H100"})
    table = runlog.compare("rtf", paths=[here.path, there.path])
    me = runlog.machine_info()["machine"]
    assert table[(me, "cpu", "int8")] == {"median": 0.9, "min": 0.8, "max": 1.0, "runs": 3}
    assert table[("gpu-box", "cuda", "fp16")]["median"] == 0.02
    assert there.runs()[0].gpu == "NVIDIA H100"
    assert "gpu-box" in runlog.Runs(here.runs() + there.runs()).markdown()


def _write_many(path: str, worker: int, count: int) -> None:
    log = runlog.RunLog(path)
    for i in range(count):
        log.record("profile", "cpu", "int8", {"worker": worker, "i": i})


def test_runlog_concurrent_writers_lose_nothing(tmp_path):
    path = str(tmp_path / "runs.sqlite")  # created by whichever writer comes first
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_write_many, args=(path, w, 15)) for w in range(3)]
    threads = [threading.Thread(target=_write_many, args=(path, 10 + w, 15)) for w in range(3)]
    for worker in processes + threads:
        worker.start()
    for worker in processes + threads:
        worker.join(timeout=120)
    assert all(p.exitcode == 0 for p in processes)
    rows = runlog.RunLog(path).runs()
    assert len(rows) == 6 * 15 and len({r.id for r in rows}) == 6 * 15
    pairs = {(r.figures["worker"], r.figures["i"]) for r in rows}
    assert pairs == {(w, i) for w in (0, 1, 2, 10, 11, 12) for i in range(15)}


def test_runlog_corrupt_file_is_reported_and_left_alone(tmp_path):
    path = tmp_path / "runs.sqlite"
    garbage = b"this is not an SQLite database\x00" * 200
    path.write_bytes(garbage)
    log = runlog.RunLog(path)
    with pytest.raises(runlog.RunLogError, match="not a readable kokoro-lab run log") as info:
        log.runs()
    assert str(path) in str(info.value) and "untouched" in str(info.value)
    with pytest.raises(runlog.RunLogError):
        log.record("profile", "cpu", "int8", {"rtf": 1.0})
    assert path.read_bytes() == garbage


def test_runlog_damaged_pages_are_reported_and_left_alone(tmp_path):
    path = tmp_path / "runs.sqlite"
    log = runlog.RunLog(path)
    for i in range(40):  # enough rows for a dozen pages
        log.record("profile", "cpu", "int8", {"i": i, "pad": "x" * 1500})
    with sqlite3.connect(path) as db:  # fold the WAL into the main file first
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(path.read_bytes())
    page = 4096
    data[2 * page: 6 * page] = b"\xff" * (4 * page)
    path.write_bytes(bytes(data))
    with pytest.raises(runlog.RunLogError, match="untouched"):
        log.runs()
    assert path.read_bytes() == bytes(data)


def test_runlog_refuses_foreign_and_newer_files(tmp_path):
    foreign = tmp_path / "other.sqlite"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE notes (x)")
    before = foreign.read_bytes()
    with pytest.raises(runlog.RunLogError, match="not a kokoro-lab run log.*notes"):
        runlog.RunLog(foreign).record("profile", "cpu", "int8", {})
    assert foreign.read_bytes() == before
    newer = tmp_path / "newer.sqlite"
    runlog.RunLog(newer).record("profile", "cpu", "int8", {})
    with sqlite3.connect(newer) as db:
        db.execute(f"PRAGMA user_version = {runlog.SCHEMA_VERSION + 1}")
    with pytest.raises(runlog.RunLogError, match="newer kokoro-lab"):
        runlog.RunLog(newer).runs()


# --------------------------------------------------------------------------------------------
# front doors


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


def test_cli_rejects_unknown_provider(capsys):
    from kokoro_lab.cli import main

    assert main(["profile", "Hi.", "--providers", "nope", "--no-progress"]) == 1
    assert "unknown provider 'nope'" in capsys.readouterr().err


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
