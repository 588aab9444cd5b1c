"""The profiling lab without the model: reports, tables and figures from made-up cells, and the
run log's guarantees (schema, concurrent writers, a reader racing the first writer, damaged
files left alone). Every run log lives in a temporary ``KOKORO_LAB_DATA``.
"""


from __future__ import annotations

import html
import multiprocessing
import sqlite3
import threading

import pytest

from kokoro_lab.engine.sessions import ProviderUnavailable
from kokoro_lab.profiling import plots, runlog
from kokoro_lab.profiling.audit import PlacementReport, fallback_warning, parse_profile
from kokoro_lab.profiling.runner import Cell, Measurement, ProfileReport, profile
from tests.profiling_support import JUDGED, REFERENCE, TEXT, data_dir, report

__all__ = ['data_dir', 'report']  # fixtures, used by name








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


def test_runlog_reader_racing_the_first_writer_is_not_refused(tmp_path, monkeypatch):
    """The race made certain rather than lucky: another process's first write commits the
    schema between the reader's look at the version and its look at the tables. One read
    transaction must see one snapshot (an empty log), not "version 0, tables: runs"."""
    path = tmp_path / "runs.sqlite"
    with sqlite3.connect(path) as db:  # an empty log in WAL mode, as the first writer leaves it
        db.execute("PRAGMA journal_mode = WAL")
    real_tables, raced = runlog._tables, []

    def tables_after_a_writer_commits(connection):
        if not raced and threading.current_thread() is threading.main_thread():
            raced.append(True)
            writer = threading.Thread(target=_write_many, args=(str(path), 7, 1))
            writer.start()
            writer.join(timeout=60)
            assert not writer.is_alive()
        return real_tables(connection)

    monkeypatch.setattr(runlog, "_tables", tables_after_a_writer_commits)
    rows = runlog.RunLog(path).runs()  # raised "not a kokoro-lab run log" before the fix
    assert raced and [r.figures["worker"] for r in rows] in ([], [7])
    assert [r.figures["worker"] for r in runlog.RunLog(path).runs()] == [7]


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


def test_cli_rejects_unknown_provider(capsys):
    from kokoro_lab.cli import main

    assert main(["profile", "Hi.", "--providers", "nope", "--no-progress"]) == 1
    assert "unknown provider 'nope'" in capsys.readouterr().err
