"""Batch rendering: input parsing, the manifest and resume rules, and real runs.

The fast tests drive the render loop with a small stand-in synthesizer. The ``model`` tests run
the real Kokoro model on a process pool and on a real Dask ``LocalCluster`` (two worker
processes on loopback), kill a worker mid-run, resume, and check every audio file.
"""

from __future__ import annotations

import json
import os
import re
import signal
import wave
from pathlib import Path

import numpy as np
import pytest

from kokoro_lab.batch import (
    InputError,
    Item,
    _manifest,
    _worker,
    normalize_items,
    read_items,
    read_manifest,
    render,
)
from kokoro_lab.engine import SAMPLE_RATE, TextError

# Short, distinct utterances (2-3 words): the real model takes about a second for each here.
PHRASES = [
    "Good morning.", "Hello there, friend.", "See you soon.", "Thank you kindly.",
    "The sun shines.", "Bring the cup.", "Open the door.", "It is raining.",
    "Turn left.", "Birds sing.", "Call me later.", "Seven boats.",
    "Read aloud.", "Lunch time.", "Quiet, please.", "The train left.",
    "Dogs bark.", "Pass the salt.", "Water the plants.", "Nice to meet you.",
]
UNSPEAKABLE = "🙂🙂"


def duration_of(path: Path) -> float:
    """Seconds of audio in a FLAC or WAV file, read back from the file itself."""
    if path.suffix == ".flac":
        import soundfile

        info = soundfile.info(str(path))
        assert info.samplerate == SAMPLE_RATE and info.channels == 1
        return info.frames / info.samplerate
    with wave.open(str(path)) as audio:
        assert audio.getframerate() == SAMPLE_RATE and audio.getnchannels() == 1
        return audio.getnframes() / audio.getframerate()


def check_outputs(out: Path, texts: dict[str, str], bad: set[str] = frozenset()) -> dict:
    """Every good item: status ok, its file exists, is non-empty, matches the manifest's
    duration and size, and is plausibly long for its words; every bad item: failed + error."""
    records = read_manifest(out / "manifest.jsonl")
    assert set(records) == set(texts)
    for item_id, text in texts.items():
        record = records[item_id]
        assert record["text"] == text
        if item_id in bad:
            assert record["status"] == "failed" and record["error"], record
            continue
        assert record["status"] == "ok", record
        path = out / record["path"]
        assert path.is_file() and path.stat().st_size == record["bytes"] > 0
        seconds = duration_of(path)
        assert seconds == pytest.approx(record["duration_s"], abs=1e-3)
        words = len(text.split())
        assert 0.15 * words < seconds < 1.0 + 0.9 * words, (text, seconds)
        assert record["synthesis_s"] > 0 and record["worker"]
    return records


# -- input ----------------------------------------------------------------------------------


def test_text_file_one_utterance_per_line_with_stable_ids(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("Hello there.\n\n  Good morning.  \nBye.\n", encoding="utf-8")
    items = read_items(corpus, voice="bf_emma", speed=1.2)
    assert [(i.id, i.text) for i in items] == [
        ("000001", "Hello there."), ("000003", "Good morning."), ("000004", "Bye.")]
    assert {(i.voice, i.speed) for i in items} == {("bf_emma", 1.2)}


def test_jsonl_fields_defaults_and_meta(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    lines = [{"id": "a-1", "text": "Hi.", "voice": "am_adam", "speed": 0.9, "speaker": 7},
             {"text": "Yo."}]
    corpus.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n", encoding="utf-8")
    first, second = read_items(corpus, voice="af_heart")
    assert (first.id, first.voice, first.speed, first.meta) == ("a-1", "am_adam", 0.9,
                                                                {"speaker": 7})
    assert (second.id, second.voice, second.speed) == ("000002", "af_heart", 1.0)


@pytest.mark.parametrize("line, message", [
    ("{not json", "corpus.jsonl:2: not valid JSON"),
    ('["a list"]', "corpus.jsonl:2: expected a JSON object"),
    ('{"id": "x"}', "corpus.jsonl:2: 'text' must be a string, got nothing"),
    ('{"id": "a", "text": "again"}', "corpus.jsonl:2: id 'a' is used twice (first at "),
    ('{"id": "../evil", "text": "x"}', "cannot name a file"),
    ('{"text": "x", "speed": "fast"}', "'speed' must be a number"),
    ('{"text": "x", "voice": 3}', "'voice' must be a string"),
])
def test_bad_jsonl_is_refused_with_its_line(tmp_path, line, message):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"id": "a", "text": "fine"}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=re.escape(message)):
        read_items(corpus)


