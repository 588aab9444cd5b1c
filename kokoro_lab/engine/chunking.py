"""Cut text into chunks that start speaking fast and then keep ahead of playback.

The rule, in order of precedence:

1. Text is cut only between words, never inside one. Every character of the input that is
   speakable ends up in exactly one chunk, in order.
2. Cuts prefer natural boundaries: paragraph and sentence ends, then clause marks
   (``, ; : — –``), then phrase boundaries inside a clause only when the clause alone is too
   long for the budget (and plain spaces only for a clause over :data:`EFFICIENT_CAP`).
3. The **first chunk is small but whole**: its synthesis time is the time to first audio, yet
   a piece cut at random words sounds fragmented. It is the first clause when that has at most
   :data:`FIRST_WHOLE_WORDS` words; otherwise the clause is cut at a *phrase boundary*
   :data:`FIRST_MIN_WORDS`–:data:`FIRST_MAX_WORDS` words in: before a subordinating or relative
   word ("… remembered | when the light …"), else before a preposition ("… stood | at the
   edge …"; never "of", which continues a noun phrase), else before a determiner, pronoun or
   coordinator that follows a content word ("… climbed | the spiral stairs"); the nearest to
   :data:`FIRST_TARGET_WORDS` wins among equals. The word before the cut must not be one that
   needs a following word (an article, a preposition, an auxiliary…), so the cut does not fall
   after an article or inside "X of Y". With no such boundary the whole first clause is the
   first chunk. These are English closed-class word lists, not a parser: other languages
   mostly get their whole first clause, and "and" between two adjectives can still be cut.
4. **Later chunks grow**: each may be as long as the audio already buffered ahead of the
   player can cover its synthesis, predicted from measured speed, up to :data:`EFFICIENT_CAP`
   phonemes (where the model's cost per second of audio is lowest on CPU) and never over
   :data:`MAX_PHONEMES`, the model's context. A clause over the budget is cut only at a phrase
   boundary (as in rule 3) that leaves :data:`MIN_PIECE_WORDS` words on each side: the longest
   head that fits, else the shortest one (a chunk right after the first has a tiny budget, and
   sending "about how a voice assistant decides when to start speaking." whole cost a stall
   in the browser that "about how a voice assistant decides" does not). With no such boundary
   the whole clause goes over the budget ("the spiral | stairs" and a lone "meet." cost more
   to the ear than a short stall).
5. **Sentences stay whole when the budget allows**: a chunk that holds a sentence end ends
   there, so the next chunk starts a sentence instead of continuing a fragment; a chunk ends
   mid-sentence only when its first sentence alone is over the budget.

Text is split into *atoms* (clauses, or word groups of an over-long clause) lazily, so a
100,000-character text is never phonemized or held in memory all at once.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

MAX_PHONEMES = 510  # the model's context, tokens between the two pad tokens
EFFICIENT_CAP = 220  # phonemes; longer chunks cost more per second of audio on CPU
FIRST_WHOLE_WORDS = 6  # a first clause this short is the first chunk, whole
FIRST_MIN_WORDS, FIRST_TARGET_WORDS, FIRST_MAX_WORDS = 3, 4, 6  # where a longer one is cut
MIN_PIECE_WORDS = 3  # a clause cut to fit a budget leaves at least this many words each side


def _closed_class(words: str) -> frozenset[str]:
    return frozenset(words.split())


# Closed-class English words that open a phrase, by how strong a boundary they make before them.
# Coordinators rank with determiners: "and" may also join two adjectives of one noun phrase.
SUBORDINATORS = _closed_class(
    "because while when whenever where wherever whereas if unless until although though since "
    "as once that which who whom whose than whether so")
COORDINATORS = _closed_class("and but or nor yet")
PREPOSITIONS = _closed_class(
    "at in on to from with without by for into onto over under across toward towards through "
    "throughout during about above below beneath beside besides between beyond against along "
    "among around behind inside outside near past upon within like despite after before")
DETERMINERS = _closed_class(
    "the a an this these those my your his her its our their some every each no any "
    "he she it they we i you")
# Words that need a word after them: a chunk never ends on one.
NEEDS_HEAD = SUBORDINATORS | COORDINATORS | PREPOSITIONS | DETERMINERS | _closed_class(
    "of is are was were be been being am has have had do does did will would can could shall "
    "should may might must not very more most all many much few several both such")

SENTENCE_END = re.compile(r"(?<=[.!?…。！？])[\"'”’)\]]*\s+|\n\s*\n+|\n")
CLAUSE_END = re.compile(r"(?<=[,;:，；：])\s+|\s+(?=[—–]\s)|(?<=[—–])\s+")
SENTENCE_MARKS = ".!?…。！？"
CLAUSE_MARKS = ",;:—–，；："


class TextError(ValueError):
    """The text has nothing that can be spoken."""


@dataclass(frozen=True)
class Atom:
    """The smallest unit a chunk is built from: a clause or a run of words, with its phonemes."""

    text: str
    phonemes: str
    boundary: str  # what follows it: "sentence", "clause" or "word"

    @property
    def words(self) -> int:
        return len(self.text.split())


@dataclass(frozen=True)
class PlannedChunk:
    text: str
    phonemes: str
    boundary: str  # the boundary after the chunk's last atom: decides the pause after it


def clean_text(text: str) -> str:
    """Normalise Unicode and turn control characters into spaces (newlines are kept)."""
    if not isinstance(text, str):
        raise TextError(f"text must be a str, got {type(text).__name__}")
    text = unicodedata.normalize("NFC", text)
    out = []
    for char in text:
        if char == "\n":
            out.append(char)
        elif unicodedata.category(char) in ("Cc", "Cf", "Cs", "Co"):
            out.append(" ")
        else:
            out.append(char)
    return "".join(out).replace("\r", "")


def _split(pattern: re.Pattern, text: str) -> list[str]:
    return [piece.strip() for piece in pattern.split(text) if piece and piece.strip()]


def sentences(text: str) -> Iterator[str]:
    """Sentences (and lines) of ``text`` in order, lazily."""
    start = 0
    for match in SENTENCE_END.finditer(text):
        piece = text[start : match.start()].strip()
        if piece:
            yield piece
        start = match.end()
    tail = text[start:].strip()
    if tail:
        yield tail


def boundary_of(text: str) -> str:
    tail = text.rstrip("\"'”’)] ")
    if tail[-1:] and tail[-1] in SENTENCE_MARKS:
        return "sentence"
    if tail[-1:] and tail[-1] in CLAUSE_MARKS:
        return "clause"
    return "word"


def atoms(text: str, phonemize: Callable[[str], str], cleaned: bool = False) -> Iterator[Atom]:
    """Clauses of ``text`` with their phonemes; clauses over the cap become word groups.

    Pieces that phonemize to nothing (emoji, stray symbols) are dropped here, so they can
    never produce an empty chunk. ``cleaned=True``: the text is already normalised
    (:func:`clean_text`; a checked request's text is).
    """
    for sentence in sentences(text if cleaned else clean_text(text)):
        clauses = _split(CLAUSE_END, sentence)
        for position, clause in enumerate(clauses):
            last = position == len(clauses) - 1
            boundary = "sentence" if last else boundary_of(clause)
            if boundary == "word" and not last:
                boundary = "clause"  # a dash split
            yield from _clause_atoms(clause, boundary, phonemize)


def _clause_atoms(clause: str, boundary: str, phonemize: Callable[[str], str]) -> Iterator[Atom]:
    phonemes = speakable(phonemize(clause))
    if not phonemes:
        return
    if len(phonemes) <= EFFICIENT_CAP:
        yield Atom(clause, phonemes, boundary)
        return
    # Too long for one efficient chunk: split into balanced runs of words.
    words = clause.split()
    groups = max(2, -(-len(phonemes) // EFFICIENT_CAP))
    size = -(-len(words) // groups)
    runs = [" ".join(words[i : i + size]) for i in range(0, len(words), size)]
    for index, run in enumerate(runs):
        run_phonemes = speakable(phonemize(run))
        if not run_phonemes:
            continue
        if len(run_phonemes) > MAX_PHONEMES:
            # A single "word" longer than the context (e.g. a URL): cut its phonemes.
            for start in range(0, len(run_phonemes), MAX_PHONEMES):
                yield Atom(run, run_phonemes[start : start + MAX_PHONEMES], "word")
            continue
        yield Atom(run, run_phonemes, boundary if index == len(runs) - 1 else "word")


def speakable(phonemes: str) -> str:
    """The phonemes if they hold any sound, else "" (punctuation alone makes no speech)."""
    return phonemes if any(ch.isalpha() for ch in phonemes) else ""


def split_words(atom: Atom, max_words: int, phonemize: Callable[[str], str]) -> tuple[Atom, Atom]:
    """Cut an atom after ``max_words`` words: (head, rest)."""
    words = atom.text.split()
    head_text, rest_text = " ".join(words[:max_words]), " ".join(words[max_words:])
    return (
        Atom(head_text, speakable(phonemize(head_text)), "word"),
        Atom(rest_text, speakable(phonemize(rest_text)), atom.boundary),
    )


def _bare(word: str) -> str:
    return word.strip("\"'“”‘’()[]").lower()


def phrase_boundaries(words: list[str], lowest: int = 1,
                      highest: int | None = None) -> dict[int, int]:
    """Phrase boundaries of a clause: ``{cut: rank}``, where ``cut`` is the number of words
    before it (``lowest``–``highest``) and rank 0 is the strongest (see rule 3)."""
    found = {}
    highest = len(words) - 1 if highest is None else min(highest, len(words) - 1)
    for cut in range(max(1, lowest), highest + 1):
        before, after = _bare(words[cut - 1]), _bare(words[cut])
        if before in NEEDS_HEAD or not before.isalpha():
            continue
        if after in SUBORDINATORS:
            found[cut] = 0
        elif after in PREPOSITIONS:
            found[cut] = 1
        elif after in DETERMINERS or after in COORDINATORS:
            found[cut] = 2
    return found


def phrase_cut(words: list[str]) -> int | None:
    """Where to cut a long first clause (the head's word count), or None: see rule 3."""
    found = phrase_boundaries(words, FIRST_MIN_WORDS, FIRST_MAX_WORDS)
    if not found:
        return None
    return min(found, key=lambda cut: (found[cut], abs(cut - FIRST_TARGET_WORDS), cut))


def budget_cut(words: list[str], phonemes: int, budget: int) -> int | None:
    """Where to cut a clause over the budget (rule 4): among the phrase boundaries that leave at
    least :data:`MIN_PIECE_WORDS` words on each side, the longest head that fits ``budget`` by
    its share of the characters, else the shortest head (the least over the budget); None when
    the clause has no such boundary."""
    cuts = phrase_boundaries(words, MIN_PIECE_WORDS, len(words) - MIN_PIECE_WORDS)
    if not cuts:
        return None
    chars = sum(len(word) + 1 for word in words)
    fitting = [cut for cut in cuts
               if phonemes * sum(len(word) + 1 for word in words[:cut]) / chars <= budget]
    return max(fitting) if fitting else min(cuts)


class ChunkPlanner:
    """Packs atoms into chunks: a small first chunk, then chunks sized by a budget.

    ``budget()`` is asked before each chunk after the first and returns the largest phoneme
    count whose synthesis the playback buffer can cover (see :mod:`scheduling`).
    """

    def __init__(self, text: str, phonemize: Callable[[str], str], cleaned: bool = False):
        self._phonemize = phonemize
        self._atoms = atoms(text, phonemize, cleaned)
        self._pending: list[Atom] = []
        self.first = True
        self.planned_chars = 0  # characters of text handed out in chunks so far

    def _next_atom(self) -> Atom | None:
        if self._pending:
            return self._pending.pop(0)
        return next(self._atoms, None)

    def _push_back(self, atom: Atom) -> None:
        if atom.phonemes:  # a split can leave words that phonemize to nothing (emoji)
            self._pending.insert(0, atom)

    def _end_on_sentence(self, parts: list[Atom]) -> list[Atom]:
        """Rule 5: a chunk that holds a sentence end ends there; the rest waits for the next."""
        ends = [i for i, part in enumerate(parts) if part.boundary == "sentence"]
        if not ends or ends[-1] == len(parts) - 1:
            return parts
        for part in reversed(parts[ends[-1] + 1:]):
            self._push_back(part)
        return parts[: ends[-1] + 1]

    def next_chunk(self, budget: int) -> PlannedChunk | None:
        """The next chunk of at most ``budget`` phonemes (at least one word), or None at the end."""
        budget = max(1, min(budget, MAX_PHONEMES))
        atom = self._next_atom()
        if atom is None:
            return None
        if self.first:
            self.first = False
            cut = phrase_cut(atom.text.split()) if atom.words > FIRST_WHOLE_WORDS else None
            if cut is not None:
                head, rest = split_words(atom, cut, self._phonemize)
                if head.phonemes:
                    atom = head
                    self._push_back(rest)
            self.planned_chars += len(atom.text) + 1
            return PlannedChunk(atom.text, atom.phonemes, atom.boundary)
        if len(atom.phonemes) > budget:
            cut = budget_cut(atom.text.split(), len(atom.phonemes), budget)
            if cut is not None:
                head, rest = split_words(atom, cut, self._phonemize)
                if head.phonemes:
                    atom = head
                    self._push_back(rest)
        parts = [atom]
        size = len(atom.phonemes)
        while True:
            following = self._next_atom()
            if following is None:
                break
            if size + 1 + len(following.phonemes) > budget:
                self._push_back(following)
                break
            parts.append(following)
            size += 1 + len(following.phonemes)
        parts = self._end_on_sentence(parts)
        self.planned_chars += sum(len(p.text) + 1 for p in parts)
        return PlannedChunk(
            " ".join(p.text for p in parts),
            " ".join(p.phonemes for p in parts),
            parts[-1].boundary,
        )


def plan(text: str, phonemize: Callable[[str], str], budgets: Iterable[int]) -> list[PlannedChunk]:
    """The whole plan for fixed budgets (first chunk ignores its budget); for tests and tools."""
    planner = ChunkPlanner(text, phonemize)
    chunks = []
    budget_iter = iter(budgets)
    while True:
        chunk = planner.next_chunk(next(budget_iter, EFFICIENT_CAP))
        if chunk is None:
            return chunks
        chunks.append(chunk)
