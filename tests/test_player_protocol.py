"""The player's kernel ↔ browser protocol: handshake, order, buffer sizes, sequence numbers.

The fast tests record what the Player puts on its comm (the real ipywidgets/anywidget send path,
with a comm that records instead of publishing) and play the browser's part by delivering its
messages. The model tests run a real ipykernel through jupyter_client and speak the protocol
over ZeroMQ, as JupyterLab would: binary buffers, the ready handshake, and a kernel interrupt
arriving while the kernel is idle.
"""

from __future__ import annotations

import queue
import shutil
import subprocess
import time
from pathlib import Path

import comm
import numpy as np
import pytest
from comm import DummyComm

from kokoro_lab.notebook import LatencyChart, Player, Speech
from kokoro_lab.notebook.player import PROTOCOL


class RecordingComm(DummyComm):
    """A comm that records every message the widget publishes, in order."""

    def __init__(self, *args, **kwargs):
        self.messages: list[tuple[str, dict, list]] = []
        super().__init__(*args, **kwargs)

    def publish_msg(self, msg_type, data=None, metadata=None, buffers=None, **keys):
        self.messages.append((msg_type, data or {}, list(buffers or [])))


@pytest.fixture
def recording(monkeypatch):
    monkeypatch.setattr(comm, "create_comm", lambda *a, **k: RecordingComm(*a, **k))


def custom(player: Player) -> list[tuple[dict, list]]:
    """The custom (non-state) messages the player sent, as (content, buffers)."""
    return [(data["content"], buffers) for kind, data, buffers in player.comm.messages
            if kind == "comm_msg" and data.get("method") == "custom"]


def deliver(player: Player, content: dict) -> None:
    """Deliver a message from the browser, as ipywidgets does for a custom comm message."""
    player._handle_msg({"content": {"data": {"method": "custom", "content": content}},
                        "buffers": []})


def tone(samples: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-0.5, 0.5, samples).astype(np.float32)


def test_nothing_is_sent_before_the_ready_handshake(recording):
    player = Player()
    player.start(label="test")
    player.push(tone(2400))
    player.push(tone(4800, 1))
    assert custom(player) == []
    deliver(player, {"type": "ready", "client": "a", "protocol": PROTOCOL})
    kinds = [c["type"] for c, _ in custom(player)]
    assert kinds == ["start", "chunk", "chunk"]


def test_order_buffer_sizes_and_sequence_numbers(recording):
    player = Player()
    deliver(player, {"type": "ready", "client": "a"})
    stream = player.start()
    sizes = [1200, 24000, 7, 36000]
    for i, n in enumerate(sizes):
        assert player.push(tone(n, i), index=10 + i, ready_ms=5.0) == i
    player.finish(first_audio_ms=12.5)
    messages = custom(player)
    assert [c["type"] for c, _ in messages] == ["start"] + ["chunk"] * 4 + ["end"]
    start = messages[0][0]
    assert start == {"type": "start", "stream": stream, "sample_rate": 24000, "label": "",
                     "ended": False, "protocol": PROTOCOL}
    for seq, ((content, buffers), n) in enumerate(zip(messages[1:5], sizes, strict=True)):
        assert content["seq"] == seq and content["index"] == 10 + seq
        assert content["samples"] == n and content["stream"] == stream
        assert len(buffers) == 1 and len(bytes(buffers[0])) == 4 * n  # float32, no base64
        np.testing.assert_array_equal(np.frombuffer(bytes(buffers[0]), "<f4"), tone(n, seq))
    end = messages[-1][0]
    assert end["chunks"] == 4 and end["samples"] == sum(sizes) and end["cancelled"] is False
    assert end["first_audio_ms"] == 12.5
    assert [r["seq"] for r in player.sent] == [0, 1, 2, 3]
    assert all(r["bytes"] == 4 * n for r, n in zip(player.sent, sizes, strict=True))


