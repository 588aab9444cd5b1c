"""Simulated playback: time to first audible sample and underruns (fast, no model)."""

from __future__ import annotations

import wave

import numpy as np

from kokoro_lab.engine.metrics import (
    SAMPLE_RATE,
    first_audible_sample,
    simulate_playback,
    write_wav,
)


def tone(seconds: float, lead_silence: float = 0.0) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    audio = 0.3 * np.sin(2 * np.pi * 220 * t).astype(np.float32)
    audio[: int(lead_silence * SAMPLE_RATE)] = 0
    return audio


def test_first_audio_skips_leading_silence():
    audio = tone(1.0, lead_silence=0.25)
    assert abs(first_audible_sample(audio) - 0.25 * SAMPLE_RATE) < 30
    playback = simulate_playback([500.0], [audio])
    assert abs(playback.first_audio_ms - 750.0) < 2


def test_silent_first_chunk_does_not_count_as_first_audio():
    playback = simulate_playback([100.0, 300.0], [np.zeros(2400, np.float32), tone(1.0)])
    assert playback.first_audio_ms > 300.0


def test_late_chunk_is_an_underrun():
    # chunk 0 plays 1000 ms from t=1000; chunk 1 arrives at 2500 → 500 ms of silence
    playback = simulate_playback([1000.0, 2500.0, 2600.0], [tone(1.0), tone(1.0), tone(1.0)])
    assert playback.underruns == 1
    assert abs(playback.underrun_ms - 500.0) < 1e-6


def test_wav_round_trip(tmp_path):
    path = write_wav(tmp_path / "x.wav", tone(0.5))
    with wave.open(str(path)) as wav:
        assert wav.getframerate() == SAMPLE_RATE and wav.getnframes() == SAMPLE_RATE // 2


def test_a_start_margin_delays_playback_and_may_absorb_a_late_chunk():
    # chunk 0 ready at 1000 ms, plays from 1500; chunk 1 ready at 2300 ms, before chunk 0 ends
    without = simulate_playback([1000.0, 2300.0], [tone(1.0), tone(1.0)])
    waited = simulate_playback([1000.0, 2300.0], [tone(1.0), tone(1.0)], start_margin_ms=500.0)
    assert without.underruns == 1 and waited.underruns == 0
    assert abs(waited.first_audio_ms - (without.first_audio_ms + 500.0)) < 1e-6


def test_result_repr_counts_chunks_in_good_english():
    from kokoro_lab.engine.metrics import Chunk, Result

    def chunk(index: int) -> Chunk:
        return Chunk(index=index, text="Hi.", phonemes="hˈaɪ.", audio=tone(0.5), queued=0.0,
                     started=0.0, finished=0.2, provider="cpu", precision="int8",
                     voice="af_heart", speed=1.0)

    assert "<Result 1 chunk," in repr(Result(chunks=[chunk(0)]))
    assert "<Result 2 chunks," in repr(Result(chunks=[chunk(0), chunk(1)]))
    assert Result(chunks=[chunk(0)]).chunks[0].start_margin_ms == 0.0


def _chart_with(rows: int, cached: set[int] = frozenset()):
    from types import SimpleNamespace

    from kokoro_lab.notebook.chart import LatencyChart

    chart = LatencyChart()
    chart.reset(0.0)
    for i in range(rows):
        audio = np.full(24000, 0.2, np.float32)  # 1 s, audible from its first sample
        chart.add_chunk(SimpleNamespace(index=i, started=i * 0.5, finished=i * 0.5 + 0.4,
                                        synthesis_ms=0.0 if i in cached else 400.0,
                                        audio_ms=1000.0, audio=audio, cached=i in cached,
                                        queued=0.0))
        chart.add_report({"type": "scheduled", "seq": i, "start": 1.0 + i, "duration": 1.0})
    return chart


def test_the_chart_marks_cached_chunks_and_names_the_tuning():
    chart = _chart_with(3, cached={0, 1})
    chart.tuning = "built-in"
    assert chart.title().endswith("· 2 cached · tuning: built-in")
    bars = chart.to_dict()["data"][0]
    assert bars["marker"]["color"][:2] == ["#9e9e9e"] * 2 and "cached" in bars["customdata"][0]


def test_after_a_stop_the_chart_draws_what_was_played_and_counts_it_like_the_status():
    chart = _chart_with(4)
    chart.set_heard({"first_audible_ms": 500, "since": "cell ran", "stalls": 0, "final": True,
                     "played_s": 1.5, "chunks": 2,
                     "breakdown": [["magic parsed", 2.0], ["first chunk made", 400.0],
                                   ["audible", 500.0]]})
    spans = chart.playback()
    assert [round(e - s) for s, e in spans] == [1000, 500]  # cut where the Stop came
    assert "2 chunks of 4 made" in chart.title()
    assert chart.first_sound_steps()[-1] == ("audible", 500.0)
    lanes = [trace for trace in chart.to_dict()["data"] if trace.get("y") == ["first sound"] * 3]
    assert lanes and lanes[0]["x"] == [2.0, 398.0, 100.0]


def test_a_chart_waits_to_draw_while_another_utterance_gets_to_its_first_sound():
    """An earlier utterance's final drawing waits for the next one's first chunk to be
    scheduled (FirstSoundGate), and draws at once when it is; its own hold never stops it."""
    import threading

    from kokoro_lab.notebook.chart import FirstSoundGate

    gate, earlier, next_one = FirstSoundGate(), object(), object()
    gate.hold(earlier)
    assert gate.wait_for_others(earlier, timeout=0)  # its own hold does not count
    gate.hold(next_one)
    assert not gate.wait_for_others(earlier, timeout=0)  # the newer one holds it back
    drawn = threading.Event()
    waiter = threading.Thread(target=lambda: gate.wait_for_others(earlier, 30) and drawn.set())
    waiter.start()
    assert not drawn.wait(0.1)
    gate.release(next_one)  # its first chunk was scheduled
    waiter.join(30)
    assert drawn.is_set() and gate.wait_for_others(earlier, timeout=0)
