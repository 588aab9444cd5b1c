"""The player's kernel → page protocol (widget state and chunk models) and the page's reports.

These tests record what the Player and its chunk models put on their comms (the real
ipywidgets/anywidget send path, with comms that record instead of publishing) and play the
page's part by delivering its reports; the page's own scheduling rules run in Node. A real
kernel and the real model: ``tests/model/test_player_protocol.py``.
"""


from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from kokoro_lab.notebook import Player
from kokoro_lab.notebook.player import PCM_SCALE, chunk_model_id
from tests.player_fakes import chunk_opens, deliver, recording, stream_updates, tone

__all__ = ["recording"]  # the fixture, used by name


def test_chunks_go_out_at_once_without_any_handshake(recording):
    player = Player()
    stream = player.start(label="test")
    player.push(tone(2400))
    player.push(tone(4800, 1))
    opens = chunk_opens(recording)
    assert [comm_id for comm_id, _, _ in opens] == [
        chunk_model_id(player.player_id, stream, 0), chunk_model_id(player.player_id, stream, 1)]
    assert [u["chunks"] for u in stream_updates(recording, player)] == [0, 1, 2]


def test_a_chunk_exists_before_the_count_that_announces_it(recording):
    player = Player()
    stream = player.start()
    for i in range(3):
        player.push(tone(100 + i, i))
    order = [(comm_id, kind, data) for comm_id, kind, data, _ in recording]
    for seq in range(3):
        opened = order.index(next(o for o in order if o[0] == chunk_model_id(
            player.player_id, stream, seq) and o[1] == "comm_open"))
        announced = next(i for i, (comm_id, kind, data) in enumerate(order)
                         if comm_id == player.comm.comm_id and kind == "comm_msg"
                         and data["state"].get("stream", {}).get("chunks") == seq + 1)
        assert opened < announced


def test_pcm_sizes_sequence_numbers_and_metadata(recording):
    player = Player()
    stream = player.start()
    sizes = [1200, 24000, 7, 36000]
    for i, n in enumerate(sizes):
        assert player.push(tone(n, i), index=10 + i, ready_ms=5.0) == i
    player.finish(engine_first_audio_ms=12.5)
    opens = chunk_opens(recording)
    for seq, ((_, state, buffers), n) in enumerate(zip(opens, sizes, strict=True)):
        meta = state["meta"]
        assert meta["seq"] == seq and meta["index"] == 10 + seq and meta["samples"] == n
        assert meta["ready_ms"] == 5.0 and meta["age_ms"] >= 0
        pcm = np.frombuffer(bytes(buffers[0]), "<i2")  # int16 in a binary buffer, no base64
        assert pcm.size == n
        np.testing.assert_allclose(pcm / PCM_SCALE, tone(n, seq), atol=1 / PCM_SCALE)
    last = stream_updates(recording, player)[-1]
    assert last["id"] == stream and last["state"] == "ended" and last["chunks"] == 4
    assert last["samples"] == sum(sizes)
    assert last["end"]["chunks"] == 4 and last["end"]["engine_first_audio_ms"] == 12.5
    assert [r["seq"] for r in player.sent] == [0, 1, 2, 3]
    np.testing.assert_allclose(player.audio, np.concatenate(
        [tone(n, i) for i, n in enumerate(sizes)]), atol=1 / PCM_SCALE)


def test_ages_count_from_the_request(recording):
    player = Player()
    player.start(requested=time.perf_counter() - 2.0)
    player.push(tone(10))
    ages = [u["age_ms"] for u in stream_updates(recording, player)]
    assert ages == sorted(ages) and 2000 <= ages[0] < 10000


