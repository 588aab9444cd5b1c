"""Intelligibility of the streamed audio, judged by an independent ASR, and the quality tools.

The fast tests check the judges themselves on signals whose answer is known by construction;
the ``asr``/``model`` tests compare kokoro_lab's streamed output with kokoro-onnx's own
rendering of the same texts by Whisper tiny.en.
"""

from __future__ import annotations

import numpy as np
import pytest

from kokoro_lab import quality

SR = quality.SAMPLE_RATE

# Short, phonetically varied sentences; the last one is long enough to be streamed in chunks.
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Please call Stella and ask her to bring these things from the store.",
    "It was a bright cold day in April, and the clocks were striking thirteen.",
]

# --------------------------------------------------------------------------------------------
# fast unit tests


def tone(freq: float, seconds: float = 0.5, rate: int = SR, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_normalize_text_spells_numbers_and_drops_punctuation():
    assert quality.normalize_text("Forty-two, Mr. Smith!") == "forty two mr smith"
    assert quality.normalize_text("42 cats; 1,200 dogs & 3%") == (
        "forty two cats one thousand two hundred dogs and three percent")
    assert quality.normalize_text("Don't STOP") == "dont stop"


def test_number_words():
    assert quality.number_words(0) == "zero"
    assert quality.number_words(115) == "one hundred fifteen"
    assert quality.number_words(2_000_019) == "two million nineteen"
    with pytest.raises(ValueError):
        quality.number_words(-1)


def test_wer_counts_edits_after_normalisation():
    assert quality.wer("Hello, world!", "hello world") == 0.0
    assert quality.wer("the cat sat down", "the cat sat") == pytest.approx(0.25)
    assert quality.wer("the cat sat down", "a cat sat down") == pytest.approx(0.25)
    assert quality.wer("one two", "") == 1.0
    with pytest.raises(ValueError, match="no words"):
        quality.wer("?!", "anything")


def test_corpus_wer_pools_words():
    refs = ["the cat sat down", "a b"]
    # one substitution in 6 reference words; an empty hypothesis deletes all its words
    assert quality.corpus_wer(refs, ["the dog sat down", "a b"]) == pytest.approx(1 / 6)
    assert quality.corpus_wer(refs, ["the cat sat down", ""]) == pytest.approx(2 / 6)
    with pytest.raises(ValueError, match="hypotheses"):
        quality.corpus_wer(refs, ["x"])


def test_resample_keeps_frequency_and_level():
    out = quality.resample(tone(1000.0, 1.0), SR, 16_000)
    assert out.size == 16_000
    spectrum = np.abs(np.fft.rfft(out * np.hanning(out.size)))
    assert np.argmax(spectrum) == pytest.approx(1000, abs=1)  # 1 Hz bins over 1 s
    middle = out[2000:-2000]
    assert np.sqrt(np.mean(middle**2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.01)


def test_resample_removes_energy_above_new_nyquist():
    # 10 kHz is representable at 24 kHz but must not fold to 6 kHz at 16 kHz
    out = quality.resample(tone(10_000.0, 1.0), SR, 16_000)
    assert np.sqrt(np.mean(out[2000:-2000] ** 2)) < 0.005


def test_log_mel_distance_scales_with_difference():
    rng = np.random.default_rng(0)
    a = (0.1 * rng.standard_normal(SR // 2)).astype(np.float32)  # energy in every mel band
    assert quality.log_mel_distance(a, a) == 0.0
    # halving the amplitude is -6.02 dB in every band
    assert quality.log_mel_distance(a, a * 0.5) == pytest.approx(20 * np.log10(2), abs=0.01)
    # another noise of the same level differs only by the estimate's scatter: a few dB
    other = (0.1 * rng.standard_normal(SR // 2)).astype(np.float32)
    assert 1.0 < quality.log_mel_distance(a, other) < 6.0
    # a tone against noise is far apart
    assert quality.log_mel_distance(a, tone(440.0)) > 20.0
    # unequal lengths are cut to the shorter, not rejected
    assert quality.log_mel_distance(a, a[: a.size // 2]) == 0.0
    with pytest.raises(ValueError):
        quality.log_mel_distance(a, np.zeros(0))


def test_find_discontinuities_finds_a_click_and_not_a_tone():
    clean = tone(220.0, 1.0)
    assert quality.find_discontinuities(clean) == []
    # a hard cut from mid-wave to silence, where the sine is near its peak
    peak = int(np.argmax(np.abs(clean[11_900:12_100]))) + 11_900
    clicked = clean.copy()
    clicked[peak:] = 0.0
    hits = quality.find_discontinuities(clicked)
    assert [h.index for h in hits] == [peak]
    assert hits[0].jump == pytest.approx(abs(clean[peak - 1]), abs=0.02)


def test_find_discontinuities_ignores_noise_and_quiet_jumps():
    rng = np.random.default_rng(1)
    noise = (0.2 * rng.standard_normal(SR)).astype(np.float32)
    assert quality.find_discontinuities(noise) == []
    quiet = np.zeros(SR, np.float32)
    quiet[5000:] = 0.01  # a ratio-infinite but inaudible step
    assert quality.find_discontinuities(quiet) == []


def test_join_discontinuities_only_reports_joins():
    a, b = tone(220.0, 0.5), tone(220.0, 0.5)  # b starts at 0
    peak = int(np.argmax(a[-200:])) + a.size - 200
    hits = quality.join_discontinuities([a[:peak], b])
    assert [h.index for h in hits] == [peak]
    # the same click far from any join is not reported as a join problem
    clicked = np.concatenate([a[:peak], b])
    assert quality.join_discontinuities([clicked[:1000], clicked[1000:]]) == []
    assert quality.join_discontinuities([a]) == []


def test_transcribe_rejects_bad_audio():
    with pytest.raises(ValueError, match="empty"):
        quality.transcribe(np.zeros(0, np.float32))
    with pytest.raises(ValueError, match="mono"):
        quality.transcribe(np.zeros((2, 100), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        quality.transcribe(np.array([0.0, np.nan], np.float32))


# --------------------------------------------------------------------------------------------
# real model + real ASR


@pytest.fixture(scope="module")
def renderings(synth):
    """Each sentence rendered by kokoro_lab's stream and by kokoro-onnx, same model and voice."""
    from kokoro_onnx import Kokoro

    from kokoro_lab import assets

    reference = Kokoro(str(assets.model_path("int8")), str(assets.voices_path()))
    ours, theirs = [], []
    for text in SENTENCES:
        ours.append(synth.synthesize(text, voice="af_heart"))
        samples, rate = reference.create(text, "af_heart")
        assert rate == SR
        theirs.append(np.asarray(samples, dtype=np.float32))
    return ours, theirs


@pytest.mark.asr
@pytest.mark.model
def test_streamed_audio_is_as_intelligible_as_kokoro_onnx(renderings):
    ours, theirs = renderings
    ours_text = [quality.transcribe(result.audio) for result in ours]
    theirs_text = [quality.transcribe(audio) for audio in theirs]
    ours_wer = quality.corpus_wer(SENTENCES, ours_text)
    theirs_wer = quality.corpus_wer(SENTENCES, theirs_text)
    assert ours_wer <= theirs_wer + 0.02, (ours_text, theirs_text)
    # and the judge is not trivially lenient: kokoro-onnx itself is understood
    assert theirs_wer < 0.2, theirs_text


@pytest.mark.asr
@pytest.mark.model
def test_streamed_chunk_joins_do_not_click(renderings):
    ours, _ = renderings
    assert any(len(result.chunks) > 1 for result in ours), "no sentence was streamed in chunks"
    for result in ours:
        pieces = [chunk.audio for chunk in result.chunks]
        assert all(np.all(np.isfinite(p)) for p in pieces)
        assert quality.join_discontinuities(pieces) == []


@pytest.mark.asr
@pytest.mark.model
def test_asr_hears_the_difference_between_texts(renderings):
    # guards against a judge that returns the same transcript for anything
    ours, _ = renderings
    first = quality.transcribe(ours[0].audio)
    assert quality.wer(SENTENCES[0], first) < quality.wer(SENTENCES[1], first)


# --------------------------------------------------------------------------------------------
# judges by ear: PESQ wide-band and DNSMOS on real renderings


@pytest.mark.asr
@pytest.mark.model
def test_pesq_ranks_a_rendering_above_a_damaged_copy(renderings):
    ours, theirs = renderings
    reference = theirs[0]
    same = quality.pesq_wb(reference, reference)
    ours_vs_reference = quality.pesq_wb(reference, ours[0].audio)
    noisy = reference + np.random.default_rng(0).normal(0, 0.05, reference.size)
    damaged = quality.pesq_wb(reference, noisy.astype(np.float32))
    assert same > 4.5  # identical signals sit at the top of the scale
    assert damaged < ours_vs_reference, (damaged, ours_vs_reference)
    assert damaged < 3.0


@pytest.mark.asr
@pytest.mark.model
def test_dnsmos_hears_noise_and_scores_speech_plausibly(renderings):
    _, theirs = renderings
    clean = quality.dnsmos(theirs[0])
    assert set(clean) == {"ovrl", "sig", "bak", "p808"}
    assert 2.5 < clean["ovrl"] < 4.5, clean
    noisy = theirs[0] + np.random.default_rng(1).normal(0, 0.05, theirs[0].size)
    assert quality.dnsmos(noisy.astype(np.float32))["bak"] < clean["bak"] - 0.5


def test_judges_reject_bad_audio():
    with pytest.raises(ValueError, match="empty"):
        quality.dnsmos(np.zeros(0, np.float32))
    with pytest.raises(ValueError, match="NaN"):
        quality.pesq_wb(np.ones(24000, np.float32), np.full(24000, np.nan, np.float32))
    with pytest.raises(ValueError, match="0.25 s"):
        quality.pesq_wb(np.ones(100, np.float32), np.ones(100, np.float32))
