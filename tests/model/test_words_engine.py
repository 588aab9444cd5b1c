"""Word timings wired through the engine, on the real int8 model: ``Chunk.words``,
``Result.words``, ``Result.to_vtt``/``to_srt``, the words table and ``speak --captions``.

The alignment rule itself is tested on awkward text in ``tests/test_words.py``; here the point
is that what the engine hands out is placed on the audio it hands out.
"""

from __future__ import annotations

import numpy as np
import pytest

from kokoro_lab.cli import main
from kokoro_lab.engine.metrics import SAMPLE_RATE

pytestmark = pytest.mark.model

PARAGRAPH = ("The old lighthouse stood at the edge of the cliff. In 1912, Dr. Smith's lab cost "
             "$4.2 million! Don't panic; it's state-of-the-art.")


@pytest.fixture(scope="module")
def paragraph(synth):
    return synth.synthesize(PARAGRAPH)


def test_every_word_is_timed_once_in_order_on_the_joined_audio(paragraph):
    words = paragraph.words
    assert [w.text for w in words] == PARAGRAPH.split()
    assert len(paragraph.chunks) > 1  # the small first chunk: words cross chunk boundaries
    starts = np.array([w.start for w in words])
    ends = np.array([w.end for w in words])
    assert np.all(np.diff(starts) >= 0) and np.all(ends >= starts)
    assert np.all(starts[1:] >= ends[:-1] - 1e-9)  # spans never overlap
    assert starts[0] >= 0 and ends[-1] <= paragraph.duration_s
    assert np.all(ends - starts > 0.02)  # every word here makes a sound
    joined = " ".join(chunk.text for chunk in paragraph.chunks)
    assert all(joined[w.char_start:w.char_end] == w.text for w in words)


def test_chunk_words_sit_in_their_chunk_speech(paragraph):
    offset = 0
    for chunk in paragraph.chunks:
        assert [w.text for w in chunk.words] == chunk.text.split()
        assert all(0 <= w.start <= w.end <= chunk.speech_samples / SAMPLE_RATE
                   for w in chunk.words)
        joined = [w for w in paragraph.words if offset / SAMPLE_RATE <= w.start
                  and w.end <= (offset + chunk.speech_samples) / SAMPLE_RATE + 1e-9]
        assert [w.text for w in joined] == chunk.text.split()  # shifted by the audio before
        offset += len(chunk.audio)
    # the first word starts where the sound starts: after the trim, not after the lead pad
    first = paragraph.chunks[0].words[0]
    assert first.start < 0.25


def test_words_table_has_one_row_per_word(paragraph):
    pytest.importorskip("pandas")
    table = paragraph.to_dataframe(words=True)
    assert list(table["word"]) == PARAGRAPH.split()
    assert list(table.columns[:5]) == ["word", "start", "end", "duration", "chunk"]
    assert table["chunk"].is_monotonic_increasing
    assert table["chunk"].iloc[-1] == len(paragraph.chunks) - 1


def test_captions_are_read_back_by_a_webvtt_and_subrip_parser(paragraph, tmp_path):
    webvtt = pytest.importorskip("webvtt")
    text = paragraph.to_vtt(tmp_path / "p.vtt", word_timestamps=True)
    assert (tmp_path / "p.vtt").read_text(encoding="utf-8") == text
    captions = webvtt.read(str(tmp_path / "p.vtt"))
    assert " ".join(c.text for c in captions).split() == PARAGRAPH.split()
    assert captions[-1].end_in_seconds <= paragraph.duration_s + 0.001
    assert "<00:00:" in text  # the word timestamps are there, and the parser took them
    srt = paragraph.to_srt(tmp_path / "p.srt")
    assert srt.startswith("1\n")
    subtitles = webvtt.from_srt(str(tmp_path / "p.srt"))
    assert " ".join(c.text for c in subtitles).split() == PARAGRAPH.split()
    assert [c.start for c in subtitles] == [c.start for c in captions]


def test_speak_writes_captions_beside_the_audio(tmp_path, synth, capsys):
    webvtt = pytest.importorskip("webvtt")
    text = "Hello there. This is captioned."
    for suffix, read in ((".vtt", webvtt.read), (".srt", webvtt.from_srt)):
        captions = tmp_path / f"out{suffix}"
        assert main(["speak", text, "-o", str(tmp_path / "out.wav"),
                     "--captions", str(captions)]) == 0
        assert f"captions → {captions}" in capsys.readouterr().out
        assert " ".join(c.text for c in read(str(captions))).split() == text.split()
    assert (tmp_path / "out.wav").stat().st_size > 0
