"""The voice lab: the Studio panel, ``%speak_studio``, compare_voices and the voice map.

Fast tests check what needs no model: the pickers (voices grouped with display names, only
providers and precisions this machine can run, with reasons for the rest), blend arithmetic
through the Studio's controls against the raw style vectors, the voice map's projection, and
bad values reported in the panel. Model tests drive the real synthesizer from widget state
(set values, click Speak) and check what it produced, including a voice and speed change in
the middle of an utterance. Texts are a few words: the model is slow on a shared CPU.
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
from kokoro_lab.engine import assets
from kokoro_lab.engine.sessions import available_providers
from kokoro_lab.engine.voices import LANGUAGES, VoiceBank, VoiceError, describe_voice
from kokoro_lab.notebook.clip import Clip
from kokoro_lab.notebook.explorer import (
    Projection,
    VoiceComparison,
    compare_voices,
    style_vectors,
    voice_map,
)
from kokoro_lab.notebook.studio import (
    NO_VOICE,
    Studio,
    StudioMagics,
    precision_choices,
    provider_choices,
    stock_voices,
    voice_options,
)
from kokoro_lab.notebook.studio.utterance import _advance
from tests.conftest import ipython_shell

PCM_STEP = 1 / 32767  # the player holds what pages get: 16-bit PCM


@pytest.fixture(scope="module")
def raw_voices() -> dict[str, np.ndarray]:
    """The style tables straight from the voices file, independent of the engine's bank."""
    with np.load(assets.voices_path()) as data:
        return {name: data[name].astype(np.float32) for name in data.files}


def offline_studio(**kwargs) -> Studio:
    """A Studio that does not load the model (for tests of its controls)."""
    return Studio(warm_up=False, chart=False, **kwargs)


def words(text: str) -> list[str]:
    return text.split()


# -- the pickers ----------------------------------------------------------------------------


def test_voice_picker_lists_all_voices_grouped_by_language_then_gender():
    names = stock_voices()
    assert len(names) == assets.VOICE_COUNT
    options = voice_options(names)
    values = [value for _, value in options]
    assert sorted(values) == names
    order = list(LANGUAGES)
    keys = [(order.index(v[0]), "fm".index(v[1])) for v in values]
    assert keys == sorted(keys), "grouped by language, then female before male"
    for label, value in options:
        info = describe_voice(value)
        assert info["display"] in label and info["language"] in label and value in label
        assert info["gender"] in label


def test_named_blends_come_first_in_the_picker_with_their_parts():
    warm = voice("af_heart", "bf_emma", weights=(0.7, 0.3), name="warm")
    options = voice_options(stock_voices(), [warm])
    label, value = options[0]
    assert value is warm
    assert label == "Blend · warm (Heart 70% + Emma 30%)"


def test_provider_picker_offers_only_what_runs_here_and_explains_the_rest():
    studio = offline_studio()
    available, missing = provider_choices()
    assert list(studio.provider.options) == available == available_providers()
    assert not set(available) & set(missing)
    for provider, why in missing.items():
        assert provider in studio.notes.value and why.split(" (")[0] in studio.notes.value
    if "cuda" not in available:
        assert "onnxruntime-gpu" in missing["cuda"] or "CUDA" in missing["cuda"]


def test_precision_picker_partitions_the_precisions():
    available, missing, notes = precision_choices()
    assert "int8" in available
    assert sorted(available + list(missing)) == sorted(assets.PRECISIONS)
    assert set(notes) <= set(available)
    studio = offline_studio()
    assert list(studio.precision.options) == available
    assert studio.precision.value == "int8"


def test_a_provider_that_cannot_run_is_reported_in_the_panel_not_raised():
    missing = provider_choices()[1]
    if not missing:
        pytest.skip("every explained provider is available on this machine")
    name = next(iter(missing))
    studio = offline_studio(provider=name)
    assert studio.provider.value == "cpu"
    assert f"provider {name!r} is not available" in studio.error
    assert missing[name] in studio.error


# -- blends through the controls ------------------------------------------------------------


