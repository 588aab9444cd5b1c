"""Chunk sizing from the playback buffer and the measured speed (fast, no model)."""

from __future__ import annotations

from kokoro_lab.engine.chunking import EFFICIENT_CAP
from kokoro_lab.engine.scheduling import MIN_BUDGET, Scheduler, SpeedModel


def test_speed_model_learns_a_faster_machine():
    model = SpeedModel()
    slow = model.predict_synthesis_s(100)
    for phonemes in (20, 60, 120, 200, 40, 90, 150, 30, 70, 180, 110, 50):
        model.observe(phonemes, 0.01 + 0.001 * phonemes, 0.06 * phonemes, speed=1.0)
    assert model.predict_synthesis_s(100) < slow / 3
    assert abs(model.audio_per_phoneme_s - 0.06) < 0.01


def test_budget_grows_with_the_buffer_and_respects_floor_and_cap():
    scheduler = Scheduler(SpeedModel())
    assert scheduler.budget(now=0.0) == MIN_BUDGET  # nothing buffered yet
    scheduler.chunk_ready(now=1.0, audio_s=1.5)
    small = scheduler.budget(now=1.0)
    scheduler.chunk_ready(now=2.0, audio_s=6.0)
    large = scheduler.budget(now=2.0)
    assert MIN_BUDGET <= small < large <= EFFICIENT_CAP
    scheduler.chunk_ready(now=3.0, audio_s=60.0)
    assert scheduler.budget(now=3.0) == EFFICIENT_CAP


def test_buffer_drains_with_playback_time():
    scheduler = Scheduler(SpeedModel())
    scheduler.chunk_ready(now=10.0, audio_s=4.0)
    assert scheduler.buffered_s(10.0) == 4.0
    assert scheduler.buffered_s(13.0) == 1.0
    assert scheduler.buffered_s(20.0) == 0.0
