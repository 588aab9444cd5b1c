"""The player's kernel → page protocol (widget state and chunk models) and the page's reports.

With the real model: a Speech's page reports feed its result and chart (comms recorded, as in
``tests/unit/test_player_protocol.py``), and a real ipykernel driven through jupyter_client,
its IOPub watched as JupyterLab would: audio must arrive while the next cell blocks the main
thread (Run All) and inside a ``--wait`` cell, with no message from the page, and a kernel
interrupt arriving while the kernel is idle must stop the stream.
"""


from __future__ import annotations

import queue
import time

import pytest

from kokoro_lab.notebook import LatencyChart, Player, Speech
from tests.player_fakes import deliver, recording

__all__ = ["recording"]  # the fixture, used by name


class KernelFrontend:
    """Just enough of a Jupyter front end to watch the player's state in a real ipykernel."""

    def __init__(self, km, kc):
        self.km, self.kc = km, kc
        self.players: dict[str, list[dict]] = {}  # player comm id -> stream states, in order
        self.chunks: list[dict] = []  # chunk comm_opens: {id, meta, bytes, parent}
        self.replies: dict[str, dict] = {}  # execute msg id -> its reply

    def execute(self, code: str, timeout: float = 120) -> dict:
        msg_id = self.submit(code)
        return self.reply_to(msg_id, timeout)

    def submit(self, code: str) -> str:
        """Send an execute request without waiting (as Run All does)."""
        return self.kc.execute(code)

    def reply_to(self, msg_id: str, timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        while msg_id not in self.replies:
            if time.monotonic() > deadline:
                raise AssertionError("no execute reply in time")
            self.pump(0.1)
        return self.replies[msg_id]

    def pump(self, seconds: float) -> None:
        """Read iopub and shell for a while, tracking players, chunk models and replies."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                reply = self.kc.get_shell_msg(timeout=0)
                self.replies[reply["parent_header"]["msg_id"]] = {
                    **reply["content"], "_received": time.monotonic()}
            except queue.Empty:
                pass
            try:
                msg = self.kc.get_iopub_msg(timeout=0.05)
            except queue.Empty:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "comm_open":
                state = content["data"].get("state", {})
                if "player_id" in state:
                    self.players[content["comm_id"]] = []
                elif "pcm" in state or ["pcm"] in content["data"].get("buffer_paths", []):
                    self.chunks.append({"id": content["comm_id"], "meta": state["meta"],
                                        "bytes": len(msg["buffers"][0]),
                                        "received": time.monotonic()})
            elif kind == "comm_msg" and content["comm_id"] in self.players:
                stream = content["data"].get("state", {}).get("stream")
                if stream is not None:
                    self.players[content["comm_id"]].append(
                        {**stream, "_received": time.monotonic()})

    def last_stream(self) -> list[dict]:
        return self.players[list(self.players)[-1]]

    def wait_for_state(self, predicate, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.pump(0.1)
            for state in self.last_stream():
                if predicate(state):
                    return state
        raise AssertionError(f"the player never reached the state: {self.last_stream()[-1:]}")


@pytest.fixture(scope="module")
def kernel():
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3")
    frontend = KernelFrontend(km, kc)
    try:
        reply = frontend.execute("%load_ext kokoro_lab\n%speak --wait --no-play --no-plot Hi.")
        assert reply["status"] == "ok", reply
        yield frontend
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


@pytest.mark.model
def test_real_kernel_delivers_audio_while_the_next_cell_is_busy(kernel):
    """Run All: a %%speak cell, then a cell that blocks the main thread. The audio must
    reach the page during the blocking cell, with no message from the page at all."""
    speak = kernel.submit("%%speak --no-plot -o res\nThe sun is out. Birds are singing.")
    busy = kernel.submit("import time; time.sleep(15)")
    before = len(kernel.chunks)
    reply = kernel.reply_to(busy, timeout=120)
    assert kernel.replies[speak]["status"] == "ok" and reply["status"] == "ok"
    during = [c for c in kernel.chunks[before:] if c["received"] < reply["_received"]]
    assert len(during) >= 2, "chunks waited for the busy cell"
    assert [c["meta"]["seq"] for c in during] == list(range(len(during)))
    assert all(c["bytes"] == 2 * c["meta"]["samples"] for c in during)  # int16 PCM
    ended = [s for s in kernel.last_stream() if s["state"] == "ended"]
    assert ended and ended[0]["_received"] < reply["_received"]
    assert ended[0]["chunks"] == len(during)
    # No page ever reported (a tab closed mid-stream): the result is still complete.
    check = kernel.execute(
        f"assert res.done and res.state == 'complete' and len(res.chunks) == {len(during)}\n"
        "assert res.heard is None\n"
        "import threading, time\n"
        "time.sleep(0.5)\n"
        "assert not [t for t in threading.enumerate() if t.name.startswith('kokoro-lab-s')]")
    assert check["status"] == "ok", check


@pytest.mark.model
def test_real_kernel_wait_cell_sends_audio_before_it_returns(kernel):
    before = len(kernel.chunks)
    msg_id = kernel.submit("%%speak --wait --no-plot -o w\nWaiting cells are heard too.")
    reply = kernel.reply_to(msg_id)
    assert reply["status"] == "ok", reply
    first = kernel.chunks[before]
    assert first["received"] < reply["_received"]


@pytest.mark.model
def test_real_kernel_interrupt_while_idle_stops_the_stream(kernel):
    text = " ".join(["This sentence is here to keep the synthesizer busy for a while."] * 12)
    reply = kernel.execute(f"%%speak --no-plot -o long\n{text}")
    assert reply["status"] == "ok", reply
    kernel.wait_for_state(lambda s: s["chunks"] >= 1, 120)
    kernel.km.interrupt_kernel()  # the cell has returned: the kernel is idle
    stopped = kernel.wait_for_state(lambda s: s["state"] == "stopped", 30)
    assert stopped["stop_reason"] == "kernel interrupted"
    check = kernel.execute(
        "import threading, time\n"
        "time.sleep(1.0)\n"
        "assert long.cancelled and long.reason == 'kernel interrupted', long\n"
        "assert not [t for t in threading.enumerate() if t.name.startswith('kokoro-lab-s')]")
    assert check["status"] == "ok", check


def test_page_reports_feed_the_result_and_the_chart(recording, synth):
    player = Player()
    chart = LatencyChart()
    speech = Speech(synth.stream("Hi there. How are you?", voice="af_heart"), player=player,
                    chart=chart).start()
    result = speech.wait(60)
    assert result.done and not result.cancelled and not result.error
    assert result.heard is None  # no page yet
    assert "not reported yet" in result._repr_html_()
    start, now = 10.0, 9.97
    for seq, record in enumerate(player.sent):
        duration = (record["bytes"] // 2) / 24000
        deliver(player, {"type": "scheduled", "client": "a", "stream": player.stream_id,
                         "seq": seq, "start": start, "duration": duration, "now": now,
                         "underrun": False, "gap": 0, "ahead_s": 1.0})
        start += duration
    assert [r["seq"] for r in player.scheduled] == [r["seq"] for r in player.sent]
    heard = {"type": "heard", "stream": player.stream_id, "final": True,
             "first_audible_ms": 850, "since": "cell ran", "stalls": 0, "stall_ms": 0,
             "largest_gap_ms": 0, "played_s": result.duration_s, "made_s": result.duration_s}
    deliver(player, heard)
    assert result.heard["first_audible_ms"] == 850 and result.timings[
        "heard_first_audible_ms"] == 850
    assert "first sound after the cell ran" in result._repr_html_()
    spans = chart.playback()
    assert len(spans) == len(result.chunks)
    for (_, end), (begin, _) in zip(spans, spans[1:], strict=False):
        assert begin == pytest.approx(end, abs=1e-6)  # gapless as reported
    assert chart.first_audio_ms() == 850
    figure = chart.to_dict()
    assert [t["name"] for t in figure["data"]] == ["synthesis", "audio", "synthesizing",
                                                    "playing"]
    assert figure["layout"]["title"]["text"].startswith("heard: first sound 0.85 s")


def test_a_chart_without_a_page_shows_synthesis_only(synth):
    chart = LatencyChart()
    result = synth.synthesize("Nobody listens.")
    chart.reset(result.chunks[0].queued)
    for chunk in result.chunks:
        chart.add_chunk(chunk)
    figure = chart.to_dict()
    assert [t["name"] for t in figure["data"]] == ["synthesis", "audio", "synthesizing"]
    assert figure["layout"]["shapes"] == []  # no first-audio marker, no stalls
    assert figure["layout"]["yaxis2"]["categoryarray"] == ["synthesis"]
    assert "engine (internal)" in figure["layout"]["title"]["text"]
    chart.draw()
    (output,) = chart.widget.outputs
    assert "application/vnd.plotly.v1+json" in output["data"]
