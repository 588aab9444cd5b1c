"""The chunk planner's rules, checked as properties over generated text (fast, no model)."""

from __future__ import annotations

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kokoro_lab.engine.chunking import (
    EFFICIENT_CAP,
    FIRST_MAX_WORDS,
    FIRST_MIN_WORDS,
    MAX_PHONEMES,
    NEEDS_HEAD,
    ChunkPlanner,
    atoms,
    budget_cut,
    clean_text,
    plan,
    sentences,
)
from tests.conftest import fake_phonemize

word = st.text(alphabet=string.ascii_letters, min_size=1, max_size=12)
punct = st.sampled_from(["", "", "", ",", ".", "!", "?", ";", ":"])
token = st.tuples(word, punct).map("".join)
separator = st.sampled_from([" ", " ", " ", "\n", "  ", "\n\n"])
texts = st.lists(st.tuples(token, separator), min_size=1, max_size=300).map(
    lambda pairs: "".join(t + s for t, s in pairs)
)
budgets = st.lists(st.integers(min_value=1, max_value=600), max_size=80)


@settings(max_examples=150, deadline=None)
@given(texts, budgets)
def test_no_text_lost_or_reordered_and_no_mid_word_cut(text, budget_list):
    chunks = plan(text, fake_phonemize, budget_list)
    assert [w for c in chunks for w in c.text.split()] == text.split()


@settings(max_examples=150, deadline=None)
@given(texts, budgets)
def test_limits_hold(text, budget_list):
    planner = ChunkPlanner(text, fake_phonemize)
    budget_iter = iter(budget_list)
    first = True
    while True:
        budget = next(budget_iter, EFFICIENT_CAP)
        chunk = planner.next_chunk(budget)
        if chunk is None:
            break
        assert 0 < len(chunk.phonemes) <= MAX_PHONEMES
        words = chunk.text.split()
        if first:
            # a phrase cut a few words in, or the whole first clause
            first_atom = next(atoms(text, fake_phonemize))
            assert (FIRST_MIN_WORDS <= len(words) <= FIRST_MAX_WORDS
                    and words[-1].lower() not in NEEDS_HEAD) or chunk.text == first_atom.text
        elif len(chunk.phonemes) > max(budget, 1):
            # Over budget only as the shortest head at a phrase boundary or a whole clause
            # with none: no boundary inside it is left to cut at.
            assert budget_cut(words, len(chunk.phonemes), budget) is None
        first = False


@pytest.mark.parametrize(("text", "first"), [
    ("Well, the quick brown fox jumps over the lazy dog again. Then it rests.", "Well,"),
    ("The quick brown fox jumps over the lazy dog again and again.", "The quick brown fox jumps"),
    ("The old lighthouse stood at the edge of the cliff, its paint peeling.",
     "The old lighthouse stood"),
    ("Nobody in the village remembered when the light had last failed.",
     "Nobody in the village remembered"),
    ("Every evening the keeper climbed the spiral stairs, trimmed the wick.",
     "Every evening the keeper climbed"),
    ("A good plan starts small and grows.", "A good plan starts small"),
    # no phrase boundary a few words in: the whole clause, never a cut inside "the edge of"
    ("Rain fell upon wet grey slate roofs of the harbour town all night long.",
     "Rain fell upon wet grey slate roofs of the harbour town all night long."),
    ("The edge of the old stone wall of the garden crumbled.",
     "The edge of the old stone wall of the garden crumbled."),
])
def test_first_chunk_is_a_short_clause_or_ends_at_a_phrase_boundary(text, first):
    chunks = plan(text, fake_phonemize, [EFFICIENT_CAP] * 10)
    assert chunks[0].text == first
    if first != text and not first.endswith(","):
        assert chunks[0].boundary == "word"
        assert chunks[1].text.startswith(text[len(first):].split()[0])


def test_later_chunks_end_on_a_sentence_when_they_hold_one():
    text = ("Hello. Short one here. Then a second sentence, with a clause, goes on for a while "
            "longer. And a third.")
    chunks = plan(text, fake_phonemize, [0, 40, 200, 200])
    # chunk 1 could hold "Then a second sentence," too, but ends on the first sentence instead
    assert chunks[1].text == "Short one here."
    assert chunks[2].text.startswith("Then a second sentence,")
    assert chunks[2].boundary == "sentence"


def test_later_chunks_grow_with_the_budget_and_end_on_boundaries():
    text = " ".join(f"Sentence number {i} is here, with a clause." for i in range(30))
    chunks = plan(text, fake_phonemize, [0, 80, 160, 220, 220, 220, 220, 220, 220, 220])
    sizes = [len(c.phonemes) for c in chunks[1:4]]
    assert sizes == sorted(sizes) and sizes[0] <= 80 < sizes[1] <= 160 < sizes[2] <= 220, sizes
    assert all(len(c.phonemes) <= 220 for c in chunks[4:])
    assert all(c.boundary in ("sentence", "clause") for c in chunks[1:-1])


def test_unspeakable_pieces_are_skipped_not_chunked():
    chunks = plan("🙂🙂! Hello there. 🚀 Bye.", fake_phonemize, [EFFICIENT_CAP] * 5)
    assert [c.text for c in chunks] == ["Hello there.", "🚀 Bye."]
    assert all(c.phonemes for c in chunks)


def test_control_characters_become_spaces_and_newlines_split_sentences():
    assert clean_text("a\x00b\u200bc\td") == "a b c d"
    assert list(sentences("one line\nsecond line")) == ["one line", "second line"]


def test_a_huge_text_is_planned_lazily():
    text = "This is a sentence that repeats, again and again. " * 4000  # ~200k characters
    calls = []

    def counting(t):
        calls.append(t)
        return fake_phonemize(t)

    planner = ChunkPlanner(text, counting)
    planner.next_chunk(EFFICIENT_CAP)
    planner.next_chunk(EFFICIENT_CAP)
    assert len(calls) < 20  # only the atoms needed so far were phonemized


def test_a_clause_over_the_budget_is_cut_at_a_phrase_boundary_or_not_at_all():
    text = ("Hello. Every evening the keeper climbed the spiral stairs and watched the beam "
            "sweep across the dark water toward ships he would never meet.")
    chunks = plan(text, fake_phonemize, [0, 60, 60, 60, 60, 60, 60])
    texts = [c.text for c in chunks]
    assert " ".join(texts).split() == text.split()
    for piece in texts[1:]:
        words = piece.split()
        assert len(words) >= 3, texts  # never a lone "meet."
        assert words[-1].lower().strip(".,") not in NEEDS_HEAD, texts  # never "the | spiral"
    assert "Every evening the keeper climbed the spiral stairs" in texts, texts
    # no boundary at all: the whole clause, over the budget
    chunks = plan("Hi. Rain fell upon wet grey slate roofs all night.", fake_phonemize, [0, 10])
    assert chunks[1].text == "Rain fell upon wet grey slate roofs all night."


def test_with_no_boundary_that_fits_the_shortest_head_goes_over_the_budget():
    text = "Most people never think about how a voice assistant decides when to start speaking."
    chunks = plan(text, fake_phonemize, [5, 5, 5])
    assert [c.text for c in chunks][1:] == ["about how a voice assistant decides",
                                            "when to start speaking."], chunks
