"""The engine's public face on the real model: a request checked once, one chunk rendered with
no planning, the chunk cache, ``tuning="off"`` beside the default, and the op profile."""

from __future__ import annotations

import numpy as np
import pytest

from kokoro_lab import Synthesizer, TextError, VoiceError
from kokoro_lab.engine import SpeechRequest
from kokoro_lab.engine.metrics import AUDIBLE
from kokoro_lab.profiling import profile_ops


def test_a_request_is_checked_once_and_carries_normalised_text(synth):
    request = synth.request("Hello\u0007 there.", "bf_emma", 1.2)
    assert isinstance(request, SpeechRequest)
    assert request.text == "Hello  there." and request.voice.label == "bf_emma"
    assert (request.speed, request.lang, request.precision) == (1.2, "en-gb", "int8")
    chunks = list(synth.stream(request))  # nothing is checked again
    assert " ".join(c.text for c in chunks).split() == ["Hello", "there."]
    for bad, error, message in [("", TextError, "empty"), ("?!", TextError, "no letters"),
                                ("Hi", VoiceError, "unknown voice"), ("Hi", ValueError, "speed")]:
        voice = "zz_nobody" if error is VoiceError else "af_heart"
        speed = 3.0 if message == "speed" else 1.0
        with pytest.raises(error, match=message):
            synth.request(bad, voice, speed)


def test_render_makes_one_chunk_without_planning(synth):
    text = "The old lighthouse stood at the edge of the cliff."
    chunk = synth.render(text)
    assert chunk.index == 0 and chunk.text == text and not chunk.cached
    assert chunk.speech_samples < len(chunk.audio)  # the sentence's pause follows
    again = synth.render(text)
    np.testing.assert_array_equal(chunk.audio, again.audio)  # the same input every time
    raw = synth.render(text, raw=True, decoder="full")
    assert raw.trim_start == 0 and np.abs(raw.audio[:300]).max() < AUDIBLE  # the silent pad
    with pytest.raises(TextError, match="render\\(\\) takes one chunk"):
        synth.render("word " * 200)


def test_the_same_text_again_plays_from_the_cache(synth):
    cached = Synthesizer(warm_up=False)  # the same warm sessions, with a cache of its own
    text = "A sentence spoken twice. The second time it is remembered."
    first = list(cached.stream(text))
    second = list(cached.stream(text))
    assert not any(c.cached for c in first)
    assert second[0].cached and second[0].started == second[0].finished  # nothing synthesized
    for made, replayed in zip(first, second, strict=False):
        if replayed.cached:
            np.testing.assert_array_equal(made.audio, replayed.audio)
    uncached = Synthesizer(cache=False, warm_up=False)
    assert not any(c.cached for c in uncached.stream(text))


def test_tuning_off_and_the_default_run_side_by_side(synth):
    off = Synthesizer(tuning="off", cache=False)
    assert off.tuning.name == "off" and off.tuning.variant == "released"
    a = off.render("Side by side.")
    b = synth.render("Side by side.")
    assert a.audio.shape == b.audio.shape or synth.tuning.variant != "released"


def test_profile_ops_breaks_the_first_chunk_down(synth):
    report = profile_ops("When the harbor lights came on, the fishermen walked home.",
                         repeats=2, synth=Synthesizer(cache=False))
    assert list(report.stages) == ["text", "phonemes", "inputs", "front", "generator",
                                   "finish", "hand-off"]
    assert all(ms >= 0 for ms in report.stages.values())
    assert report.chunk_text.startswith("When the harbor lights")
    stages = {row.stage for row in report.rows}
    assert stages == {"front", "generator"}
    assert sum(row.share for row in report.rows) == pytest.approx(1.0)
    generator = report.stage_ops("generator")
    assert generator[0].ms >= generator[-1].ms and generator[0].nodes > 0
    assert "| generator: op type |" in report.markdown()
    assert len(report.figure().data) >= 3
