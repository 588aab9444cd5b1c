"""DNSMOS (Microsoft's non-intrusive MOS predictor) over every window and start offset.

The rules, and why this does not call ``speechmos.dnsmos.run``:

* Every window counts. The models score 9.01 s windows 1 s apart; speechmos slices them with a
  float product, so from the 8th window on each comes out one sample short and is silently
  dropped (only the first ~15 s of a file counted). Here windows are cut by integer sample
  indices: every window that fits is scored.
* One reading moves by up to ~0.07 when the same audio shifts by 25 ms, so the score is averaged
  over start offsets spread evenly within one hop (:data:`DNSMOS_OFFSETS`, fewer for audio over
  20 s, at least 4), each offset's windows averaged first so every offset weighs the same.
* Audio shorter than a window and a hop is looped to cover them, as the model's own code loops
  a short clip, and cut there: one window per start offset (a doubled 2 s clip would give seven
  windows of the same loop per offset, seven times the work for the same reading). Compare
  clips of similar length.
* The P.808 model's mel spectrogram is computed here in numpy, exactly as speechmos asks
  librosa for it (a 321-point centred STFT, hop 160, 120 Slaney mel bands, power in dB against
  the maximum, ``(dB + 40) / 40``): librosa's first call JIT-compiles with numba and keeps
  ~250 MB that can never be given back. Only speechmos's ONNX models are used.
"""

from __future__ import annotations

import os
import threading
from functools import lru_cache
from pathlib import Path

import numpy as np

from ._signal import SAMPLE_RATE, JudgeUnavailable, _to_judge_rate

DNSMOS_RATE = 16_000
DNSMOS_WINDOW_S = 9.01  # the models' input length
DNSMOS_HOP_S = 1.0  # windows start this far apart, as in speechmos
# Start offsets within one hop, averaged (fewer for long audio). Each window costs a model run
# (~50 ms on a 2-core CPU); $KOKORO_LAB_DNSMOS_OFFSETS lowers it for quick runs (the tests).
DNSMOS_OFFSETS = int(os.environ.get("KOKORO_LAB_DNSMOS_OFFSETS", "16"))
DNSMOS_OFFSET_BUDGET_S = 320.0  # offsets x duration stays near this: 16 offsets up to 20 s
MEL_FFT, MEL_HOP, MEL_BANDS = 321, 160, 120
# speechmos's fit from the models' raw outputs to MOS (not the personalized model)
POLY_OVRL = np.poly1d([-0.06766283, 1.11546468, 0.04602535])
POLY_SIG = np.poly1d([-0.08397278, 1.22083953, 0.0052439])
POLY_BAK = np.poly1d([-0.13166888, 1.60915514, -0.39604546])

_LOCK = threading.Lock()
_SESSIONS: tuple | None = None  # (primary, p808) ONNX Runtime sessions


def dnsmos(audio: np.ndarray, sample_rate: int = SAMPLE_RATE,
           offsets: int | None = None) -> dict[str, float]:
    """DNSMOS scores of ``audio``: ``{"ovrl", "sig", "bak", "p808"}`` (1–5, higher is better),
    plus ``"ovrl_spread"``, how far OVRL moves between start offsets (its standard deviation).
    See the module's rules."""
    model = _dnsmos_model()
    samples = _to_judge_rate(audio, sample_rate, "dnsmos")
    window = int(round(DNSMOS_WINDOW_S * DNSMOS_RATE))
    hop = int(round(DNSMOS_HOP_S * DNSMOS_RATE))
    duration_s = samples.size / DNSMOS_RATE
    count = offsets or min(DNSMOS_OFFSETS, max(4, int(DNSMOS_OFFSET_BUDGET_S
                                                      / max(duration_s, 1e-9))))
    if samples.size < window + hop:  # loop a short clip (as the model's code does), then cut
        samples = np.resize(samples, window + hop)
    per_offset = []
    for offset in np.linspace(0, hop, count, endpoint=False).astype(int):
        starts = range(int(offset), samples.size - window + 1, hop)
        per_offset.append(np.mean([_dnsmos_window(model, samples[s:s + window])
                                   for s in starts], axis=0))
    scores = np.mean(per_offset, axis=0)
    return {"ovrl": float(scores[0]), "sig": float(scores[1]), "bak": float(scores[2]),
            "p808": float(scores[3]), "ovrl_spread": float(np.std([p[0] for p in per_offset]))}


