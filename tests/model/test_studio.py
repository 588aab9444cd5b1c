"""The voice lab on the real synthesizer: widget state set, Speak clicked, and what it produced
checked, including a voice and speed change in the middle of an utterance. Texts are a few
words: the model is slow on a shared CPU.
"""


from __future__ import annotations

import io
import threading
import wave

import numpy as np
import pytest
from IPython.core.error import UsageError
from plotly.callbacks import Points

from kokoro_lab import voice
from kokoro_lab.engine.voices import VoiceError
from kokoro_lab.notebook.clip import Clip
from kokoro_lab.notebook.explorer import (
    VoiceComparison,
    compare_voices,
    voice_map,
)
from kokoro_lab.notebook.studio import (
    Studio,
    StudioMagics,
)
from tests.conftest import ipython_shell
from tests.studio_support import PCM_STEP, words


@pytest.mark.model
def test_speak_with_bad_values_returns_none_and_says_why(synth):
    studio = Studio(synth=synth, chart=False)
    studio.custom.value = "af_heart:0,bf_emma:0"
    assert studio.speak() is None
    assert "sum to a positive number" in studio.error
    assert studio.utterance is None
    studio.custom.value = ""
    studio.text.value = "   "
    assert studio.speak() is None
    assert studio.error.startswith("text: the text is empty")
    studio.text.value = "!!! ???"
    studio.speak_button.click()  # the button path: no exception escapes the handler
    assert "nothing speakable" in studio.error


@pytest.mark.model
def test_compare_voices_refuses_bad_voices_before_synthesizing(synth):
    with pytest.raises(VoiceError, match="unknown voice 'af_nope'"):
        compare_voices("Hi.", ["af_heart", "af_nope"], synth=synth)
    with pytest.raises(VoiceError, match="voice listed twice: af_heart"):
        compare_voices("Hi.", ["af_heart", "af_heart:1"], synth=synth)
    with pytest.raises(VoiceError, match="at least one voice"):
        compare_voices("Hi.", [], synth=synth)


@pytest.mark.model
def test_widget_state_drives_the_synthesizer(synth):
    text = "Good day."
    studio = Studio(text, synth=synth, chart=True, lead_s=None)
    studio.voice.value = "af_heart"
    studio.voice2.value = "bf_emma"
    studio.blend.value = 0.3
    studio.speed.value = 1.3
    studio.speak_button.click()
    result = studio.utterance.wait(120)
    assert result is studio.result and result.state == "complete" and not result.error
    assert result.provider == studio.provider.value == "cpu"
    assert result.precision == studio.precision.value == "int8"
    assert result.chunks and all(c.speed == 1.3 for c in result.chunks)
    assert all(c.voice == "af_heart:0.7,bf_emma:0.3" for c in result.chunks)
    assert words(" ".join(c.text for c in result.chunks)) == words(text)
    # The same audio as asking the engine directly for that blend and speed.
    direct = synth.synthesize(text, voice="af_heart:0.7,bf_emma:0.3", speed=1.3)
    assert len(direct.chunks) == len(result.chunks)
    np.testing.assert_allclose(result.audio, direct.audio, atol=1e-4)
    # The panel's player holds the utterance; the chart plotted every chunk.
    np.testing.assert_allclose(studio.player.audio, result.audio, atol=PCM_STEP)
    figure = studio.chart.to_dict()
    assert figure["data"][0]["x"] == [c.index for c in result.chunks]
    assert figure["layout"]["xaxis2"]["title"]["text"] == "ms since Speak was pressed"
    assert "complete · 1 chunk ·" in studio.status.value


