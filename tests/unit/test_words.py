"""Word timings from token durations, and the captions made from them: the real phonemizer
(espeak, no model) with made-up durations.
"""


from __future__ import annotations

import re
from types import SimpleNamespace

import numpy as np
import pytest

from kokoro_lab.engine.words import (
    SAMPLES_PER_UNIT,
    Word,
    WordTimingError,
    align,
    chunk_words,
    cues,
    join_words,
    locate_words,
    split_text,
    to_srt,
    to_vtt,
)
from tests.words_support import (
    AWKWARD,
    LANGUAGES,
    SR,
    check_invariants,
    phonemizer,
    tokenizer,
    word,
)

__all__ = ['tokenizer']  # fixtures, used by name












def fake_chunk(phonemes: str, seed: int = 0, trim_start: int = 3000):
    """Made-up durations for ``phonemes`` (pads included) and the chunk facts they imply."""
    rng = np.random.default_rng(seed)
    durations = rng.integers(1, 6, size=len(phonemes) + 2).astype(np.float32)
    durations[0], durations[-1] = 10, 4  # the pads
    total = int(durations.sum()) * SAMPLES_PER_UNIT
    return durations, trim_start, total - trim_start - 1000




def test_words_keep_their_punctuation_and_tile_the_text():
    text = "  Dr. Smith's   state-of-the-art lab,\ne.g. $4.2 —  done. "
    words = split_text(text)
    assert [w for w, _, _ in words] == text.split()
    assert all(text[a:b] == w for w, a, b in words)


@pytest.mark.parametrize(("text", "expected"), [
    ("你好，你好吗？", ["你", "好，", "你", "好", "吗？"]),
    ("ラーメンが好き。", ["ラー", "メ", "ン", "が", "好", "き。"]),
    ("iPhoneは好き", ["iPhone", "は", "好", "き"]),
    ("Kokoro 你好 world", ["Kokoro", "你", "好", "world"]),
])
def test_unspaced_scripts_are_timed_per_character(text, expected):
    assert [w for w, _, _ in split_text(text)] == expected


def test_alignment_matches_identical_sequences_one_to_one():
    assert align(list("abcdef"), list("abcdef")) == [0, 1, 2, 3, 4, 5]


def test_alignment_skips_insertions_and_deletions_in_order():
    assert align(list("abxcd"), list("abcd")) == [0, 1, -1, 2, 3]  # "x" only in the chunk
    assert align(list("abcd"), list("abqcd")) == [0, 1, 3, 4]  # "q" only in the reference
    assert align(list("abxd"), list("abcd")) == [0, 1, 2, 3]  # a substitution beats a gap pair
    matched = align(list("ʌvðəpiːpəl"), list("ˈʌvðəpˈiːpəl"))
    kept = [j for j in matched if j >= 0]
    assert kept == sorted(kept) and len(kept) == len(matched)


def timed(text: str, phonemes: str, phonemize, seed: int = 0, trim_start: int = 3000):
    durations, trim, speech = fake_chunk(phonemes, seed, trim_start)
    words = chunk_words(text, phonemes, durations, trim, speech, phonemize=phonemize)
    return words, durations, trim, speech


def token_span(durations, trim: int, first: int, last: int) -> tuple[float, float]:
    """Seconds of chunk audio from the start of token ``first`` to the end of ``last``."""
    edges = np.concatenate([[0], np.cumsum(durations)]) * SAMPLES_PER_UNIT
    return (edges[first + 1] - trim) / SR, (edges[last + 2] - trim) / SR


@pytest.mark.parametrize("text", AWKWARD)
def test_awkward_english_every_word_once_in_order(text, tokenizer):
    phonemize = phonemizer(tokenizer, "en-us")
    phonemes = phonemize(text)
    for seed in range(3):
        words, _, _, speech = timed(text, phonemes, phonemize, seed)
        check_invariants(words, text, speech)
        spoken = [w for w in words if any(ch.isalnum() for ch in w.text)]
        assert all(w.duration > 0 for w in spoken), spoken


@pytest.mark.parametrize(("lang", "text"), LANGUAGES)
def test_every_voice_language_times_every_word_once(lang, text, tokenizer):
    phonemize = phonemizer(tokenizer, lang)
    phonemes = phonemize(text)
    words, _, _, speech = timed(text, phonemes, phonemize)
    check_invariants(words, text, speech)
    # words are timed, not piled up at one instant: most get a real span
    assert sum(w.duration > 0 for w in words) >= 0.8 * len(words)


