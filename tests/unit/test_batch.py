"""Batch rendering without the model: input parsing, the manifest and resume rules, driven by a
small stand-in synthesizer.
"""


from __future__ import annotations

import json
import re

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
from tests.batch_support import PHRASES, UNSPEAKABLE, check_outputs, duration_of


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
