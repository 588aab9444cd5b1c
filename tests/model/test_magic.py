"""``%%speak``'s lifecycle in an in-process IPython shell with the real model: results, charts,
the queue, re-runs, interrupts and unloading. The magics share the session's warm
synthesizer, so the suite loads the model once.
"""


from __future__ import annotations

import _thread
import signal
import threading
import time

import numpy as np
import pytest
from IPython.core.error import UsageError

from kokoro_lab.engine.sessions import SESSIONS
from kokoro_lab.notebook import SpeakResult
from tests.magic_support import LONG, ip, magics, run_error, warm

__all__ = ['ip', 'magics', 'warm']  # fixtures, used by name











@pytest.mark.model
def test_unknown_voice_and_speed_are_reported_before_anything_plays(ip, warm):
    error = run_error(ip, "%%speak -v nobody_here\nHello.")
    assert isinstance(error, UsageError) and "unknown voice 'nobody_here'" in str(error)
    error = run_error(ip, "%%speak -s 9\nHello.")
    assert isinstance(error, UsageError) and "speed" in str(error)
    assert warm.current is None


@pytest.mark.model
def test_speak_wait_stores_a_complete_result(ip, warm, tmp_path, capsys):
    ip.user_ns["who"] = "Ada"
    ip.run_cell_magic("speak", "--wait --no-plot -o res", "Hello {who}. Bye {stranger}.")
    assert "{stranger} not defined" in capsys.readouterr().err
    res = ip.user_ns["res"]
    assert isinstance(res, SpeakResult) and res.state == "complete"
    assert res.text == "Hello Ada. Bye {stranger}."
    assert res.sample_rate == 24000 and res.provider == "cpu" and res.precision == "int8"
    assert len(res.chunks) >= 1 and res.duration_s > 0.5
    records = res.records()
    assert [r["index"] for r in records] == list(range(len(records)))
    assert res.to_dataframe()["audio_ms"].sum() == pytest.approx(res.duration_s * 1000, abs=1)
    saved = res.save(tmp_path / "res.wav")
    assert saved.stat().st_size == 44 + 2 * len(res.audio)
    page = res._repr_html_()
    assert "<audio controls" in page and "per-chunk metrics" in page
    assert "heard in the browser" in page and "engine (internal)" in page
    # The player kept every chunk for pages that connect later: the same audio, in 16 bits.
    np.testing.assert_allclose(res.player.audio, res.audio, atol=1 / 32767)


@pytest.mark.model
def test_the_chart_follows_the_stream(ip, warm):
    ip.run_cell_magic("speak", "--wait -o charted", "Charts too.")
    chart = ip.user_ns["charted"]._feeder.chart
    deadline = time.monotonic() + 10
    while not chart.widget.outputs and time.monotonic() < deadline:
        time.sleep(0.05)  # drawn by its own thread
    (output,) = chart.widget.outputs
    figure = output["data"]["application/vnd.plotly.v1+json"]
    assert figure["data"][0]["x"] == [c.index for c in ip.user_ns["charted"].chunks]
    # No page here: synthesis only, labelled as the engine's figure, no playback invented.
    assert chart.first_audio_ms() is None and chart.playback() == []
    assert "engine (internal)" in figure["layout"]["title"]["text"]
    assert chart.draws >= 1 and chart.draw_cpu_s > 0  # its cost is measured (reported)


@pytest.mark.model
def test_raw_keeps_braces(ip, warm):
    ip.user_ns["who"] = "Ada"
    ip.run_line_magic("speak", "--raw --wait --no-play --no-plot -o raw Hi {who}.")
    assert ip.user_ns["raw"].text == "Hi {who}."