def test_merged_words_split_where_their_own_phonemes_split(tokenizer):
    phonemize = phonemizer(tokenizer, "en-us")
    text = "of the people"
    phonemes = phonemize(text)
    assert phonemes.startswith("ʌvðə ")  # espeak merges "of the" into one phoneme word
    words, durations, trim, _ = timed(text, phonemes, phonemize)
    assert (words[0].start, words[0].end) == token_span(durations, trim, 0, 1)  # ʌv
    assert (words[1].start, words[1].end) == token_span(durations, trim, 2, 3)  # ðə


def test_punctuation_is_a_pause_not_part_of_the_word():
    phonemize = {"Hi,": "hi,", "there.": "ðɛɹ."}.get
    words, durations, trim, _ = timed("Hi, there.", "hi, ðɛɹ.", phonemize)
    assert (words[0].start, words[0].end) == token_span(durations, trim, 0, 1)  # "hi", not ","
    assert (words[1].start, words[1].end) == token_span(durations, trim, 4, 6)  # "ðɛɹ", not "."


@pytest.mark.parametrize(("phonemes", "owner_of_extra"), [
    ("abc xyz def", 1),  # a space before the unmatched run: it starts the next word
    ("abcxyz def", 0),  # no space: the phonemizer extended the word before
])
def test_unmatched_tokens_go_to_the_word_their_space_says(phonemes, owner_of_extra):
    phonemize = {"one": "abc", "two": "def"}.get
    words, durations, trim, _ = timed("one two", phonemes, phonemize)
    extra = phonemes.index("x")
    span = (words[owner_of_extra].start, words[owner_of_extra].end)
    assert span[0] <= token_span(durations, trim, extra, extra)[0]
    assert span[1] >= token_span(durations, trim, extra + 2, extra + 2)[1]


def test_silent_words_sit_at_their_neighbours_edge(tokenizer):
    phonemize = phonemizer(tokenizer, "en-us")
    text = "— Wait — now"
    words, *_ = timed(text, phonemize(text), phonemize)
    lead, wait, dash, now = words
    assert lead.duration == 0 and lead.start == wait.start
    assert dash.duration == 0 and dash.start == wait.end
    assert now.start >= dash.end


def test_spans_are_shifted_by_the_trim_and_clipped_to_the_speech():
    phonemize = {"one": "abc", "two": "def"}.get
    durations = np.array([2, 1, 1, 1, 1, 1, 1, 1, 2], dtype=np.float32)  # pads 2 and 2
    # the trim cuts into "abc" (starts 2 units in) and the speech ends inside "def"
    words = chunk_words("one two", "abc def", durations, trim_start=3 * SAMPLES_PER_UNIT,
                        speech_samples=5 * SAMPLES_PER_UNIT, phonemize=phonemize)
    assert words[0].start == 0 and words[0].end == 2 * SAMPLES_PER_UNIT / SR
    assert words[1].start == 3 * SAMPLES_PER_UNIT / SR
    assert words[1].end == 5 * SAMPLES_PER_UNIT / SR


def test_a_chunk_without_sound_gives_zero_length_words():
    words = chunk_words("— …", "— …", np.ones(5), 0, 100, phonemize=lambda t: t)
    assert [(w.start, w.end) for w in words] == [(0.0, 0.0), (0.0, 0.0)]


@pytest.mark.parametrize(("durations", "trim", "speech", "message"), [
    (np.ones(4), 0, 100, "4 token durations for 3 phoneme tokens"),
    (np.ones(5), -1, 100, "must be ≥ 0"),
])
def test_bad_facts_are_refused(durations, trim, speech, message):
    with pytest.raises(WordTimingError, match=message):
        chunk_words("abc", "abc", durations, trim, speech, phonemize=lambda t: t)




