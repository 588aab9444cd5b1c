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
    from kokoro_lab.engine.scheduling import LANE_CAP

    slow = fitted(1.0, 0.2)
    scheduler = Scheduler(slow)
    assert not slow.keeps_up()
    assert scheduler.lane_budget(0.0, pending_s=0.0, lane=slow) == min(EFFICIENT_CAP, LANE_CAP)


def test_lane_chunks_stay_under_the_lane_cap_so_two_in_flight_fit_in_memory():
    from kokoro_lab.engine.scheduling import LANE_CAP

    scheduler = Scheduler(fitted(0.3, 0.01))
    scheduler.chunk_ready(now=0.0, audio_s=60.0)
    assert scheduler.lane_budget(0.0, pending_s=0.0, lane=fitted(0.4, 0.014)) == LANE_CAP


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


# -- the player's measured buffer ---------------------------------------------------------------


def test_a_fresh_player_report_replaces_the_simulated_playback():
    from kokoro_lab.engine.scheduling import FRESH_S

    scheduler = Scheduler(SpeedModel())
    scheduler.chunk_ready(now=0.0, audio_s=5.0)
    assert scheduler.buffered_s(1.0) == 4.0  # simulated: playing since the chunk arrived
    scheduler.observe_playback(1.5, at=1.0)  # the page is behind: only 1.5 s queued
    assert scheduler.measured(1.0)
    assert scheduler.buffered_s(1.0) == 1.5
    assert scheduler.buffered_s(2.0) == 0.5  # aged by the time since the measurement
    scheduler.chunk_ready(now=2.0, audio_s=2.0)  # delivered after it: adds to it
    assert scheduler.buffered_s(2.0) == 2.5
    # a stale report no longer counts: back to the simulation (7 s made, started at 0)
    later = 1.0 + FRESH_S + 0.1
    assert not scheduler.measured(later)
    assert scheduler.buffered_s(later) == 7.0 - later


def test_a_report_measured_before_recent_deliveries_counts_them():
    scheduler = Scheduler(SpeedModel())
    scheduler.chunk_ready(now=0.0, audio_s=2.0)
    scheduler.chunk_ready(now=1.0, audio_s=3.0)
    scheduler.observe_playback(0.5, at=0.5)  # measured before the second chunk arrived
    assert scheduler.buffered_s(1.0) == 3.0  # 0.5 s left → dry at 1.0, then 3 s more
    scheduler.observe_playback(9.0, at=0.2)  # an older report arriving late is ignored
    assert scheduler.buffered_s(1.0) == 3.0


def test_the_measured_buffer_sizes_the_next_chunk():
    model = fitted(0.3, 0.01)
    simulated, reported = Scheduler(model), Scheduler(model)
    for scheduler in (simulated, reported):
        scheduler.chunk_ready(now=0.0, audio_s=4.0)
    reported.observe_playback(0.2, at=0.0)  # the browser started late and is nearly dry
    assert reported.budget(now=0.0) < simulated.budget(now=0.0)


def test_observe_playback_is_thread_safe_and_refuses_nonsense():
    import threading

    import pytest

    scheduler = Scheduler(SpeedModel())
    scheduler.chunk_ready(now=0.0, audio_s=3.0)
    threads = [threading.Thread(target=lambda i=i: [
        scheduler.observe_playback(1.0, at=float(i) + k / 1000) for k in range(200)])
        for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert scheduler.measured(3.5)
    for bad in (-1.0, float("nan")):
        with pytest.raises(ValueError, match="buffered_s"):
            scheduler.observe_playback(bad, at=0.0)


# -- the start margin -------------------------------------------------------------------------


def test_no_start_margin_when_the_machine_keeps_up():
    scheduler = Scheduler(fitted(0.3, 0.01))  # 3 ms of synthesis per 60 ms of audio
    margin = scheduler.start_margin_s(first_audio_s=1.2, remaining_phonemes=600, speed=1.0)
    assert margin == 0.0


def test_a_loaded_machine_gets_one_short_margin_instead_of_stalls():
    from kokoro_lab.engine.scheduling import MARGIN_STEP_S, STALL_TOLERANCE_S, predict_stall_s

    model = fitted(0.3, 0.01)
    scheduler = Scheduler(model)
    args = dict(first_audio_s=1.0, remaining_phonemes=150, speed=1.0)
    margin = scheduler.start_margin_s(**args, slowdown=3.0)  # chunk 0 took 3× the prediction
    assert 0.0 < margin <= 1.5
    # the margin is the smallest step whose replay has no stall
    assert predict_stall_s(model, EFFICIENT_CAP, 1.0, 150, 1.0, 3.0, margin) <= STALL_TOLERANCE_S
    assert predict_stall_s(model, EFFICIENT_CAP, 1.0, 150, 1.0, 3.0,
                           margin - MARGIN_STEP_S) > STALL_TOLERANCE_S
    # more text left to make at that speed needs a longer wait, never over the bound
    assert scheduler.start_margin_s(first_audio_s=1.0, remaining_phonemes=400, speed=1.0,
                                    slowdown=3.0) >= margin


def test_the_start_margin_is_bounded_and_zero_for_nothing_left():
    from kokoro_lab.engine.scheduling import MAX_START_MARGIN_S

    slow = Scheduler(fitted(1.0, 0.2))  # slower than real time at any chunk size
    assert slow.start_margin_s(first_audio_s=1.0, remaining_phonemes=5000, speed=1.0) \
        == MAX_START_MARGIN_S
    assert slow.start_margin_s(first_audio_s=1.0, remaining_phonemes=0, speed=1.0) == 0.0
    assert Scheduler(fitted(1.0, 0.2), adaptive=False).start_margin_s(
        first_audio_s=1.0, remaining_phonemes=500, speed=1.0) == 0.0


def test_the_start_margin_delays_the_simulated_playback():
    scheduler = Scheduler(SpeedModel())
    scheduler.chunk_ready(now=0.0, audio_s=1.0, start_margin_s=0.5)
    assert scheduler.buffered_s(0.0) == 1.5  # 0.5 s before playback starts, then 1 s of audio
    assert scheduler.buffered_s(1.0) == 0.5