def test_a_page_that_asks_for_the_state_gets_the_live_streams_age_now(recording, monkeypatch):
    """A reloaded page asks for the state after the last chunk went out; the age it gets is
    the stream's age when it asked (so it knows it joined late), not that chunk's, whether it
    asks the widget or, as JupyterLab's widget manager does, every widget at once on the
    control comm. The kernel's clock is stepped by hand: the ages are exact."""
    import kokoro_lab.notebook.player as player_module

    now = [100.0]
    monkeypatch.setattr(player_module, "time", SimpleNamespace(
        perf_counter=lambda: now[0], thread_time=time.thread_time))
    asks = {"content": {"data": {"method": "request_state"}}, "buffers": []}
    player = Player()
    player.start(requested=99.0)
    player.push(tone(10))
    assert stream_updates(recording, player)[-1]["age_ms"] == 1000.0
    now[0] = 106.0  # no chunk since
    player._handle_msg(asks)
    sent = stream_updates(recording, player)[-1]
    assert sent["age_ms"] == 7000.0 and sent["chunks"] == 1 and sent["state"] == "live"
    now[0] = 107.5  # the control comm's request_states reads every widget's get_state()
    assert player.get_state()["stream"]["age_ms"] == 8500.0
    assert player.get_state("stream")["stream"]["age_ms"] == 8500.0
    player.finish()  # at 107.5
    now[0] = 110.0
    player._handle_msg(asks)  # an ended stream keeps the age of its end
    assert {u["age_ms"] for u in stream_updates(recording, player)
            if u["state"] == "ended"} == {8500.0}
    assert player.get_state()["stream"]["age_ms"] == 8500.0


def test_a_new_stream_closes_the_previous_chunks_and_names_its_predecessor(recording):
    player = Player()
    first = player.start()
    player.push(tone(10))
    second = player.start(after="other-stream", order=7)
    closed = [comm_id for comm_id, kind, _, _ in recording if kind == "comm_close"]
    assert closed == [chunk_model_id(player.player_id, first, 0)]
    state = stream_updates(recording, player)[-1]
    assert state["id"] == second and state["after"] == "other-stream" and state["order"] == 7
    assert state["state"] == "live" and state["chunks"] == 0


def test_stop_from_the_kernel_and_from_the_page(recording):
    player = Player()
    stream = player.start()
    player.push(tone(100))
    requests = []
    player.on_stop_request(requests.append)
    deliver(player, {"type": "stop_request", "client": "a", "stream": "old-stream"})
    assert requests == [] and player.live  # a stale stream's Stop does not stop this one
    deliver(player, {"type": "stop_request", "client": "a", "stream": stream})
    assert requests == [stream]
    state = stream_updates(recording, player)[-1]
    assert state["state"] == "stopped" and state["stop_reason"] == "Stop pressed"
    assert player.message == "Stop pressed" and player.stop_reason == "Stop pressed"
    player.push(tone(100))  # a chunk made after a stop is kept (full audio)
    assert len(player.audio) == 200


def test_push_misuse_is_refused_clearly(recording):
    player = Player()
    with pytest.raises(RuntimeError, match="start"):
        player.push(tone(10))
    player.start()
    with pytest.raises(ValueError, match="mono"):
        player.push(np.zeros((2, 10), np.float32))
    player.finish()
    with pytest.raises(RuntimeError, match="ended"):
        player.push(tone(10))


def test_browser_engine_scheduling_rules_in_node():
    """extension/test/*.test.js: gapless starts, underruns, the blocked queue, dedup, stop."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (the front-end build needs it too)")
    extension = Path(__file__).resolve().parents[2] / "extension"
    done = subprocess.run([node, "--test", "test/"], cwd=extension, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "# fail 0" in done.stdout


def test_a_late_read_report_is_aged_from_when_the_page_made_it(recording):
    """The kernel reads page reports only when its main thread is free: a buffer report read
    5 s late must count from when the page measured it (its age since the request)."""
    player = Player()
    requested = time.perf_counter() - 6.0
    player.start(requested=requested)
    seen = []
    player.on_report(seen.append)
    deliver(player, {"type": "buffer", "stream": player.stream_id, "ahead_s": 4.0,
                     "age_ms": 1000.0})
    (report,) = seen
    assert report["made"] == pytest.approx(requested + 1.0)
    assert report["received"] - report["made"] > 4.9
    deliver(player, {"type": "buffer", "stream": player.stream_id, "ahead_s": 1.0})
    assert seen[-1]["made"] == seen[-1]["received"]  # a page that does not say: when read


def test_the_kernels_steps_ride_with_the_stream_for_the_first_sound_breakdown(recording):
    player = Player()
    requested = time.perf_counter()
    player.start(requested=requested, milestones={"magic parsed": requested + 0.004,
                                                 "request checked": requested + 0.010})
    assert player.stream["milestones"] == {"magic parsed": 4.0, "request checked": 10.0}