@pytest.mark.model
def test_voice_and_speed_changes_apply_from_the_next_chunk(synth):
    text = "Yes, go now."  # two chunks: the small first one ("Yes,") and the rest
    studio = Studio(text, voice="af_heart", speed=1.0, synth=synth, chart=False, lead_s=None)
    changed = threading.Event()

    def change_after_first(chunk):
        # Runs on the feeder thread right after chunk 0 went to the player: a user moving the
        # controls while chunk 0 plays.
        if chunk.index == 0:
            studio.voice.value = "bf_emma"
            studio.speed.value = 1.4
            changed.set()

    result = studio.speak()
    studio.utterance.on_chunk.append(change_after_first)
    studio.utterance.wait(120)
    assert changed.is_set() and result.state == "complete", result.error
    assert len(result.chunks) >= 2
    first, rest = result.chunks[0], result.chunks[1:]
    assert (first.voice, first.speed) == ("af_heart", 1.0)
    assert all((c.voice, c.speed) == ("bf_emma", 1.4) for c in rest)
    # Every word once, in order, across the two segments; chunks numbered across them.
    assert words(" ".join(c.text for c in result.chunks)) == words(text)
    assert [c.index for c in result.chunks] == list(range(len(result.chunks)))
    assert [(s["first_chunk"], s["voice"], s["speed"]) for s in result.segments] == [
        (0, "af_heart", 1.0), (1, "bf_emma", 1.4)]
    assert "2 segments" in studio.status.value


@pytest.mark.model
def test_chunks_are_paced_to_playback_and_stop_ends_the_utterance(synth):
    lead = 0.2
    studio = Studio("Hi there. See you soon, friend.", synth=synth, chart=False, lead_s=lead)
    sent: list[tuple[float, float]] = []  # (when sent, seconds of audio)

    def record_and_stop(chunk):
        import time

        sent.append((time.perf_counter(), chunk.audio_ms / 1000))
        if chunk.index == 1:
            press_stop_in_the_page(studio.player)

    result = studio.speak()
    studio.utterance.on_chunk.append(record_and_stop)
    studio.utterance.wait(120)
    assert result.state == "stopped" and result.reason == "Stop pressed"
    assert len(result.chunks) == 2
    # No chunk left before the player (estimated, no browser here) was within `lead` of it.
    (t0, d0), (t1, _) = sent
    assert t1 >= t0 + d0 - lead - 0.05
    assert "stopped (Stop pressed)" in studio.status.value


def press_stop_in_the_page(player) -> None:
    """What the player's Stop button sends (the Studio's only Stop when it has a player)."""
    request = {"type": "stop_request", "stream": player.stream_id, "reason": "Stop pressed"}
    player._handle_msg({"content": {"data": {"method": "custom", "content": request}},
                        "buffers": []})


@pytest.mark.model
def test_browser_schedule_reports_reanchor_the_pacing(synth):
    from kokoro_lab.notebook.player import Player
    from kokoro_lab.notebook.studio import Settings, Utterance

    player = Player()
    utterance = Utterance(synth, "Hi.", Settings(voice("af_heart"), 1.0), provider="cpu",
                          precision="int8", player=player, lead_s=1.0)
    try:
        utterance._durations = [1.0, 2.0, 0.5]  # three chunks sent, seconds of audio each
        # The browser's report for chunk 0, as the player's protocol delivers it: chunk 0
        # ends 1.5 s after the browser's "now"; chunks 1 and 2 follow it.
        report = {"type": "scheduled", "stream": utterance.stream_id, "seq": 0,
                  "start": 10.0, "duration": 1.0, "now": 9.5, "underrun": False}
        player._handle_msg({"content": {"data": {"method": "custom", "content": report}},
                            "buffers": []})
        received = player.scheduled[-1]["received"]
        assert utterance._play_end == pytest.approx(received + 1.5 + 2.5)
        # A report for another stream (an older utterance) is ignored.
        before = utterance._play_end
        player._handle_msg({"content": {"data": {"method": "custom", "content": {
            **report, "stream": "other", "start": 50.0}}}, "buffers": []})
        assert utterance._play_end == before
    finally:
        utterance.stop("test over")
        utterance.stream.join(60)