def test_a_second_client_gets_a_replay_with_the_same_sequence_numbers(recording):
    player = Player()
    deliver(player, {"type": "ready", "client": "a"})
    player.start()
    player.push(tone(100))
    player.push(tone(200))
    player.finish()
    before = len(custom(player))
    deliver(player, {"type": "ready", "client": "b"})  # a second tab, or a reload
    replay = custom(player)[before:]
    assert [c["type"] for c, _ in replay] == ["start", "chunk", "chunk", "end"]
    assert replay[0][0]["ended"] is True  # the late tab keeps it playable, does not autoplay
    assert [c["seq"] for c, _ in replay[1:3]] == [0, 1]
    assert len(player.sent) == 2  # "sent" records the first time each chunk left the kernel
    assert player.clients == {"a", "b"}


def test_stop_from_the_kernel_and_from_the_browser(recording):
    player = Player()
    deliver(player, {"type": "ready", "client": "a"})
    stream = player.start()
    player.push(tone(100))
    requests = []
    player.on_stop_request(requests.append)
    deliver(player, {"type": "stop_request", "client": "a", "stream": "old-stream"})
    assert requests == []  # a stale stream's Stop does not stop the current one
    deliver(player, {"type": "stop_request", "client": "a", "stream": stream})
    assert requests == [stream]
    stops = [c for c, _ in custom(player) if c["type"] == "stop"]
    assert stops == [{"type": "stop", "stream": stream, "reason": "Stop pressed"}]
    assert player.message == "Stop pressed"
    player.push(tone(100))  # chunks after a stop are kept (full audio) but not sent
    assert [c["type"] for c, _ in custom(player)].count("chunk") == 1
    assert len(player.audio) == 200


def test_browser_reports_are_recorded_and_feed_the_chart(recording, synth):
    player = Player()
    chart = LatencyChart()
    deliver(player, {"type": "ready", "client": "a"})
    stream = synth.stream("Hi there.", voice="af_heart")
    speech = Speech(stream, player=player, chart=chart).start()
    result = speech.wait(60)
    assert result.done and not result.cancelled and not result.error
    sent = [c for c, _ in custom(player) if c["type"] == "chunk"]
    assert len(sent) == len(result.chunks) >= 1
    start, now = 10.0, 9.97
    for content in sent:
        duration = content["samples"] / 24000
        deliver(player, {"type": "scheduled", "client": "a", "stream": content["stream"],
                         "seq": content["seq"], "start": start, "duration": duration,
                         "now": now, "underrun": False, "gap": 0})
        start += duration
    assert [r["seq"] for r in player.scheduled] == [c["seq"] for c in sent]
    spans = chart.playback()
    assert all(measured for _, _, measured in spans)
    for (_, end, _), (begin, _, _) in zip(spans, spans[1:], strict=False):
        assert begin == pytest.approx(end, abs=1e-6)  # gapless as reported
    timings = result.timings
    assert timings["first_sent_ms"] >= timings["first_ready_ms"] > 0
    assert timings["first_scheduled_ms"] >= timings["first_sent_ms"]


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


# -- a real kernel, spoken to over ZeroMQ as JupyterLab does ------------------------------------


class KernelFrontend:
    """Just enough of a Jupyter front-end to drive the player comm in a real ipykernel."""

    def __init__(self, km, kc):
        self.km, self.kc = km, kc
        self.player_comms: list[str] = []
        self.custom: queue.Queue = queue.Queue()

    def execute(self, code: str, timeout: float = 120) -> dict:
        msg_id = self.kc.execute(code)
        reply = self.kc.get_shell_msg(timeout=timeout)
        while reply["parent_header"].get("msg_id") != msg_id:
            reply = self.kc.get_shell_msg(timeout=timeout)
        self.pump(0.2)
        return reply["content"]

    def pump(self, seconds: float) -> None:
        """Read iopub for a while, tracking player comms and their custom messages."""
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                msg = self.kc.get_iopub_msg(timeout=left)
            except queue.Empty:
                return
            kind, content = msg["msg_type"], msg["content"]
            if kind == "comm_open" and "player_id" in content["data"].get("state", {}):
                self.player_comms.append(content["comm_id"])
            elif kind == "comm_msg" and content["comm_id"] in self.player_comms:
                data = content["data"]
                if data.get("method") == "custom":
                    self.custom.put((content["comm_id"], data["content"], msg["buffers"]))

    def send(self, comm_id: str, content: dict) -> None:
        msg = self.kc.session.msg("comm_msg", {"comm_id": comm_id,
                                               "data": {"method": "custom", "content": content}})
        self.kc.shell_channel.send(msg)

    def wait_for(self, predicate, timeout: float):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.pump(0.1)
            while not self.custom.empty():
                item = self.custom.get()
                if predicate(item):
                    return item
        raise AssertionError("the kernel did not send the expected message in time")