def test_second_voice_and_weight_make_the_blend_the_engine_uses(raw_voices):
    studio = offline_studio(voice="af_heart")
    assert studio.blend.disabled  # no second voice yet
    studio.voice2.value = "bf_emma"
    assert not studio.blend.disabled
    studio.blend.value = 0.3
    chosen = studio.selected_voice()
    assert dict(chosen.parts) == pytest.approx({"af_heart": 0.7, "bf_emma": 0.3})
    # The engine's style table of the Studio's voice is the weighted mean of the raw tables.
    bank = VoiceBank(assets.voices_path())
    expected = 0.7 * raw_voices["af_heart"] + 0.3 * raw_voices["bf_emma"]
    np.testing.assert_allclose(bank.table(chosen), expected, rtol=1e-6, atol=1e-7)
    # And the style row the model gets for a 20-token chunk.
    np.testing.assert_allclose(bank.style(chosen, 20), expected[19], rtol=1e-6, atol=1e-7)
    studio.voice2.value = NO_VOICE
    assert studio.blend.disabled and studio.selected_voice().parts == (("af_heart", 1.0),)


def test_a_named_blend_blended_again_keeps_the_arithmetic(raw_voices):
    warm = voice("af_heart", "bf_emma", weights=(0.6, 0.4), name="warm")
    studio = offline_studio(voice=warm)
    assert studio.voice.value is warm
    studio.voice2.value = "am_michael"
    studio.blend.value = 0.5
    chosen = studio.selected_voice()
    assert dict(chosen.parts) == pytest.approx(
        {"af_heart": 0.3, "bf_emma": 0.2, "am_michael": 0.5})
    table = VoiceBank(assets.voices_path()).table(chosen)
    expected = (0.3 * raw_voices["af_heart"] + 0.2 * raw_voices["bf_emma"]
                + 0.5 * raw_voices["am_michael"])
    np.testing.assert_allclose(table, expected, rtol=1e-6, atol=1e-7)


def test_the_spec_box_overrides_the_pickers():
    studio = offline_studio(voice="af_heart:3,bf_emma:1")
    assert studio.custom.value == "af_heart:3,bf_emma:1"
    assert dict(studio.selected_voice().parts) == pytest.approx(
        {"af_heart": 0.75, "bf_emma": 0.25})
    assert studio.error == ""


# -- bad values: a message in the panel -----------------------------------------------------


@pytest.mark.parametrize(("spec", "expected"), [
    ("af_heart:0,bf_emma:0", "blend weights must sum to a positive number"),
    ("af_heart:-1,bf_emma:1", "must be finite and not negative"),
    ("af_hart", "unknown voice 'af_hart'; did you mean af_heart"),
    ("af_heart:0.5,nobody:0.5", "unknown voice 'nobody'"),
    ("af heart", "cannot read 'af heart'"),
])
def test_bad_voice_values_are_messages_in_the_panel(spec, expected):
    studio = offline_studio()
    studio.custom.value = spec  # typing in the spec box validates at once
    assert expected in studio.error
    assert "kl-studio-error" in studio.message.value
    studio.custom.value = ""
    assert studio.error == ""


def test_a_bad_voice_given_to_the_constructor_shows_in_the_panel():
    studio = offline_studio(voice="zz_nobody")
    assert "unknown voice 'zz_nobody'" in studio.error


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


def test_remainder_tracking_skips_dropped_pieces():
    text = "Hello there 🙂 friend. How are you?"
    position = _advance(text, 0, "Hello there friend.")
    assert text[position:] == " How are you?"
    assert _advance(text, position, "How are you?") == len(text)


# -- the voice map (no model) ---------------------------------------------------------------


def test_voice_map_projects_every_voice_and_blends_land_at_their_weighted_mean(raw_voices):
    warm = voice("af_heart", "bf_emma", weights=(0.7, 0.3), name="warm")
    vmap = voice_map(blends=[warm, "am_adam:1,bm_george:3"], play=False)
    assert len(vmap.coords) == assets.VOICE_COUNT + 2
    # The vectors are the raw tables averaged over their length rows.
    np.testing.assert_allclose(vmap.vectors["af_heart"],
                               raw_voices["af_heart"].reshape(510, 256).mean(axis=0), rtol=1e-5)
    # The blend's vector is the engine's blend table, averaged the same way.
    table = VoiceBank(assets.voices_path()).table(warm)
    np.testing.assert_allclose(vmap.blend_vector(warm), table.reshape(510, 256).mean(axis=0),
                               rtol=1e-5, atol=1e-7)
    heart, emma, blended = (np.array(vmap.coords[n]) for n in ("af_heart", "bf_emma", "warm"))
    np.testing.assert_allclose(blended, 0.7 * heart + 0.3 * emma, rtol=1e-4, atol=1e-6)
    george = np.array(vmap.coords["bm_george"])
    adam = np.array(vmap.coords["am_adam"])
    np.testing.assert_allclose(np.array(vmap.coords["am_adam:0.25,bm_george:0.75"]),
                               0.25 * adam + 0.75 * george, rtol=1e-4, atol=1e-6)
    first, second = vmap.explained_variance
    assert 1 > first >= second > 0
    axes = vmap.projection.axes
    np.testing.assert_allclose(axes @ axes.T, np.eye(2), atol=1e-5)


