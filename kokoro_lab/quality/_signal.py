"""Audio measurements with no model: resampling, PESQ wide-band, log-mel distance, clicks."""

from __future__ import annotations

from dataclasses import dataclass
from math import gcd

import numpy as np

SAMPLE_RATE = 24_000
JUDGE_SAMPLE_RATE = 16_000  # PESQ wide-band and DNSMOS listen at 16 kHz


def resample(audio: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """Polyphase resampling (upsample, Kaiser-windowed sinc low-pass, decimate) in numpy.

    The low-pass cuts at the lower of the two Nyquist rates so that 24 kHz → 16 kHz does not
    fold 8–12 kHz energy back into the band Whisper listens to.
    """
    audio = np.asarray(audio, dtype=np.float64).ravel()
    if source_rate <= 0 or target_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {source_rate} → {target_rate}")
    if source_rate == target_rate or audio.size == 0:
        return audio.astype(np.float32)
    divisor = gcd(source_rate, target_rate)
    up, down = target_rate // divisor, source_rate // divisor
    factor = max(up, down)
    half_taps = 16 * factor  # 16 zero crossings each side: > 60 dB stop band with beta 8
    n = np.arange(-half_taps, half_taps + 1)
    cutoff = 1.0 / factor  # as a fraction of the upsampled Nyquist rate
    taps = cutoff * np.sinc(cutoff * n) * np.kaiser(2 * half_taps + 1, 8.0)
    taps *= up / taps.sum()  # unity gain after zero-stuffing by ``up``
    stuffed = np.zeros(audio.size * up)
    stuffed[::up] = audio
    filtered = np.convolve(stuffed, taps, mode="same")
    return filtered[::down].astype(np.float32)


class JudgeUnavailable(RuntimeError):
    """A listening judge's package (``pesq``, ``speechmos``/``librosa``) is not installed."""


def _to_judge_rate(audio: np.ndarray, sample_rate: int, name: str) -> np.ndarray:
    audio = np.asarray(audio, dtype=np.float32).ravel()
    if audio.size == 0:
        raise ValueError(f"{name}: the audio is empty")
    if not np.all(np.isfinite(audio)):
        raise ValueError(f"{name}: the audio contains NaN or infinite samples")
    return np.clip(resample(audio, sample_rate, JUDGE_SAMPLE_RATE), -1.0, 1.0)


def pesq_wb(reference: np.ndarray, degraded: np.ndarray,
            sample_rate: int = SAMPLE_RATE) -> float:
    """PESQ wide-band MOS-LQO (1.0–4.64) of ``degraded`` against ``reference``.

    Both are resampled to 16 kHz. PESQ's own alignment absorbs small timing differences, so
    two renderings of one text may differ in length by a few frames.
    """
    try:
        from pesq import pesq
    except ImportError:
        raise JudgeUnavailable("PESQ needs the pesq package: pip install pesq") from None
    ref = _to_judge_rate(reference, sample_rate, "pesq_wb reference")
    deg = _to_judge_rate(degraded, sample_rate, "pesq_wb degraded")
    if min(ref.size, deg.size) < JUDGE_SAMPLE_RATE // 4:
        raise ValueError("pesq_wb needs at least 0.25 s of audio on both sides")
    return float(pesq(JUDGE_SAMPLE_RATE, ref, deg, "wb"))


def _mel_filterbank(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    """Triangular filters evenly spaced on the HTK mel scale, shape (n_mels, n_fft // 2 + 1)."""
    def to_mel(hz):
        return 2595.0 * np.log10(1.0 + np.asarray(hz) / 700.0)

    def to_hz(mel):
        return 700.0 * (10.0 ** (np.asarray(mel) / 2595.0) - 1.0)

    edges = to_hz(np.linspace(to_mel(0.0), to_mel(sample_rate / 2), n_mels + 2))
    bins = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins - lower) / (centre - lower)
    falling = (upper - bins) / (upper - centre)
    return np.maximum(0.0, np.minimum(rising, falling))


def log_mel(audio: np.ndarray, sample_rate: int = SAMPLE_RATE, n_fft: int = 1024,
            hop: int = 256, n_mels: int = 80) -> np.ndarray:
    """Log-mel power spectrogram in dB, shape (frames, n_mels)."""
    audio = np.asarray(audio, dtype=np.float64).ravel()
    if audio.size < n_fft:
        audio = np.pad(audio, (0, n_fft - audio.size))
    frames = 1 + (audio.size - n_fft) // hop
    index = np.arange(n_fft)[None, :] + hop * np.arange(frames)[:, None]
    spectrum = np.abs(np.fft.rfft(audio[index] * np.hanning(n_fft), axis=1)) ** 2
    mel = spectrum @ _mel_filterbank(sample_rate, n_fft, n_mels).T
    return 10.0 * np.log10(np.maximum(mel, 1e-10))


def log_mel_distance(a: np.ndarray, b: np.ndarray, sample_rate: int = SAMPLE_RATE,
                     top_db: float = 80.0) -> float:
    """Mean absolute log-mel difference in dB between two renderings of the same thing.

    The longer signal is cut to the shorter one's length (renderings of one text differ by a
    few frames at most). Both spectrograms are floored ``top_db`` below their joint peak, so
    the difference between two near-silences does not swamp the speech.
    """
    a, b = np.asarray(a).ravel(), np.asarray(b).ravel()
    if a.size == 0 or b.size == 0:
        raise ValueError("log_mel_distance needs two non-empty signals")
    length = min(a.size, b.size)
    mel_a, mel_b = log_mel(a[:length], sample_rate), log_mel(b[:length], sample_rate)
    floor = max(mel_a.max(), mel_b.max()) - top_db
    return float(np.mean(np.abs(np.maximum(mel_a, floor) - np.maximum(mel_b, floor))))


@dataclass(frozen=True)
class Discontinuity:
    """A sample-to-sample jump far above its neighbourhood's level."""

    index: int  # the jump is between samples index - 1 and index
    jump: float  # |x[index] - x[index - 1]|
    ratio: float  # jump over the local RMS of the first difference (excluding itself)

    def at_ms(self, sample_rate: int = SAMPLE_RATE) -> float:
        return self.index / sample_rate * 1000


def find_discontinuities(audio: np.ndarray, sample_rate: int = SAMPLE_RATE,
                         window_ms: float = 5.0, ratio: float = 8.0,
                         min_jump: float = 0.05) -> list[Discontinuity]:
    """Clicks: first differences ``ratio`` times above the local RMS of the first difference.

    The local level is taken over ``window_ms`` around each sample *without* the sample
    itself, so a lone spike cannot hide by inflating its own yardstick; ``min_jump`` ignores
    tiny jumps in near-silence where any ratio is large.
    """
    audio = np.asarray(audio, dtype=np.float64).ravel()
    if audio.size < 3:
        return []
    diff = np.diff(audio)
    energy = diff**2
    width = max(3, int(window_ms / 1000 * sample_rate) | 1)
    window_sum = np.convolve(energy, np.ones(width), mode="same")
    # near the ends the window is truncated: divide by how many samples it really covered
    counts = np.convolve(np.ones_like(energy), np.ones(width), mode="same")
    local_rms = np.sqrt(np.maximum(window_sum - energy, 0.0) / np.maximum(counts - 1, 1))
    jumps = np.abs(diff)
    hits = np.flatnonzero((jumps > min_jump) & (jumps > ratio * np.maximum(local_rms, 1e-9)))
    return [Discontinuity(index=int(i) + 1, jump=float(jumps[i]),
                          ratio=float(jumps[i] / max(local_rms[i], 1e-9))) for i in hits]


def join_discontinuities(pieces: list[np.ndarray], sample_rate: int = SAMPLE_RATE,
                         near_ms: float = 10.0, **options) -> list[Discontinuity]:
    """Discontinuities within ``near_ms`` of the joins when ``pieces`` are concatenated."""
    if len(pieces) < 2:
        return []
    joins = np.cumsum([len(p) for p in pieces[:-1]])
    audio = np.concatenate([np.asarray(p, dtype=np.float64).ravel() for p in pieces])
    near = near_ms / 1000 * sample_rate
    return [d for d in find_discontinuities(audio, sample_rate, **options)
            if np.min(np.abs(joins - d.index)) <= near]