@pytest.mark.model
def test_compare_voices_renders_a_grid_with_measured_figures(synth):
    blend = voice("af_heart", "bf_emma", weights=(0.5, 0.5), name="half")
    comparison = compare_voices("Hi.", ["am_michael", blend], synth=synth)
    assert isinstance(comparison, VoiceComparison)
    comparison.wait(180)
    assert not comparison.errors
    rows = comparison.records()
    assert [r["voice"] for r in rows] == ["am_michael", "half"]
    for row, take in zip(rows, comparison.takes.values(), strict=True):
        chunks = take.result.chunks
        assert all(c.voice == row["voice"] for c in chunks)
        assert row["duration_s"] == pytest.approx(sum(len(c.audio) for c in chunks) / 24000,
                                                  abs=1e-3)
        assert row["rtf"] == pytest.approx(
            sum(c.synthesis_ms for c in chunks) / (row["duration_s"] * 1000), rel=1e-2)
        assert 0 < row["first_audio_ms"] < 60_000
    for card, take in zip(comparison.widget.children, comparison.takes.values(), strict=True):
        clip = card.children[-1]  # finished audio: a clip, no streaming player and no Stop
        assert isinstance(clip, Clip) and clip.filename.endswith(".wav")
        with wave.open(io.BytesIO(clip.wav)) as wav:
            assert wav.getframerate() == 24000 and wav.getnframes() == len(take.result.audio)
        assert "RTF" in card.children[1].value


@pytest.mark.model
def test_clicking_the_map_speaks_that_voice(synth):
    vmap = voice_map(sample="Hi.", synth=synth)

    def click(language: str, name: str) -> None:
        trace = next(t for t in vmap.figure.data if t.name == language)
        index = [row[0] for row in trace.customdata].index(name)
        trace._dispatch_on_click(Points(point_inds=[index], xs=[0], ys=[0],
                                        trace_name=trace.name, trace_index=0), None)

    click("American English", "af_heart")
    first = vmap.speech
    click("British English", "bm_george")  # at once: the first sample is still synthesizing
    assert vmap.speech is not first, vmap.status.value
    result = vmap.speech.wait(120)
    first.wait(120)
    assert first.result.state == "stopped" and first.result.reason == "another voice was clicked"
    # The older utterance, finishing after the newer one took the player, neither pushed into
    # nor ended the newer stream.
    assert result.state == "complete" and result.voice == "bm_george", result.error
    assert "bm_george" in vmap.status.value
    np.testing.assert_allclose(vmap.player.audio, result.audio, atol=PCM_STEP)


@pytest.fixture(scope="module")
def ip():
    shell = ipython_shell()
    shell.config.SpeakMagics.warm_on_load = False
    shell.run_line_magic("load_ext", "kokoro_lab")
    yield shell
    if "speak_studio" in shell.magics_manager.magics["line"]:
        shell.run_line_magic("unload_ext", "kokoro_lab")


@pytest.mark.model
def test_speak_studio_magic_opens_a_panel_with_its_options(ip, synth):
    ip.magics_manager.registry["SpeakMagics"]._synth = synth
    assert isinstance(ip.magics_manager.registry["StudioMagics"], StudioMagics)
    ip.run_line_magic("speak_studio", "-v bf_emma -s 1.2 -o st Good morning.")
    studio = ip.user_ns["st"]
    assert isinstance(studio, Studio) and studio.synth is synth
    assert (studio.voice.value, studio.speed.value, studio.text.value) == (
        "bf_emma", 1.2, "Good morning.")
    ip.run_line_magic("speak_studio", "-v af_heart:0,bf_emma:0 -o bad")
    assert "sum to a positive number" in ip.user_ns["bad"].error
    with pytest.raises(UsageError, match="speed must be between 0.5 and 2.0"):
        ip.run_line_magic("speak_studio", "-s 5")
    with pytest.raises(UsageError, match="not a valid variable name"):
        ip.run_line_magic("speak_studio", "-o 1x")
    doc = ip.find_line_magic("speak_studio").__doc__
    for option in ("--voice", "--speed", "--provider", "--precision", "--output"):
        assert option in doc
