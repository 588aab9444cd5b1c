"""Fakes for the player's comms: record what the Player and its chunk models publish, and play
the page's part by delivering its reports (shared by the unit and model tiers)."""

from __future__ import annotations

import comm
import numpy as np
import pytest
from comm import DummyComm

from kokoro_lab.notebook import Player


class RecordingComm(DummyComm):
    """A comm that records every message it publishes, in one order shared by all comms."""

    log: list[tuple[str, str, dict, list]] = []  # (comm_id, msg_type, data, buffers)

    def publish_msg(self, msg_type, data=None, metadata=None, buffers=None, **keys):
        self.log.append((self.comm_id, msg_type, data or {}, list(buffers or [])))


@pytest.fixture
def recording(monkeypatch):
    RecordingComm.log = []
    monkeypatch.setattr(comm, "create_comm", lambda *a, **k: RecordingComm(*a, **k))
    return RecordingComm.log


def deliver(player: Player, content: dict) -> None:
    """Deliver a message from the page, as ipywidgets does for a custom comm message."""
    player._handle_msg({"content": {"data": {"method": "custom", "content": content}},
                        "buffers": []})


def tone(samples: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-0.5, 0.5, samples).astype(np.float32)


def stream_updates(log, player: Player) -> list[dict]:
    """Every value of the player's ``stream`` trait that went out, in order."""
    return [data["state"]["stream"] for comm_id, kind, data, _ in log
            if comm_id == player.comm.comm_id and kind == "comm_msg"
            and "stream" in data.get("state", {})]


def chunk_opens(log) -> list[tuple[str, dict, list]]:
    """The chunk models opened, in order: (model id, state, buffers)."""
    return [(comm_id, data["state"], buffers) for comm_id, kind, data, buffers in log
            if kind == "comm_open" and ["pcm"] in data.get("buffer_paths", [])]
