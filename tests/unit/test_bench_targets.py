"""The bench's targets: the naturalness target is the mean gain over the held-back texts."""

from __future__ import annotations

from kokoro_lab.lab.bench import KOKORO_LAB, KOKORO_LAB_OFF, KOKORO_ONNX, TEXTS, _targets
from kokoro_lab.lab.texts import HELD_BACK


def rows_with(streamed: dict[str, float]) -> list[dict]:
    """Bench rows for every text: kokoro-onnx's whole text at DNSMOS 3.40, the stream at
    ``streamed[text]`` (3.40 where not given)."""
    rows = []
    for text in TEXTS:
        for system, first, dnsmos in ((KOKORO_ONNX, 9000.0, 3.40),
                                      (KOKORO_LAB, 300.0, streamed.get(text, 3.40)),
                                      (KOKORO_LAB_OFF, 700.0, 3.40)):
            rows.append({"text": text, "system": system, "first_audio_ms": first,
                         "total_ms": 1000.0, "underrun_ms_max": 0.0, "wer": 0.0,
                         "dnsmos_ovrl": dnsmos})
    return rows


def naturalness(targets: dict[str, bool]) -> tuple[str, bool]:
    [(name, met)] = [(n, ok) for n, ok in targets.items() if n.startswith("held-back texts")]
    return name, met


def test_held_back_texts_are_benched_before_the_longest():
    assert set(HELD_BACK) <= set(TEXTS) and list(TEXTS)[-1] == "300 words"


def test_the_naturalness_target_is_the_mean_gain_over_the_held_back_texts():
    names = list(HELD_BACK)
    gains = [0.01 + 0.05 * i / (len(names) - 1) for i in range(len(names))]  # +0.010 … +0.060
    streamed = {name: 3.40 + gain for name, gain in zip(names, gains, strict=True)}
    _, targets = _targets(rows_with(streamed), list(TEXTS))
    name, met = naturalness(targets)
    assert met and "+0.035 over" in name and "(per text +0.010, " in name and "+0.060)" in name

    streamed = {name: 3.40 + 0.025 for name in names} | {"300 words": 3.60}
    _, targets = _targets(rows_with(streamed), list(TEXTS))
    name, met = naturalness(targets)  # a gain on a tuned-on text does not count
    assert not met and "+0.025 over" in name