def test_missing_corpus_and_bad_arguments(tmp_path):
    with pytest.raises(FileNotFoundError, match="pass a list of strings"):
        render(str(tmp_path / "nope.txt"), tmp_path / "out")
    with pytest.raises(ValueError, match="workers must be at least 1"):
        render(["Hi."], tmp_path / "out", workers=0)
    with pytest.raises(ValueError, match="audio format must be one of"):
        render(["Hi."], tmp_path / "out", audio_format="mp3")
    with pytest.raises(InputError, match="an item must be a str, a dict or an Item"):
        normalize_items([3.5])


def test_content_hash_covers_what_decides_the_audio():
    item = Item(id="1", text="Hello.")
    base = item.content_hash("int8", "flac")
    changed = [
        Item(id="1", text="Hello!").content_hash("int8", "flac"),
        Item(id="1", text="Hello.", voice="bf_emma").content_hash("int8", "flac"),
        Item(id="1", text="Hello.", speed=1.1).content_hash("int8", "flac"),
        Item(id="1", text="Hello.", lang="en-gb").content_hash("int8", "flac"),
        item.content_hash("fp32", "flac"),
        item.content_hash("int8", "wav"),
    ]
    assert len({base, *changed}) == 7
    assert Item(id="other", text="Hello.").content_hash("int8", "flac") == base


# -- manifest -------------------------------------------------------------------------------


def test_manifest_torn_tail_last_record_wins_and_compaction(tmp_path):
    path = tmp_path / "manifest.jsonl"
    path.write_text('{"id": "b", "status": "failed"}\n{"id": "a", "status": "ok"}\n{"id": "b", '
                    '"sta', encoding="utf-8")  # the driver was killed mid-line
    with _manifest.ManifestWriter(path) as writer:
        writer.write({"status": "ok", "id": "b", "extra": 1})
    records = read_manifest(path)
    assert records["b"] == {"id": "b", "status": "ok", "extra": 1}
    assert records["a"]["status"] == "ok"
    _manifest.compact(path, ["b", "zzz"])
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert [line["id"] for line in lines] == ["b", "a"]  # input order first, then the others
    assert list(lines[0]) == ["id", "status", "extra"]  # known fields first


def test_done_means_ok_same_hash_and_whole_file(tmp_path):
    (tmp_path / "audio").mkdir()
    (tmp_path / "audio" / "x.wav").write_bytes(b"RIFF1234")
    record = {"id": "x", "status": "ok", "hash": "h", "path": "audio/x.wav", "bytes": 8}
    assert _manifest.is_done(record, "h", tmp_path)
    assert not _manifest.is_done(record, "other", tmp_path)
    assert not _manifest.is_done({**record, "status": "failed"}, "h", tmp_path)
    assert not _manifest.is_done({**record, "bytes": 9}, "h", tmp_path)  # partial file
    assert not _manifest.is_done({**record, "path": "audio/y.wav"}, "h", tmp_path)
    assert not _manifest.is_done(None, "h", tmp_path)


def test_a_second_render_into_the_same_directory_is_refused(tmp_path):
    with _manifest.directory_lock(tmp_path), \
            pytest.raises(RuntimeError, match="another render is writing"), \
            _manifest.directory_lock(tmp_path):
        pass