def _dnsmos_model() -> tuple:
    """speechmos's two ONNX models (they ship in its wheel), loaded once."""
    global _SESSIONS
    with _LOCK:
        if _SESSIONS is None:
            try:
                import onnxruntime as ort
                import speechmos
            except ImportError as error:
                raise JudgeUnavailable(
                    f"DNSMOS needs speechmos's models: pip install speechmos ({error})") from None
            folder = Path(speechmos.__file__).parent / "dnsmos_models"
            options = ort.SessionOptions()
            options.log_severity_level = 3
            _SESSIONS = tuple(ort.InferenceSession(str(folder / name), options,
                                                   providers=["CPUExecutionProvider"])
                              for name in ("sig_bak_ovr.onnx", "model_v8.onnx"))
        return _SESSIONS


def _dnsmos_window(model: tuple, segment: np.ndarray) -> tuple[float, float, float, float]:
    """(OVRL, SIG, BAK, P.808) of one 9.01 s window, as speechmos scores one."""
    primary, p808 = model
    features = segment.astype(np.float32)[np.newaxis, :]
    mel = mel_db(segment[:-MEL_HOP])[np.newaxis]
    with _LOCK:  # one pair of sessions, shared by every caller
        p808_mos = float(p808.run(None, {"input_1": mel})[0][0][0])
        sig_raw, bak_raw, ovr_raw = primary.run(None, {"input_1": features})[0][0]
    return (float(POLY_OVRL(ovr_raw)), float(POLY_SIG(sig_raw)), float(POLY_BAK(bak_raw)),
            p808_mos)


def mel_db(audio: np.ndarray) -> np.ndarray:
    """The P.808 model's input: (frames, 120) float32, as speechmos gets it from librosa
    (``melspectrogram(n_fft=321, hop_length=160, n_mels=120)``, centred with zero padding,
    periodic Hann window, Slaney mel bands; ``(power_to_db(ref=max) + 40) / 40``)."""
    audio = np.asarray(audio, dtype=np.float32).ravel()
    padded = np.pad(audio, MEL_FFT // 2)
    frames = 1 + (padded.size - MEL_FFT) // MEL_HOP
    index = np.arange(MEL_FFT)[None, :] + MEL_HOP * np.arange(frames)[:, None]
    spectrum = np.fft.rfft(padded[index] * _hann(MEL_FFT), axis=1)
    power = (spectrum.real ** 2 + spectrum.imag ** 2).astype(np.float32)
    mel = power @ _slaney_mel(DNSMOS_RATE, MEL_FFT, MEL_BANDS).T
    db = 10.0 * np.log10(np.maximum(mel, 1e-10)) - 10.0 * np.log10(max(float(mel.max()), 1e-10))
    db = np.maximum(db, db.max() - 80.0)
    return ((db + 40.0) / 40.0).astype(np.float32)


@lru_cache(maxsize=2)
def _hann(length: int) -> np.ndarray:
    """The periodic Hann window (scipy's ``get_window("hann", n)``, librosa's default)."""
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(length) / length)).astype(np.float32)


def _slaney_hz_to_mel(hz: np.ndarray) -> np.ndarray:
    hz = np.asarray(hz, dtype=np.float64)
    mel = hz / (200.0 / 3)
    log = hz >= 1000.0
    return np.where(log, 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / (np.log(6.4) / 27.0),
                    mel)


def _slaney_mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    return np.where(mel >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0)),
                    mel * (200.0 / 3))


@lru_cache(maxsize=2)
def _slaney_mel(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    """librosa's ``filters.mel`` (Slaney scale and area normalisation), float32."""
    bins = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    edges = _slaney_mel_to_hz(np.linspace(_slaney_hz_to_mel(0.0),
                                          _slaney_hz_to_mel(sample_rate / 2.0), n_mels + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - bins[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return weights.astype(np.float32)


def release_dnsmos() -> None:
    """Drop the DNSMOS sessions; the next judgement loads them again."""
    global _SESSIONS
    with _LOCK:
        _SESSIONS = None


__all__ = ["DNSMOS_OFFSETS", "DNSMOS_WINDOW_S", "dnsmos", "mel_db", "release_dnsmos"]