def first_chunk(result, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not result.chunks and time.monotonic() < deadline:
        time.sleep(0.05)


@pytest.mark.model
def test_a_speak_from_another_cell_queues_behind_the_one_playing(ip, warm):
    ip.run_cell_magic("speak", "--no-plot -o first", LONG)
    first = ip.user_ns["first"]
    first_chunk(first)
    ip.run_cell_magic("speak", "--no-plot --wait -o second", "Second.")
    second = ip.user_ns["second"]
    assert first.wait(120).state == "complete" and second.state == "complete"
    # Its synthesis started only when the first had finished: no competition for the CPU.
    assert second.chunks[0].started >= first.chunks[-1].finished
    # and the page is told to play it after the first one.
    assert second.player.stream["after"] == first.player.stream_id


@pytest.mark.model
def test_now_interrupts_what_plays(ip, warm):
    ip.run_cell_magic("speak", "--no-plot -o first", LONG)
    first = ip.user_ns["first"]
    first_chunk(first)
    ip.run_cell_magic("speak", "--no-plot --now --wait -o second", "Second.")
    assert first.wait(10).state == "stopped" and "--now" in first.reason
    assert ip.user_ns["second"].state == "complete"
    assert ip.user_ns["second"].player.stream["after"] is None
    assert first.player.message.startswith("stopped by a newer")


@pytest.mark.model
def test_running_the_same_cell_again_replaces_its_speech(ip, warm):
    ip.parent_header = {"metadata": {"cellId": "cell-a"}}
    try:
        ip.run_cell_magic("speak", "--no-plot -o first", LONG)
        first = ip.user_ns["first"]
        first_chunk(first)
        ip.run_cell_magic("speak", "--no-plot --wait -o again", "Again.")
    finally:
        ip.parent_header = {}
    assert first.wait(10).state == "stopped" and "this cell ran again" in first.reason
    assert ip.user_ns["again"].player.stream["after"] is None


@pytest.mark.model
def test_interrupt_during_wait_cancels_the_stream(ip, warm):
    long_text = " ".join(["An interrupted sentence that would otherwise go on."] * 10)
    interrupted = threading.Event()

    def interrupt_after_first_chunk():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            res = ip.user_ns.get("cut")
            if res is not None and res.chunks:
                _thread.interrupt_main()  # what a kernel interrupt does to a busy cell
                interrupted.set()
                return
            time.sleep(0.02)

    ip.user_ns.pop("cut", None)
    # Cache off: the text repeats one sentence, and chunks from the cache would end the
    # speech before the interrupt is raised (the cell then ends normally, the race it lost).
    # (The synthesizer is the session's shared one, which a cache test may have given a cache.)
    # A busy kernel cell runs under Python's own SIGINT handler (interrupt_main does nothing
    # under another, and a library earlier in this process may have set one).
    cache, warm.synth.cache = warm.synth.cache, None
    handler = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        threading.Thread(target=interrupt_after_first_chunk, daemon=True).start()
        result = ip.run_cell(f"%%speak --wait --no-plot -o cut\n{long_text}")
    finally:
        warm.synth.cache = cache
        signal.signal(signal.SIGINT, handler)
    assert interrupted.is_set()
    assert isinstance(result.error_in_exec, KeyboardInterrupt)
    cut = ip.user_ns["cut"]
    assert cut.wait(10).state == "stopped" and cut.reason == "interrupted"
    assert not cut._feeder.running


@pytest.mark.model
def test_unload_stops_streams_and_frees_sessions(ip, warm):
    ip.run_cell_magic("speak", "--no-plot --wait -o heard_already", "Short.")
    done = ip.user_ns["heard_already"]
    # a page reported it played it out: a finished player must keep its "done" state
    done.player._on_frontend_msg(None, {"type": "heard", "stream": done.player.stream_id,
                                        "final": True, "played_s": done.duration_s}, [])
    ip.run_cell_magic("speak", "--no-plot --wait -o made", "Made, not yet played.")
    made = ip.user_ns["made"]  # no page has played it out: it is still live for the listener
    ip.run_cell_magic("speak", "--no-plot -o last", "One more sentence to cut short. " * 5)
    speech = warm.current
    ip.run_line_magic("unload_ext", "kokoro_lab")
    try:
        assert done.player.stream["state"] == "ended" and done.state == "complete"
        # all of it is in the page already: it plays out there, unstopped
        assert made.state == "complete" and made.player.stop_reason is None
        assert not speech.running and speech.result.cancelled
        assert len(SESSIONS) == 0
        assert "speak" not in ip.magics_manager.magics["cell"]
        assert warm not in ip.configurables
        names = [t.name for t in threading.enumerate()]
        assert not [n for n in names if n.startswith(("kokoro-lab-speech", "kokoro-lab-stream"))]
    finally:
        ip.run_line_magic("load_ext", "kokoro_lab")


def test_an_assigned_line_magic_gets_the_finished_result_and_the_cache_is_a_setting(ip, warm):
    from kokoro_lab.engine.cache import ChunkCache

    warm.synth.cache = ChunkCache()  # the session's synthesizer runs without one
    ip.run_cell("res2 = %speak --wait --no-play --no-plot Assigned at once.")
    res2 = ip.user_ns["res2"]
    assert isinstance(res2, SpeakResult) and res2.state == "complete" and res2.chunks
    ip.run_cell("again = %speak --wait --no-play --no-plot Assigned at once.")
    assert all(c.cached for c in ip.user_ns["again"].chunks)  # made before: from memory
    breakdown = res2._feeder.milestones
    assert list(breakdown)[:3] == ["magic parsed", "model ready", "request checked"]
    ip.run_line_magic("config", "SpeakMagics.cache = False")
    try:
        assert warm.synth.cache is None
        ip.run_cell("fresh = %speak --wait --no-play --no-plot Assigned at once.")
        assert not any(c.cached for c in ip.user_ns["fresh"].chunks)
        ip.run_line_magic("config", "SpeakMagics.cache = True")
        assert warm.synth.cache is not None
    finally:
        warm.synth.cache = None