@pytest.fixture(scope="module")
def kernel():
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3")
    frontend = KernelFrontend(km, kc)
    try:
        reply = frontend.execute("%load_ext kokoro_lab")
        assert reply["status"] == "ok", reply
        yield frontend
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


@pytest.mark.model
def test_real_kernel_sends_binary_chunks_after_the_handshake(kernel):
    reply = kernel.execute("%%speak --no-plot -o res\nThe sun is out. Birds are singing.")
    assert reply["status"] == "ok", reply
    comm_id = kernel.player_comms[-1]
    kernel.pump(3.0)  # synthesis runs; nothing may be sent before "ready"
    assert kernel.custom.empty()
    kernel.send(comm_id, {"type": "ready", "client": "test", "protocol": PROTOCOL})
    start = kernel.wait_for(lambda m: m[1]["type"] == "start", 30)
    assert start[1]["sample_rate"] == 24000
    chunks = []
    end = None
    while end is None:
        _, content, buffers = kernel.wait_for(lambda m: m[1]["type"] in ("chunk", "end"), 120)
        if content["type"] == "end":
            end = content
        else:
            chunks.append((content, buffers))
    assert [c["seq"] for c, _ in chunks] == list(range(len(chunks))) and len(chunks) >= 2
    for content, buffers in chunks:
        assert len(buffers) == 1 and len(buffers[0]) == 4 * content["samples"]
        assert content["ready_ms"] > 0 and content["audio_ms"] > 0
    assert end["chunks"] == len(chunks) and not end["cancelled"]
    assert end["samples"] == sum(c["samples"] for c, _ in chunks)
    # This front-end never reports a schedule (like a tab closed mid-stream): the kernel still
    # completes the result, and no worker thread is left behind.
    check = kernel.execute(
        f"assert res.done and res.state == 'complete' and len(res.chunks) == {len(chunks)}\n"
        "assert res.timings['first_sent_ms'] >= res.timings['first_ready_ms'] > 0\n"
        "import threading, time\n"
        "time.sleep(0.5)\n"
        "assert not [t for t in threading.enumerate() if t.name.startswith('kokoro-lab-s')]")
    assert check["status"] == "ok", check


@pytest.mark.model
def test_real_kernel_interrupt_while_idle_stops_the_stream(kernel):
    text = " ".join(["This sentence is here to keep the synthesizer busy for a while."] * 12)
    reply = kernel.execute(f"%%speak --no-plot -o long\n{text}")
    assert reply["status"] == "ok", reply
    comm_id = kernel.player_comms[-1]
    kernel.send(comm_id, {"type": "ready", "client": "test"})
    kernel.wait_for(lambda m: m[0] == comm_id and m[1]["type"] == "chunk", 120)
    kernel.km.interrupt_kernel()  # the cell has returned: the kernel is idle
    stop = kernel.wait_for(lambda m: m[0] == comm_id and m[1]["type"] in ("stop", "end"), 30)
    assert stop[1]["type"] == "stop" and stop[1]["reason"] == "kernel interrupted"
    end = kernel.wait_for(lambda m: m[0] == comm_id and m[1]["type"] == "end", 60)
    assert end[1]["cancelled"] is True
    check = kernel.execute(
        "import threading, time\n"
        "time.sleep(0.5)\n"
        "assert long.cancelled and long.reason == 'kernel interrupted', long\n"
        "assert not [t for t in threading.enumerate() if t.name.startswith('kokoro-lab-s')]")
    assert check["status"] == "ok", check


# -- the browser half's scheduling rules, run in Node ----------------------------------------------


def test_browser_engine_scheduling_rules_in_node():
    """extension/test/*.test.js: gapless starts, underruns, the blocked queue, dedup, stop."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (the front-end build needs it too)")
    extension = Path(__file__).resolve().parents[1] / "extension"
    done = subprocess.run([node, "--test", "test/"], cwd=extension, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "# fail 0" in done.stdout
