"""Chunk sizing from the playback buffer and the measured speed (fast, no model)."""

from __future__ import annotations

from kokoro_lab.engine.chunking import EFFICIENT_CAP
from kokoro_lab.engine.scheduling import MIN_BUDGET, Scheduler, SpeedModel


def fitted(fixed_s: float, per_phoneme_s: float) -> SpeedModel:
    """A speed model that has measured chunks costing ``fixed + per_phoneme × n`` seconds
    and yielding 0.06 s of audio per phoneme."""
    model = SpeedModel()
    for phonemes in (20, 60, 120, 200):
        model.observe(phonemes, fixed_s + per_phoneme_s * phonemes, 0.06 * phonemes, speed=1.0)
    return model


def test_speed_model_learns_a_faster_machine():
    model = SpeedModel()
    slow = model.predict_synthesis_s(100)
    for phonemes in (20, 60, 120, 200, 40, 90, 150, 30, 70, 180, 110, 50):
        model.observe(phonemes, 0.01 + 0.001 * phonemes, 0.06 * phonemes, speed=1.0)
    assert model.predict_synthesis_s(100) < slow / 3
    assert abs(model.audio_per_phoneme_s - 0.06) < 0.01


def test_budget_grows_with_the_buffer_and_respects_floor_and_cap():
    scheduler = Scheduler(SpeedModel())
    # nothing buffered yet: the smallest chunk that makes more audio than it costs
    assert scheduler.budget(now=0.0) == max(MIN_BUDGET, scheduler.model.break_even(EFFICIENT_CAP))
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


def test_a_machine_slower_than_real_time_gets_the_largest_chunks():
    model = fitted(1.0, 0.2)
    scheduler = Scheduler(model)
    scheduler.chunk_ready(now=0.0, audio_s=1.0)
    # Small chunks would stall for ever; the cap stalls least.
    assert scheduler.budget(now=0.5) == EFFICIENT_CAP


def test_break_even_chunk_when_the_buffer_is_short():
    model = fitted(0.6, 0.03)
    # audio 0.06/phoneme vs cost 0.6 + 0.03/phoneme (×1.1 margin): break-even ≈ 25 phonemes
    assert 20 <= model.break_even(EFFICIENT_CAP) <= 30
    scheduler = Scheduler(model)
    scheduler.chunk_ready(now=0.0, audio_s=0.5)
    assert scheduler.budget(now=0.0) == max(MIN_BUDGET, model.break_even(EFFICIENT_CAP))


def test_lane_budget_counts_audio_still_in_flight():
    lane = SpeedModel(prior_scale=1.4)
    scheduler = Scheduler(SpeedModel())
    scheduler.chunk_ready(now=0.0, audio_s=1.0)
    assert scheduler.lane_budget(0.0, pending_s=0.0, lane=lane) is None  # stay in latency mode
    budget = scheduler.lane_budget(0.0, pending_s=8.0, lane=lane)
    assert budget is not None and budget >= 40


def test_lanes_run_at_the_cap_when_the_machine_cannot_keep_up():
    slow = fitted(1.0, 0.2)
    scheduler = Scheduler(slow)
    assert not slow.keeps_up()
    assert scheduler.lane_budget(0.0, pending_s=0.0, lane=slow) == EFFICIENT_CAP


def test_fixed_plans_ignore_measured_speed():
    scheduler = Scheduler(SpeedModel(), adaptive=False)
    assert scheduler.budget(now=0.0) == EFFICIENT_CAP
    scheduler.chunk_ready(now=0.0, audio_s=0.5)
    assert scheduler.budget(now=10.0) == EFFICIENT_CAP


def test_a_long_text_jumps_to_a_larger_chunk_when_a_stall_is_unavoidable():
    from kokoro_lab.engine.scheduling import JUMP, LONG_TEXT_CHARS, MAX_JUMP_STALL_S

    model = fitted(0.8, 0.03)
    scheduler = Scheduler(model)
    scheduler.chunk_ready(now=0.0, audio_s=1.0)  # too little buffered to grow without a stall
    break_even = model.break_even(EFFICIENT_CAP)
    assert scheduler.budget(now=0.0, remaining_chars=100) == max(MIN_BUDGET, break_even)
    jump = scheduler.budget(now=0.0, remaining_chars=LONG_TEXT_CHARS + 1)
    assert break_even < jump <= min(EFFICIENT_CAP, JUMP * break_even)
    # the stall it costs is bounded
    assert model.predict_synthesis_s(jump) <= 1.0 + MAX_JUMP_STALL_S + 1e-9