def test_voice_map_projection_is_the_top_principal_plane():
    vectors = style_vectors()
    matrix = np.stack(list(vectors.values()))
    projection = Projection.fit(matrix)
    centred = matrix - matrix.mean(axis=0)
    # No other direction holds more variance than the first axis (the covariance's top
    # eigenvector, computed independently).
    eigenvalues, eigenvectors = np.linalg.eigh(centred.T @ centred)
    top = eigenvectors[:, -1]
    assert abs(abs(float(top @ projection.axes[0])) - 1) < 1e-4
    assert projection.explained[0] == pytest.approx(eigenvalues[-1] / eigenvalues.sum(),
                                                    rel=1e-4)


def test_voice_map_hover_names_every_voice_and_the_legend_keys_colour_and_shape():
    vmap = voice_map(play=False)
    figure = vmap.figure
    points = [trace for trace in figure.data if trace.customdata is not None]
    shown = [row[0] for trace in points for row in trace.customdata]
    assert sorted(shown) == stock_voices()
    for trace in points:
        assert "%{customdata[0]}" in trace.hovertemplate
    assert {trace.name for trace in points} <= {lang for _, lang in LANGUAGES.values()}
    keys = {trace.name: trace.marker.symbol for trace in figure.data if trace.customdata is None}
    assert keys == {"female": "circle", "male": "square"}  # the shapes are in the legend
    assert figure.layout.legend.orientation == "h" and figure.layout.modebar.orientation == "v"


def test_voice_map_labels_do_not_overlap():
    from kokoro_lab.notebook.explorer import LABEL_FONT, MAP_HEIGHT, MAP_MARGIN, MAP_MIN_WIDTH
    from kokoro_lab.notebook.labels import label_box, to_pixels

    warm = voice("af_heart", "bf_emma", weights=(0.7, 0.3), name="warm")  # in a crowd
    vmap = voice_map(blends=["af_heart:0.5,bm_george:0.5", warm], play=False)
    width = MAP_MIN_WIDTH - MAP_MARGIN["l"] - MAP_MARGIN["r"]
    height = MAP_HEIGHT - MAP_MARGIN["t"] - MAP_MARGIN["b"]
    boxes = []
    for trace in vmap.figure.data:
        if trace.customdata is None:
            continue
        pixels = to_pixels(list(zip(trace.x, trace.y, strict=True)), vmap.figure.layout.xaxis.range,
                           vmap.figure.layout.yaxis.range, width, height)
        for (px, py), text, spot in zip(pixels, trace.text, trace.textposition, strict=True):
            if text:
                boxes.append(label_box(px, py, text, spot, LABEL_FONT, trace.marker.size))
    assert len(boxes) >= 30  # most voices keep a label; the crowded rest have their hover
    shown = [t for trace in vmap.figure.data for t in trace.text or ()]
    assert {"af_heart:0.5,bm_george:0.5", "warm"} <= set(shown)  # the blends asked for
    overlapping = [(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:] if a.overlaps(b)]
    assert not overlapping


@pytest.mark.model
def test_compare_voices_refuses_bad_voices_before_synthesizing(synth):
    with pytest.raises(VoiceError, match="unknown voice 'af_nope'"):
        compare_voices("Hi.", ["af_heart", "af_nope"], synth=synth)
    with pytest.raises(VoiceError, match="voice listed twice: af_heart"):
        compare_voices("Hi.", ["af_heart", "af_heart:1"], synth=synth)
    with pytest.raises(VoiceError, match="at least one voice"):
        compare_voices("Hi.", [], synth=synth)


# -- the real synthesizer, driven by the widgets --------------------------------------------


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


def test_the_panel_has_one_stop_button():
    studio = offline_studio()
    assert studio.player is not None and studio.stop_button is None
    found = []

    def collect(widget):
        found.append(widget)
        for child in getattr(widget, "children", ()):
            collect(child)

    collect(studio)
    assert not [w for w in found if getattr(w, "description", "") == "Stop"]


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


# -- %speak_studio --------------------------------------------------------------------------


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

