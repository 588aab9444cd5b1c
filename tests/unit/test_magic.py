"""``%%speak`` options, interpolation and bad input in an in-process IPython shell: every error
is raised before synthesis starts, so no model is loaded; and when the overlap rule counts an
utterance no page reported on as played out.
"""


from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from IPython.core.error import UsageError

from kokoro_lab.notebook import SpeakMagics, interpolate
from tests.magic_support import ip, magics, run_error, warm

__all__ = ['ip', 'magics', 'warm']  # fixtures, used by name











def test_interpolation_fills_known_names_and_keeps_unknown_ones():
    text, missing = interpolate("Hi {name}, {count:.1f} items; {nobody} and {x.real}.",
                                {"name": "Ada", "count": 2, "x": 3})
    assert text == "Hi Ada, 2.0 items; {nobody} and 3."
    assert missing == ["nobody"]


def test_interpolation_escapes_and_broken_fields():
    text, missing = interpolate("{{literal}} {items[5]} {}", {"items": [1]})
    assert text == "{literal} {items[5]} {}"
    assert missing == ["items[5]", ""]


def test_help_lists_every_option(ip):
    doc = ip.find_cell_magic("speak").__doc__
    for option in ("--voice", "--speed", "--provider", "--precision", "--lang", "--output",
                   "--wait", "--now", "--no-play", "--no-plot", "--raw"):
        assert option in doc, option


def test_every_config_trait_has_help_and_config_works(ip, magics):
    traits = SpeakMagics.class_traits(config=True)
    assert {"voice", "speed", "provider", "precision", "lang", "play", "plot",
            "overlap"} <= set(traits)
    assert all(trait.help for trait in traits.values())
    ip.run_line_magic("config", 'SpeakMagics.voice = "bf_emma"')
    try:
        assert magics.voice == "bf_emma"
    finally:
        ip.run_line_magic("config", 'SpeakMagics.voice = "af_heart"')


@pytest.mark.parametrize(("cell", "message"), [
    ("%%speak\n   \n", "the cell is empty"),
    ("%%speak", "the cell is empty"),  # IPython's own check would say "cell body is empty"
    ("%%speak --voice bf_emma\n", "the cell is empty"),
    ("%speak", "nothing to speak"),
    ("%%speak --bogus\nHello", "unrecognized arguments: --bogus"),
    ("%%speak -o 3x\nHello", "not a valid variable name"),
    ("%%speak Hello there\nGeneral Kenobi", "takes its text from the cell body"),
    ("%%speak -s fast\nHello", "invalid float value"),
])
def test_bad_input_is_a_usage_error_with_a_clear_message(ip, cell, message):
    error = run_error(ip, cell)
    assert isinstance(error, UsageError)
    assert message in str(error)


def test_a_finished_profile_settles_the_kernels_sessions_without_loading_a_model(ip, magics):
    """After ``%speak_profile`` the kernel's own sessions get one short run (their arenas,
    grown by the profile's inputs, shrink back); a kernel that never spoke loads nothing."""
    from kokoro_lab.notebook.profile_magic import _give_memory_back

    assert magics._synth is None
    _give_memory_back(ip)
    assert magics._synth is None  # nothing was loaded to settle it

    class Engine:
        warmed = 0

        def warm_up(self):
            Engine.warmed += 1

    magics._synth = Engine()
    try:
        _give_memory_back(ip)
        assert Engine.warmed == 1
    finally:
        magics._synth = None


def _speech(first_ready: float, chunks: list[tuple[float, float]], after=None):
    """A finished utterance no page reported on: chunks as (made at, seconds of audio)."""
    from kokoro_lab.engine.metrics import SAMPLE_RATE

    made = [SimpleNamespace(finished=at, audio=np.zeros(int(seconds * SAMPLE_RATE), np.float32))
            for at, seconds in chunks]
    return SimpleNamespace(first_ready=first_ready, requested=first_ready, after=after,
                           player=SimpleNamespace(heard={}), result=SimpleNamespace(
                               done=True, cancelled=False, chunks=made))


def test_an_unreported_utterance_counts_as_playing_until_its_stalls_and_queue_are_over(
        monkeypatch):
    """The overlap rule's estimate when the page has not said it is done: a chunk made late
    delays the end (a stall), and an utterance queued behind another ends after it."""
    from kokoro_lab.notebook import magic

    # 2 s of audio, then a chunk made 20 s later: played out at 100 + 22 + 2 = 124 s, not 104.
    slow = _speech(100.0, [(100.0, 2.0), (122.0, 2.0)])
    assert magic._played_out_by(slow) == pytest.approx(124.0)
    # Made at 105 s, but queued behind it: plays 124-126 s.
    queued = _speech(105.0, [(105.0, 2.0)], after=slow)
    assert magic._played_out_by(queued) == pytest.approx(126.0)
    for now, finished in ((120.0, False), (130.0, False), (131.5, True)):
        monkeypatch.setattr(magic.time, "perf_counter", lambda now=now: now)
        assert magic._finished(queued) is finished
    queued.player.heard = {"final": True}  # the page's own word ends it at once
    monkeypatch.setattr(magic.time, "perf_counter", lambda: 106.0)
    assert magic._finished(queued)