@pytest.mark.parametrize("fmt", ["wav", "flac"])
def test_encode_round_trip(tmp_path, fmt):
    if fmt == "flac":
        pytest.importorskip("soundfile")
    audio = (0.3 * np.sin(np.linspace(0, 200, SAMPLE_RATE // 2))).astype(np.float32)
    path = tmp_path / f"tone.{fmt}"
    path.write_bytes(_worker.encode(audio, fmt))
    assert duration_of(path) == pytest.approx(0.5)


# -- the render loop, with a stand-in synthesizer -------------------------------------------


class _FakeResult:
    def __init__(self, audio: np.ndarray):
        self.audio = audio
        self.precision = "int8"
        self.provider = "cpu"


class FakeSynth:
    """Speaks 0.3 s of tone per word; refuses text without letters like the real engine."""

    precision = "int8"
    provider = "cpu"

    def __init__(self):
        self.calls: list[str] = []

    def synthesize(self, text, voice="af_heart", speed=1.0, lang=None):
        self.calls.append(text)
        if not any(ch.isalnum() for ch in text):
            raise TextError(f"nothing speakable in {text!r}")
        samples = int(0.3 * len(text.split()) * SAMPLE_RATE / speed)
        return _FakeResult(0.1 * np.sin(np.arange(samples, dtype=np.float32) / 10))


def test_render_records_failures_and_resumes_only_what_is_not_done(tmp_path):
    out = tmp_path / "out"
    items = [{"id": f"u{i}", "text": text} for i, text in enumerate(PHRASES[:5])]
    items.append({"id": "bad", "text": UNSPEAKABLE})
    synth = FakeSynth()
    seen: list[str] = []
    report = render(items, out, synthesizer=synth, audio_format="wav", progress=False,
                    callback=lambda record: seen.append(record["id"]))
    assert (report.total, report.rendered, report.failed, report.skipped) == (6, 5, 1, 0)
    assert seen == [item["id"] for item in items]
    assert report.failures[0]["error"].startswith("TextError: nothing speakable")
    assert report.audio_s == pytest.approx(sum(0.3 * len(p.split()) for p in PHRASES[:5]),
                                           abs=0.01)
    texts = {item["id"]: item["text"] for item in items}
    check_outputs(out, texts, bad={"bad"})
    untouched = (out / "audio" / "u0.wav").stat().st_mtime_ns

    # Damage the outputs the ways a crash or an edit would, then resume.
    (out / "audio" / "u1.wav").unlink()  # missing
    with (out / "audio" / "u2.wav").open("r+b") as partial:
        partial.truncate(100)  # cut short
    items[3] = {"id": "u3", "text": "A changed line."}  # edited input
    texts["u3"] = "A changed line."
    synth.calls.clear()
    again = render(items, out, synthesizer=synth, audio_format="wav", progress=False)
    assert sorted(synth.calls) == sorted([PHRASES[1], PHRASES[2], "A changed line.",
                                          UNSPEAKABLE])
    assert (again.skipped, again.rendered, again.failed) == (2, 3, 1)
    check_outputs(out, texts, bad={"bad"})
    assert (out / "audio" / "u0.wav").stat().st_mtime_ns == untouched

    # A new default speed is new content for every item: everything is redone, this time
    # with the "workers" (here: this process) writing the files themselves.
    synth.calls.clear()
    faster = render(items, out, synthesizer=synth, audio_format="wav", speed=1.5,
                    worker_writes=True, progress=False)
    assert faster.skipped == 0 and len(synth.calls) == 6
    records = check_outputs(out, texts, bad={"bad"})
    assert records["u0"]["speed"] == 1.5 and records["u0"]["duration_s"] == pytest.approx(0.4)


# -- the real model -------------------------------------------------------------------------


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
