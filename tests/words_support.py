"""Helpers the unit and model tests of words share."""

from __future__ import annotations

import pytest
from kokoro_onnx.tokenizer import Tokenizer

from kokoro_lab.engine.words import (
    Word,
    split_text,
)

SR = 24_000


AWKWARD = [
    "Hello, world.",
    "In 1912, it cost $4.2 million.",
    "Dr. Smith's state-of-the-art lab, e.g. the one we don't visit.",
    "Wait — of the people 😀 by the people; 42% & co. at 3:45 p.m.",
    "“Quoted” (bracketed) ... trailing...",
]


LANGUAGES = [
    ("es", "Hola, ¿cómo estás? El año 1912 fue difícil."),
    ("fr-fr", "Bonjour, comment ça va? L'homme est là depuis 1912."),
    ("it", "Ciao, come stai? Nel 1912 ero già qui."),
    ("pt-br", "Olá, tudo bem? Em 1912 ele chegou."),
    ("hi", "नमस्ते, आप कैसे हैं? मैं ठीक हूँ।"),
    ("ja", "こんにちは、元気ですか。ラーメンが好きです。"),
    ("cmn", "你好，你好吗？我很好。"),
    ("en-gb", "Of the colour, 1912 — fine."),
]


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer()


def phonemizer(tokenizer: Tokenizer, lang: str):
    """The engine's phonemizer for one language (Synthesizer.phonemize: whitespace collapsed)."""
    return lambda text: " ".join(tokenizer.phonemize(text, lang).split())


def check_invariants(words: list[Word], text: str, speech_samples: int) -> None:
    """Every word once, in order, with its own characters; spans within bounds, never back."""
    assert [w.text for w in words] == [w for w, _, _ in split_text(text)]
    assert all(text[w.char_start:w.char_end] == w.text for w in words)
    limit = speech_samples / SR
    for word in words:
        assert 0 <= word.start <= word.end <= limit + 1e-9, word
    for before, after in zip(words, words[1:], strict=False):
        assert before.end <= after.start + 1e-9, (before, after)


def word(text, start, end, char_start, char_end=None):
    return Word(text, start, end, char_start,
                char_start + len(text) if char_end is None else char_end)


REAL_CASES = {  # voice: (text, the word that ends its first sentence)
    "af_heart": ("In 1912, Dr. Smith's state-of-the-art lab cost $4.2 million. Don't panic!",
                 "million."),
    "ef_dora": ("Hola, ¿cómo estás? El año 1912 fue difícil.", "estás?"),
}
