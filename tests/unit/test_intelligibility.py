"""The quality judges themselves, on signals whose answer is known by construction.
"""


from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from kokoro_lab import quality
from kokoro_lab.quality import _dnsmos
from tests.intelligibility_support import SR


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


def test_judges_reject_bad_audio():
    with pytest.raises(ValueError, match="empty"):
        quality.dnsmos(np.zeros(0, np.float32))
    with pytest.raises(ValueError, match="NaN"):
        quality.pesq_wb(np.ones(24000, np.float32), np.full(24000, np.nan, np.float32))
    with pytest.raises(ValueError, match="0.25 s"):
        quality.pesq_wb(np.ones(100, np.float32), np.ones(100, np.float32))


def test_dnsmos_scores_every_window_by_integer_indices_over_offsets(monkeypatch):
    """speechmos's own loop drops every window from the 8th on (float slicing leaves it one
    sample short): here a 30 s clip is scored over all its windows, each exactly 9.01 s, at
    every start offset, each offset weighing the same."""
    seen: list[tuple[int, int]] = []

    def window_score(model, segment):
        seen.append((len(segment), int(round(segment[0] * 1e6))))
        return (3.0, 3.5, 4.0, 3.2)

    monkeypatch.setattr(_dnsmos, "_dnsmos_model", lambda: None)
    monkeypatch.setattr(_dnsmos, "_dnsmos_window", window_score)
    ramp = np.arange(30 * 16_000, dtype=np.float64) / 1e6  # sample i holds i µ, so starts show
    scores = quality.dnsmos(ramp.astype(np.float32), sample_rate=16_000, offsets=4)
    window = int(round(quality.DNSMOS_WINDOW_S * 16_000))
    assert {length for length, _ in seen} == {window}
    starts = sorted(start for _, start in seen)
    per_offset = (30 * 16_000 - window) // 16_000 + 1  # 21 windows fit from offset 0
    assert len([s for s in starts if s % 16_000 == 0]) == per_offset
    assert {s % 16_000 for s in starts} == {0, 4000, 8000, 12000}
    assert max(starts) + window > 29 * 16_000  # the last second counts too
    assert scores["ovrl"] == pytest.approx(3.0) and scores["ovrl_spread"] == 0.0


def test_dnsmos_offsets_average_out_a_reading_that_moves_with_the_start(monkeypatch):
    """A reading that depends on where the window starts (as DNSMOS's does, ±0.05 for a 25 ms
    shift) is averaged over the start offsets: shifting the audio by 25 ms moves the averaged
    score far less than one reading."""
    monkeypatch.setattr(_dnsmos, "_dnsmos_model", lambda: None)

    def phase_reading(model, segment):
        return (3.0 + 0.1 * np.sin(segment[0] * 2 * np.pi),) * 4

    monkeypatch.setattr(_dnsmos, "_dnsmos_window", phase_reading)
    t = np.arange(12 * 16_000) / 16_000  # one cycle per second: the reading depends on the start
    x = np.mod(t, 1.0).astype(np.float32)
    shifted = np.roll(x, 400)  # 25 ms
    one = [quality.dnsmos(a, 16_000, offsets=1)["ovrl"] for a in (x, shifted)]
    many = [quality.dnsmos(a, 16_000, offsets=16)["ovrl"] for a in (x, shifted)]
    assert abs(many[0] - many[1]) < abs(one[0] - one[1]) / 5


# librosa's reference, computed in a child process: importing librosa JIT-compiles its numba
# ufuncs (none of them on the mel spectrogram's path). NUMBA_OPT=0 compiles them without LLVM's
# optimisations (12 s instead of 18 s on a fresh machine), and NUMBA_CACHE_DIR keeps that
# unoptimised code out of the caches in site-packages, where another user of librosa would load
# it.
LIBROSA_MEL = """
import sys
import numpy as np
import librosa
audio = np.load(sys.argv[1])
mel = librosa.feature.melspectrogram(y=audio, sr=16_000, n_fft=321, hop_length=160, n_mels=120)
np.save(sys.argv[2], ((librosa.power_to_db(mel, ref=np.max) + 40) / 40).T)
"""


@pytest.mark.compiles
def test_dnsmos_mel_input_is_what_speechmos_gets_from_librosa(tmp_path):
    """The P.808 model's input, computed in numpy, equals speechmos's librosa call."""
    pytest.importorskip("librosa")
    rng = np.random.default_rng(3)
    t = np.arange(16_000 * 2) / 16_000
    audio = (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))
             + 0.01 * rng.standard_normal(t.size)).astype(np.float32)
    np.save(tmp_path / "audio.npy", audio)
    env = {**os.environ, "NUMBA_OPT": "0", "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    subprocess.run([sys.executable, "-c", LIBROSA_MEL, str(tmp_path / "audio.npy"),
                    str(tmp_path / "mel.npy")], check=True, env=env, timeout=600)
    np.testing.assert_allclose(_dnsmos.mel_db(audio), np.load(tmp_path / "mel.npy"), atol=2e-4)
