"""Batch rendering with the real model on a process pool and on a real Dask ``LocalCluster``
(two worker processes on loopback): kill a worker mid-run, resume, check every audio file.
"""


from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from kokoro_lab.batch import (
    read_manifest,
    render,
)
from tests.batch_support import PHRASES, UNSPEAKABLE, check_outputs


def _corpus(tmp_path: Path, count: int) -> tuple[Path, dict[str, str]]:
    texts = {f"utt-{i:03d}": text for i, text in enumerate(PHRASES[:count])}
    texts["utt-bad"] = UNSPEAKABLE
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": k, "text": v}) + "\n" for k, v in texts.items()),
                      encoding="utf-8")
    return corpus, texts


@pytest.mark.model
def test_cli_renders_in_process_and_reports_failed_items(tmp_path, synth, capsys):
    from kokoro_lab.cli import main

    corpus = tmp_path / "corpus.txt"
    corpus.write_text(f"{PHRASES[0]}\n{UNSPEAKABLE}\n{PHRASES[1]}\n", encoding="utf-8")
    out = tmp_path / "out"
    code = main(["render", str(corpus), "--out", str(out), "--workers", "1", "--format", "wav",
                 "--no-progress", "--json"])
    assert code == 3  # finished, with a failed item
    report = json.loads(capsys.readouterr().out)
    assert (report["rendered"], report["failed"], report["audio_format"]) == (2, 1, "wav")
    check_outputs(out, {"000001": PHRASES[0], "000002": UNSPEAKABLE, "000003": PHRASES[1]},
                  bad={"000002"})


@pytest.mark.model
def test_words_go_into_the_manifest_when_asked_and_resume_respects_them(tmp_path, synth):
    items = [{"id": "a", "text": "Hello there, friend."}, {"id": "b", "text": "See you soon."}]
    out = tmp_path / "out"
    options = dict(synthesizer=synth, audio_format="wav", progress=False)
    first = render(items, out, **options)
    assert first.rendered == 2 and "words" not in read_manifest(out / "manifest.jsonl")["a"]
    timed = render(items, out, words=True, **options)  # done items lack words: redone
    assert (timed.rendered, timed.skipped) == (2, 0)
    records = read_manifest(out / "manifest.jsonl")
    for item in items:
        words = records[item["id"]]["words"]
        assert [text for text, _, _ in words] == item["text"].split()
        times = [t for _, start, end in words for t in (start, end)]
        assert times == sorted(times) and times[-1] <= records[item["id"]]["duration_s"]
    assert render(items, out, words=True, **options).skipped == 2
    assert render(items, out, **options).skipped == 2  # words kept, not needed


@pytest.mark.model
def test_process_pool_survives_a_killed_worker(tmp_path):
    corpus, texts = _corpus(tmp_path, 4)
    out = tmp_path / "out"
    killed: list[int] = []

    def kill_first_worker(record):
        if not killed and record["status"] == "ok":
            pid = int(record["worker"].rsplit(":", 1)[1])
            assert pid != os.getpid()
            killed.append(pid)
            os.kill(pid, signal.SIGKILL)

    report = render(corpus, out, workers=2, progress=False, callback=kill_first_worker)
    assert killed and (report.rendered, report.failed) == (len(texts) - 1, 1)
    records = check_outputs(out, texts, bad={"utt-bad"})
    # The pool was rebuilt: items finished after the kill ran in new processes.
    workers = {record["worker"] for record in records.values()}
    assert len(workers) >= 2


@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        yield client


@pytest.mark.model
def test_dask_cluster_with_a_killed_worker_then_resume(tmp_path, dask_client):
    client = dask_client
    corpus, texts = _corpus(tmp_path, len(PHRASES))
    out = tmp_path / "out"
    pids = client.run(os.getpid)
    kill: dict = {}
    seen: list[str] = []

    def kill_a_busy_worker(record):
        """After a few items, freeze the worker that made this one, note what it was doing,
        and kill it; the frozen worker cannot finish anything between the look and the kill."""
        if kill or record["status"] != "ok" or len(seen) < 3:
            return
        address = record["worker"]
        os.kill(pids[address], signal.SIGSTOP)
        busy = client.processing(workers=[address])[address]
        if not busy:  # nothing in flight on it right now: let it go and try on a later item
            os.kill(pids[address], signal.SIGCONT)
            return
        os.kill(pids[address], signal.SIGKILL)
        kill.update(address=address, keys=list(busy))

    def on_record(record):
        seen.append(record["id"])
        kill_a_busy_worker(record)

    report = render(corpus, out, client=client, batch_size=2, progress=False, callback=on_record)
    assert kill, "no worker was busy when items finished, so none was killed"
    assert (report.rendered, report.failed, report.skipped) == (len(texts) - 1, 1, 0)
    assert report.backend.startswith("dask")
    records = check_outputs(out, texts, bad={"utt-bad"})
    assert sorted(seen) == sorted(texts)  # each item recorded once

    # The batches the killed worker was running were redone by another worker. Task keys
    # number the batches in input order, two items each (batch_size=2).
    ids = list(texts)
    lost = [ids[i] for key in kill["keys"] for n in [int(key.rsplit("-", 1)[1])]
            for i in range(2 * n, 2 * n + 2) if i < len(ids)]
    assert lost
    for item_id in lost:
        assert records[item_id]["worker"] != kill["address"], records[item_id]

    # Resume: a torn manifest tail, a deleted file, a truncated file and an edited line.
    with (out / "manifest.jsonl").open("a", encoding="utf-8") as manifest:
        manifest.write('{"id": "utt-001", "status": "fail')
    (out / records["utt-002"]["path"]).unlink()
    with (out / records["utt-003"]["path"]).open("r+b") as partial:
        partial.truncate(50)
    texts["utt-004"] = "A brand new line."
    corpus.write_text("".join(json.dumps({"id": k, "text": v}) + "\n" for k, v in texts.items()),
                      encoding="utf-8")
    kept = {k: (out / records[k]["path"]).stat().st_mtime_ns for k in ("utt-000", "utt-010")}
    resumed = render(corpus, out, client=client, progress=False)
    assert (resumed.skipped, resumed.rendered, resumed.failed) == (len(texts) - 4, 3, 1)
    check_outputs(out, texts, bad={"utt-bad"})
    for item_id, mtime in kept.items():
        assert (out / records[item_id]["path"]).stat().st_mtime_ns == mtime
    lines = (out / "manifest.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(texts)  # compacted: one line per item, torn tail gone
