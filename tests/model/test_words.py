"""Word timings from the real int8 graph's token durations (its front stage,
``split.SplitSession``), with the engine's trim reproduced as the synthesizer does it.
"""


from __future__ import annotations

import numpy as np
import pytest

from kokoro_lab.engine.words import (
    SAMPLES_PER_UNIT,
    chunk_words,
)
from tests.words_support import (
    REAL_CASES,
    SR,
    check_invariants,
    phonemizer,
    tokenizer,
)

__all__ = ['tokenizer']  # fixtures, used by name
















@pytest.fixture(scope="module")
def front_and_voice():
    from kokoro_lab.engine import assets, split
    from kokoro_lab.engine.voices import VoiceBank, parse

    session = split.SplitSession(split.split_paths("int8"))
    bank = VoiceBank(assets.voices_path(None))
    return session, bank, parse


def render(front_and_voice, tokenizer, text, voice="af_heart", speed=1.0):
    """The engine's steps for one chunk: phonemize, front stage, vocoder, trim."""
    from kokoro_onnx.trim import trim

    from kokoro_lab.engine import split

    session, bank, parse = front_and_voice
    voice = parse(voice)
    phonemes = phonemizer(tokenizer, voice.lang)(text)
    tokens = tokenizer.tokenize(phonemes)
    front = session.front(np.array([0, *tokens, 0]), bank.style(voice, len(tokens)), speed)
    raw = session.generator(front)
    speech, (trim_start, _) = trim(raw)
    return phonemes, front[split.DURATIONS].ravel(), raw, speech, int(trim_start)


@pytest.mark.model
@pytest.mark.parametrize("speed", [0.8, 1.0, 1.6])
def test_one_duration_unit_is_600_samples_at_every_speed(speed, front_and_voice, tokenizer):
    from kokoro_lab.engine import split

    _, durations, raw, _, _ = render(front_and_voice, tokenizer, "Hello there, friend.",
                                     speed=speed)
    assert SAMPLES_PER_UNIT == 2 * split.FRAME_SAMPLES
    assert len(raw) == int(durations.sum()) * SAMPLES_PER_UNIT




@pytest.fixture(scope="module")
def real_words(front_and_voice, tokenizer):
    """Each real case rendered once: (text, words, trimmed speech)."""
    made = {}
    for voice, (text, _) in REAL_CASES.items():
        phonemes, durations, _, speech, trim_start = render(front_and_voice, tokenizer, text,
                                                            voice)
        phonemize = phonemizer(tokenizer, front_and_voice[2](voice).lang)
        made[voice] = text, chunk_words(text, phonemes, durations, trim_start, len(speech),
                                        phonemize=phonemize), speech
    return made


@pytest.mark.model
@pytest.mark.parametrize("voice", list(REAL_CASES))
def test_real_timings_follow_the_speech(voice, real_words):
    from benchmarks.word_timing import quiet_runs

    text, words, speech = real_words[voice]
    check_invariants(words, text, len(speech))
    assert all(0.05 <= w.duration <= 1.6 for w in words), words  # a word, not a pile-up
    # speech starts with the first word and ends with the last (within the trim's slack)
    assert words[0].start < 0.25 and len(speech) / SR - words[-1].end < 0.25
    power = speech.astype(np.float64) ** 2
    overall = float(np.sqrt(power.mean()))
    for w in words:  # no word sits in silence
        assert np.sqrt(power[int(w.start * SR):int(w.end * SR)].mean()) > 0.2 * overall, w
    # the sentence end's silence lies at the word boundary, and the next word starts as the
    # sound resumes (the model's sound leads its token slots by a few tens of ms)
    end = next(i for i, w in enumerate(words) if w.text == REAL_CASES[voice][1])
    before, after = words[end], words[end + 1]
    pauses = [(a, b) for a, b in quiet_runs(speech) if a <= before.end + 0.05
              and after.start - 0.15 <= b <= after.start + 0.05]
    assert pauses, (before, after, quiet_runs(speech))


@pytest.mark.model
@pytest.mark.asr
def test_real_word_starts_agree_with_whisper(real_words):
    from kokoro_lab.quality import ASR_SAMPLE_RATE, normalize_text, resample, whisper_model

    text, words, speech = real_words["af_heart"]
    segments, _ = whisper_model().transcribe(
        resample(speech, SR, ASR_SAMPLE_RATE), language="en", beam_size=1, temperature=0.0,
        condition_on_previous_text=False, vad_filter=False, word_timestamps=True)
    heard = {normalize_text(w.word): w.start for s in segments for w in s.words}
    deltas = [abs(w.start - heard[key]) for w in words
              if (key := normalize_text(w.text)) in heard and text.count(w.text) == 1]
    assert len(deltas) >= len(words) // 2  # most words are heard as written
    assert np.median(deltas) <= 0.1, deltas
