"""Word timings from the model's own token durations, and captions (WebVTT, SRT) made from them.

The front stage of Kokoro predicts, for each input token, how many *duration units* it lasts
(``/encoder/Clip_output_0``, see :mod:`kokoro_lab.engine.split`); the vocoder makes exactly
:data:`SAMPLES_PER_UNIT` samples per unit (two 300-sample frames), so token ``k`` of a chunk
occupies samples ``[600·Σd[:k+1], 600·Σd[:k+2])`` of the model's output (``d[0]`` is the leading
pad token). Nothing is estimated from the audio: the timings are the ones the model spoke with,
speed factor included, at no extra inference.

The rule that maps tokens back to the words of the chunk's text:

1. **Words.** A word is a whitespace-separated piece of the text, punctuation attached
   (``"lab,"``, ``"Dr."``, ``"$4.2"``, ``"state-of-the-art"``, ``"😀"``). In scripts written
   without spaces (Han, Hiragana, Katakana) every character is a word, with the punctuation and
   prolongation marks that follow it attached (``"好，"``, ``"ラー"``). Every word of the text
   appears once, in order, with its character span in the text.
2. **Sounds.** Only letters and marks among the phoneme tokens are sounds (phones, stress and
   length marks); spaces and punctuation tokens (``, . ? — …``) are pauses that belong to no
   word, so a word's span ends with its last sound, not with the pause after its comma.
3. **Alignment.** Each word is phonemized on its own (the phonemizer expands it the same way
   it expanded it in the chunk: ``"1912"`` → *nineteen hundred twelve*, ``"Dr."`` → *doctor*,
   ``"😀"`` → *grinning face*). The sounds of those per-word phonemes, concatenated, are aligned
   to the chunk's sound tokens by a minimum edit distance alignment (unit costs). A chunk token
   aligned to a word's phoneme belongs to that word. So words the phonemizer merged (``"of the"``
   → ``ʌvðə``) are split where their own phonemes split, and a word pronounced a little
   differently in context (stress moved, a vowel reduced) still takes its tokens.
4. **Leftovers.** A run of chunk tokens aligned to nothing goes to the word before it, unless a
   space token separates it from that word, in which case it goes to the word after it (espeak
   separates words by spaces, so the space says which word the run started).
5. **Silent words.** A word with no sound tokens (a lone ``"—"``, an emoji the phonemizer
   drops, a word cut from an over-long chunk) gets a zero-length span at the end of the word
   before it (at the start of the next when it is first).
6. **Audio time.** A word's span runs from the start of its first sound token to the end of
   its last, minus ``trim_start`` (the model-output samples trimmed before the chunk's audio),
   clipped to ``[0, speech_samples]``. Spans never overlap and never go backwards.

:func:`join_words` places chunk words in the joined audio (each chunk starts where the audio of
the ones before it, pauses included, ends); :func:`to_vtt` and :func:`to_srt` group words into
caption cues.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np

# metrics will import this module (Chunk.words), so the sample rate comes from kokoro-onnx
from kokoro_onnx.config import DEFAULT_VOCAB, SAMPLE_RATE

from .chunking import CLAUSE_MARKS, SENTENCE_MARKS

# One duration unit is two vocoder frames of 300 samples (split.FRAME_SAMPLES); checked against
# the model's output length at several speeds in tests/model/test_words.py.
SAMPLES_PER_UNIT = 600

# Scripts written without spaces: each character is a word (rule 1).
_UNSPACED = re.compile(
    "[\u3040-\u309f\u30a0-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
    "\uff66-\uff9f]"
)
MAX_CUE_CHARS = 42
MAX_CUE_SECONDS = 7.0
CUE_HOLD_S = 0.5  # a cue stays up across a pause this short, so captions do not flicker


class WordTimingError(ValueError):
    """The durations do not fit the phonemes they are said to time."""


@dataclass(frozen=True)
class Word:
    """One word of the text and when it is heard.

    ``start``/``end`` are seconds in the chunk's audio (in the joined audio after
    :func:`join_words`); ``char_start``/``char_end`` index the word in the chunk's text (in the
    joined text, or the text given to :func:`locate_words`). A word that makes no sound has
    ``start == end``.
    """

    text: str
    start: float
    end: float
    char_start: int
    char_end: int

    @property
    def duration(self) -> float:
        return self.end - self.start


# -- words of a text ---------------------------------------------------------------------------


def split_text(text: str) -> list[tuple[str, int, int]]:
    """The words of ``text`` as ``(word, char_start, char_end)`` (rule 1)."""
    words = []
    for match in re.finditer(r"\S+", text):
        piece, offset = match.group(), match.start()
        if not _UNSPACED.search(piece):
            words.append((piece, offset, match.end()))
            continue
        start = 0
        for index in range(1, len(piece) + 1):
            if index == len(piece) or _starts_unit(piece, index):
                words.append((piece[start:index], offset + start, offset + index))
                start = index
    return words


def _starts_unit(piece: str, index: int) -> bool:
    """Whether character ``index`` of an unspaced piece begins a new word."""
    char, before = piece[index], piece[index - 1]
    if _is_trailing(char):
        return False  # punctuation and prolongation marks stay with the character before
    return bool(_UNSPACED.match(char) or _UNSPACED.match(before) or _is_trailing(before))


def _is_trailing(char: str) -> bool:
    category = unicodedata.category(char)
    return category[0] in "PM" or category == "Lm"


def is_sound(token: str) -> bool:
    """A phoneme token that is spoken: a letter or mark (phones, stress, length), not a pause."""
    return unicodedata.category(token)[0] in "LM"


# -- timing one chunk --------------------------------------------------------------------------


def chunk_words(
    text: str,
    phonemes: str,
    token_durations: Sequence[float] | np.ndarray,
    trim_start: int,
    speech_samples: int,
    *,
    phonemize: Callable[[str], str],
    sample_rate: int = SAMPLE_RATE,
    vocab: dict[str, int] | None = None,
) -> list[Word]:
    """Every word of one chunk's ``text`` with its span in the chunk's audio (see module rule).

    ``phonemes`` is the chunk's phoneme string as synthesized, ``token_durations`` the front
    stage's durations for its tokens with the two pad tokens (``len(tokens) + 2`` values),
    ``trim_start`` the model-output samples before the chunk's first audio sample and
    ``speech_samples`` the chunk's audio length before its appended pause. ``phonemize`` turns
    a piece of text into phonemes in the chunk's language (the engine's own phonemizer).
    """
    vocab = DEFAULT_VOCAB if vocab is None else vocab
    tokens = [p for p in phonemes if p in vocab]
    durations = np.asarray(token_durations, dtype=np.float64).ravel()
    if durations.size != len(tokens) + 2:
        raise WordTimingError(
            f"{durations.size} token durations for {len(tokens)} phoneme tokens: expected "
            f"{len(tokens) + 2} (one per token plus the two pad tokens)")
    if trim_start < 0 or speech_samples < 0:
        raise WordTimingError(
            f"trim_start and speech_samples must be ≥ 0, got {trim_start} and {speech_samples}")
    words = split_text(text)
    owners = _token_owners(tokens, words, phonemize, vocab)
    edges = np.concatenate([[0.0], np.cumsum(durations)]) * SAMPLES_PER_UNIT
    spans: list[tuple[float, float] | None] = []
    for index in range(len(words)):
        mine = np.flatnonzero(owners == index)
        if not mine.size:
            spans.append(None)
            continue
        # token k is duration k + 1 (after the leading pad)
        first, last = edges[mine[0] + 1], edges[mine[-1] + 2]
        spans.append(tuple(float(min(max(edge - trim_start, 0), speech_samples)) / sample_rate
                           for edge in (first, last)))
    return [Word(word, start, end, char_start, char_end)
            for (word, char_start, char_end), (start, end) in zip(words, _fill_silent(spans),
                                                                   strict=True)]


def _fill_silent(spans: list[tuple[float, float] | None]) -> list[tuple[float, float]]:
    """Zero-length spans for silent words: at the end of the word before, else the next start."""
    edge = next((span[0] for span in spans if span is not None), 0.0)
    filled = []
    for span in spans:
        if span is None:
            span = (edge, edge)
        filled.append(span)
        edge = span[1]
    return filled


def _token_owners(tokens: list[str], words: list[tuple[str, int, int]],
                  phonemize: Callable[[str], str], vocab: dict[str, int]) -> np.ndarray:
    """For each chunk token, the index of the word it belongs to, or -1 (a pause token)."""
    sounds = [k for k, token in enumerate(tokens) if is_sound(token)]
    owners = np.full(len(tokens), -1, dtype=np.int64)
    if not sounds or not words:
        return owners
    cache: dict[str, list[str]] = {}
    reference: list[str] = []
    reference_word: list[int] = []
    for index, (word, _, _) in enumerate(words):
        if word not in cache:
            cache[word] = [p for p in phonemize(word) if p in vocab and is_sound(p)]
        reference.extend(cache[word])
        reference_word.extend([index] * len(cache[word]))
    if not reference:  # the phonemizer gave nothing per word: share the sounds by text length
        labels = _share_by_length([len(w) for w, _, _ in words], len(sounds))
    else:
        matched = align([tokens[k] for k in sounds], reference)
        labels = [reference_word[j] if j >= 0 else -1 for j in matched]
        labels = _fill_leftovers(labels, sounds, tokens)
    owners[sounds] = labels
    return owners


def align(chunk: Sequence[str], reference: Sequence[str]) -> list[int]:
    """Minimum edit distance alignment: for each ``chunk`` item, its ``reference`` index or -1.

    Unit costs for substitution, insertion and deletion; ties prefer a match or substitution,
    so each chunk item takes a reference item whenever the distance allows it. Rows are
    vectorised with numpy (the insertion recurrence along a row is a running minimum), so a
    510-token chunk aligns in milliseconds.
    """
    codes: dict[str, int] = {}
    a = np.array([codes.setdefault(c, len(codes)) for c in chunk], dtype=np.int64)
    b = np.array([codes.setdefault(c, len(codes)) for c in reference], dtype=np.int64)
    n, m = a.size, b.size
    cols = np.arange(m + 1)
    table = np.empty((n + 1, m + 1), dtype=np.int64)
    table[0] = cols
    for i in range(1, n + 1):
        best = np.empty(m + 1, dtype=np.int64)
        best[0] = i
        best[1:] = np.minimum(table[i - 1, :-1] + (b != a[i - 1]), table[i - 1, 1:] + 1)
        # table[i, j] = min over k ≤ j of best[k] + (j - k): deletions run along the row
        table[i] = np.minimum.accumulate(best - cols) + cols
    matched = [-1] * n
    i, j = n, m
    while i > 0:
        if j > 0 and table[i, j] == table[i - 1, j - 1] + (a[i - 1] != b[j - 1]):
            i, j = i - 1, j - 1
            matched[i] = j
        elif table[i, j] == table[i - 1, j] + 1:
            i -= 1
        else:
            j -= 1
    return matched


def _fill_leftovers(labels: list[int], sounds: list[int], tokens: list[str]) -> list[int]:
    """Give sound tokens aligned to nothing a word (rule 4); labels stay non-decreasing."""
    filled = list(labels)
    before = -1
    for position, label in enumerate(labels):
        if label >= 0:
            before = position
            continue
        after = next((labels[p] for p in range(position + 1, len(labels)) if labels[p] >= 0), -1)
        if before < 0:
            filled[position] = after
        elif after < 0 or not _space_between(tokens, sounds[before], sounds[position]):
            filled[position] = filled[before]
        else:
            filled[position] = after
    return filled


def _space_between(tokens: list[str], first: int, last: int) -> bool:
    return any(token.isspace() for token in tokens[first + 1:last])


def _share_by_length(lengths: list[int], count: int) -> list[int]:
    """Spread ``count`` tokens over words in proportion to their lengths, in order."""
    bounds = np.cumsum(lengths) / sum(lengths) * count
    return [int(np.searchsorted(bounds, k + 0.5)) for k in range(count)]


# -- the whole utterance -----------------------------------------------------------------------


class TimedChunk(Protocol):
    """What :func:`join_words` needs of a chunk (an engine :class:`~.metrics.Chunk` has it)."""

    text: str
    audio: np.ndarray
    words: Sequence[Word]


def join_words(chunks: Iterable[TimedChunk], sample_rate: int = SAMPLE_RATE) -> list[Word]:
    """The words of consecutive chunks, placed in their joined audio and joined text.

    Chunk ``i`` starts at the summed audio length of the chunks before it (their pauses
    included), and its text at the summed length of their texts plus one space each, so the
    character spans index ``" ".join(chunk.text for chunk in chunks)``.
    """
    joined: list[Word] = []
    samples = chars = 0
    for chunk in chunks:
        offset = samples / sample_rate
        joined.extend(
            replace(w, start=w.start + offset, end=w.end + offset,
                    char_start=w.char_start + chars, char_end=w.char_end + chars)
            for w in chunk.words)
        samples += len(chunk.audio)
        chars += len(chunk.text) + 1
    return joined


def locate_words(words: Sequence[Word], text: str) -> list[Word]:
    """The same words with their character spans found in ``text`` (e.g. the cell as typed).

    Words are searched in order from the end of the previous one, so a repeated word maps to
    its own occurrence. A word the text does not hold verbatim (Unicode normalisation changed
    it) gets an empty span where the search stands.
    """
    located, cursor = [], 0
    for word in words:
        found = text.find(word.text, cursor)
        if found < 0:
            located.append(replace(word, char_start=cursor, char_end=cursor))
            continue
        cursor = found + len(word.text)
        located.append(replace(word, char_start=found, char_end=cursor))
    return located


# -- captions ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cue:
    """One caption: the words shown together from ``start`` to ``end`` seconds."""

    start: float
    end: float
    words: tuple[Word, ...]

    @property
    def text(self) -> str:
        return caption_text(self.words)


def caption_text(words: Sequence[Word]) -> str:
    """Words joined as the text had them: a space between, none where they touched (CJK)."""
    parts = []
    for index, word in enumerate(words):
        if index and word.char_start != words[index - 1].char_end:
            parts.append(" ")
        parts.append(word.text)
    return "".join(parts)


def cues(words: Sequence[Word], max_chars: int = MAX_CUE_CHARS,
         max_seconds: float = MAX_CUE_SECONDS) -> list[Cue]:
    """Group words into readable cues.

    A cue ends after a sentence end (not an abbreviation's full stop: "Dr.", "e.g."), after a
    clause mark once it holds half of ``max_chars``, and before a word that would make it
    longer than ``max_chars`` characters or ``max_seconds`` seconds. It stays up until the next
    cue when the gap is under
    :data:`CUE_HOLD_S` and always lasts at least a millisecond.
    """
    if max_chars < 1 or max_seconds <= 0:
        raise ValueError(f"max_chars must be ≥ 1 and max_seconds > 0, got {max_chars}, "
                         f"{max_seconds}")
    groups: list[list[Word]] = []
    for word in words:
        current = groups[-1] if groups else None
        if current is None or _full(current, word, max_chars, max_seconds):
            groups.append([word])
        else:
            current.append(word)
    made = []
    for index, group in enumerate(groups):
        start, end = group[0].start, max(w.end for w in group)
        if index + 1 < len(groups):
            following = groups[index + 1][0].start
            if following - end < CUE_HOLD_S:
                end = max(end, following)
        made.append(Cue(start, max(end, start + 0.001), tuple(group)))
    return made


def _full(group: list[Word], word: Word, max_chars: int, max_seconds: float) -> bool:
    """Whether ``word`` must start a new cue after ``group``."""
    last = group[-1].text.rstrip("\"'”’)]」』")
    if last[-1:] and last[-1] in SENTENCE_MARKS and not _abbreviation(last, word.text):
        return True
    length = len(caption_text(group))
    if last[-1:] and last[-1] in CLAUSE_MARKS + "、" and length >= max_chars / 2:
        return True
    if len(caption_text([*group, word])) > max_chars:
        return True
    return word.end - group[0].start > max_seconds


def _abbreviation(word: str, following: str) -> bool:
    """Whether the full stop ending ``word`` is more likely an abbreviation's than a sentence's.

    It is when the word has another dot inside ("e.g.", "p.m.", "J.R.R."), is a capitalised
    word of at most three letters ("Dr.", "Mrs.", "St."), or the next word starts in lower case.
    """
    if not word.endswith("."):
        return False
    stem = word[:-1]
    return ("." in stem or (stem[:1].isupper() and stem.isalpha() and len(stem) <= 3)
            or following[:1].islower())


def to_vtt(words: Sequence[Word], *, word_timestamps: bool = False,
           max_chars: int = MAX_CUE_CHARS, max_seconds: float = MAX_CUE_SECONDS) -> str:
    """WebVTT captions of ``words`` (a browser's ``<track>`` reads them).

    With ``word_timestamps`` each word after a cue's first is preceded by a ``<hh:mm:ss.ttt>``
    tag at its start (karaoke-style; browsers style spoken words with ``::cue(:past)``); tags
    are kept strictly inside the cue and increasing, as the format requires.
    """
    lines = ["WEBVTT", ""]
    for cue in cues(words, max_chars, max_seconds):
        lines.append(f"{_timestamp(cue.start, '.')} --> {_timestamp(cue.end, '.')}")
        lines.append(_vtt_payload(cue, word_timestamps))
        lines.append("")
    return "\n".join(lines)


def _vtt_payload(cue: Cue, word_timestamps: bool) -> str:
    parts = []
    last_tag = _milliseconds(cue.start)
    for index, word in enumerate(cue.words):
        if index and word.char_start != cue.words[index - 1].char_end:
            parts.append(" ")
        tag = _milliseconds(word.start)
        if word_timestamps and index and last_tag < tag < _milliseconds(cue.end):
            parts.append(f"<{_timestamp(word.start, '.')}>")
            last_tag = tag
        parts.append(_vtt_escape(word.text))
    return "".join(parts)


def _vtt_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_srt(words: Sequence[Word], *, max_chars: int = MAX_CUE_CHARS,
           max_seconds: float = MAX_CUE_SECONDS) -> str:
    """SubRip (.srt) captions of ``words``: numbered cues, ``hh:mm:ss,ttt`` times."""
    blocks = [
        f"{number}\n{_timestamp(cue.start, ',')} --> {_timestamp(cue.end, ',')}\n{cue.text}\n"
        for number, cue in enumerate(cues(words, max_chars, max_seconds), start=1)
    ]
    return "\n".join(blocks)


def _milliseconds(seconds: float) -> int:
    return int(round(seconds * 1000))


def _timestamp(seconds: float, separator: str) -> str:
    total = max(0, _milliseconds(seconds))
    hours, rest = divmod(total, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


__all__ = [
    "SAMPLES_PER_UNIT", "Cue", "TimedChunk", "Word", "WordTimingError", "align", "caption_text",
    "chunk_words", "cues", "is_sound", "join_words", "locate_words", "split_text", "to_srt",
    "to_vtt",
]