def test_join_places_chunks_after_the_audio_and_text_before_them():
    first = SimpleNamespace(text="Hello there.", audio=np.zeros(SR // 2),
                            words=[word("Hello", 0.1, 0.3, 0), word("there.", 0.3, 0.4, 6)])
    second = SimpleNamespace(text="Bye.", audio=np.zeros(SR),
                             words=[word("Bye.", 0.05, 0.2, 0)])
    joined = join_words([first, second], SR)
    assert [(w.text, w.start, w.end) for w in joined] == [
        ("Hello", 0.1, 0.3), ("there.", 0.3, 0.4), ("Bye.", 0.55, 0.7)]
    text = " ".join(c.text for c in (first, second))
    assert all(text[w.char_start:w.char_end] == w.text for w in joined)


def test_locate_finds_each_word_in_the_typed_text_in_order():
    words = [word("the", 0, 0.1, 0), word("cat", 0.1, 0.2, 4), word("the", 0.2, 0.3, 8),
             word("café", 0.3, 0.4, 12)]
    typed = "The\tthe  cat\n\nthe cafe\u0301"  # NFD "café": not there verbatim
    located = locate_words(words, typed)
    assert [(w.char_start, w.char_end) for w in located] == [(4, 7), (9, 12), (14, 17), (17, 17)]


def sentence_words(text: str, step: float = 0.3) -> list[Word]:
    return [word(w, i * step, i * step + step * 0.8, a, b)
            for i, (w, a, b) in enumerate(split_text(text))]


def test_cues_break_at_sentences_but_not_abbreviations():
    text = "Dr. Smith arrived. He saw e.g. the lab. Then he left."
    texts = [cue.text for cue in cues(sentence_words(text))]
    assert texts == ["Dr. Smith arrived.", "He saw e.g. the lab.", "Then he left."]


def test_cues_respect_length_and_duration_limits():
    text = " ".join(["word"] * 60)
    made = cues(sentence_words(text), max_chars=42, max_seconds=7.0)
    assert " ".join(c.text for c in made) == text
    assert all(len(c.text) <= 42 for c in made)
    assert all(c.words[-1].end - c.start <= 7.0 for c in made)
    longer = cues(sentence_words(text, step=2.0), max_chars=42, max_seconds=7.0)
    assert all(c.words[-1].end - c.start <= 7.0 for c in longer)


def test_cues_join_unspaced_words_without_spaces():
    assert cues(sentence_words("你好，你好吗？我很好。"))[0].text == "你好，你好吗？"


def test_vtt_is_read_by_a_webvtt_parser_with_word_timestamps(tokenizer):
    webvtt = pytest.importorskip("webvtt")
    phonemize = phonemizer(tokenizer, "en-us")
    text = ("Dr. Smith's lab <fast> & cheap, e.g. in 1912, cost $4.2 million. "
            "Don't panic --> it is fine. " + " ".join(["More words here"] * 6))
    words, *_ = timed(text, phonemize(text), phonemize)
    vtt = to_vtt(words, word_timestamps=True)
    parsed = webvtt.from_string(vtt)
    assert len(parsed.captions) == len(cues(words)) > 3
    shown = " ".join(c.text for c in parsed.captions)  # tags stripped by the parser
    assert shown.replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">") \
        == " ".join(text.split())
    for caption in parsed.captions:
        assert caption.start_in_seconds * 1000 <= caption.end_in_seconds * 1000
        tags = [timestamp_ms(t) for t in re.findall(r"<(\d\d:\d\d:\d\d\.\d\d\d)>",
                                                    caption.raw_text)]
        start, end = timestamp_ms(caption.start), timestamp_ms(caption.end)
        assert all(start < t < end for t in tags) and tags == sorted(set(tags))
        assert "-->" not in caption.raw_text


def timestamp_ms(stamp: str) -> int:
    hours, minutes, seconds = stamp.replace(",", ".").split(":")
    return round((int(hours) * 3600 + int(minutes) * 60 + float(seconds)) * 1000)


def test_srt_is_read_by_a_subrip_parser(tmp_path, tokenizer):
    webvtt = pytest.importorskip("webvtt")
    phonemize = phonemizer(tokenizer, "en-us")
    text = "Hello, world. This is a caption test with enough words to make a few cues here."
    words, *_ = timed(text, phonemize(text), phonemize)
    srt = to_srt(words)
    assert srt.startswith("1\n00:00:")
    path = tmp_path / "captions.srt"
    path.write_text(srt, encoding="utf-8")
    parsed = webvtt.from_srt(str(path))
    assert [c.text for c in parsed.captions] == [c.text for c in cues(words)]
    for caption, cue in zip(parsed.captions, cues(words), strict=True):
        assert abs(caption.start_in_seconds - cue.start) < 1  # whole seconds in this parser
        assert timestamp_ms(caption.start) == round(cue.start * 1000)


def test_timestamps_past_an_hour():
    words = [word("late", 3725.5, 3726.25, 0)]
    assert "01:02:05.500 --> 01:02:06.250" in to_vtt(words)
    assert "01:02:05,500 --> 01:02:06,250" in to_srt(words)


