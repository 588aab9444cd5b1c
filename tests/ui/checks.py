"""What every player read back from a page must satisfy: order, continuity and state, never a
wall-clock budget (the budgets live in ``benchmarks/notebook_e2e.py``, which reports them).

The page's scheduling rule (``extension/src/audio.js``): a chunk that arrives while the one
before it is still ahead of the speakers by at least the start margin (``lead``: the
context's output buffer and one render quantum, logged with each chunk) starts exactly where
that one ends; one that arrives later starts ``lead`` after it arrived, and the gap is a stall.
"""

from __future__ import annotations

JOIN_S = 0.002  # "exactly where it ends", in audio-clock seconds
STALL_S = 0.005  # extension/src/audio.js STALL_S: a shorter gap is jitter, not a stall


def check_continuity(log: list[dict]) -> None:
    """Each chunk scheduled, in order, where the last one ended when it arrived in time, and
    ``lead`` after its arrival (a stall, counted) when it did not."""
    assert log and [r["seq"] for r in log] == list(range(len(log))), log
    for previous, current in zip(log, log[1:], strict=False):
        end = previous["start"] + previous["duration"]
        lead = current["lead"]
        assert 0 < lead <= 0.03, current  # never more than the fixed margin it replaced
        if end >= current["now"] + lead - 1e-6:  # in time: back to back
            assert abs(current["start"] - end) <= JOIN_S, (previous, current)
            assert not current["underrun"], current
        else:  # late: as soon as the page could, and the gap is what was heard
            assert abs(current["start"] - (current["now"] + lead)) <= JOIN_S, current
            assert current["underrun"] == (current["gap"] > STALL_S), current
            assert abs(current["gap"] - (current["start"] - end)) <= JOIN_S, current


def check_played_out(player: dict) -> None:
    """Every chunk was scheduled by the continuity rule, the stalls the page reports are the
    ones its schedule shows, and all of it reached the speakers."""
    log = player["log"]
    check_continuity(log)
    assert player["total"] == len(log), player["status"]
    heard = player["heard"]
    assert heard["stalls"] == sum(r["underrun"] for r in log[1:]), (heard, log)
    assert abs(heard["played_s"] - heard["made_s"]) < 0.01, heard
    assert player["now"] >= log[-1]["start"] + log[-1]["duration"] - 0.01
    assert not player["errors"], player["errors"]
