"""The voice lab without the model: the Studio's pickers (voices grouped with display names,
only providers and precisions this machine can run, with reasons for the rest), blend
arithmetic through its controls against the raw style vectors, the voice map's projection,
and bad values reported in the panel.
"""


from __future__ import annotations

import ipywidgets as widgets
import numpy as np
import pytest

from kokoro_lab import voice
from kokoro_lab.engine import assets
from kokoro_lab.engine.sessions import available_providers
from kokoro_lab.engine.voices import LANGUAGES, VoiceBank, describe_voice
from kokoro_lab.notebook import player
from kokoro_lab.notebook.explorer import (
    Projection,
    style_vectors,
    voice_map,
)
from kokoro_lab.notebook.player import FrontendMissing
from kokoro_lab.notebook.studio import (
    NO_VOICE,
    Studio,
    precision_choices,
    provider_choices,
    stock_voices,
    voice_options,
)
from kokoro_lab.notebook.studio.speak_button import SpeakButton
from kokoro_lab.notebook.studio.utterance import _advance


@pytest.fixture(scope="module")
def raw_voices() -> dict[str, np.ndarray]:
    """The style tables straight from the voices file, independent of the engine's bank."""
    with np.load(assets.voices_path()) as data:
        return {name: data[name].astype(np.float32) for name in data.files}


def offline_studio(**kwargs) -> Studio:
    """A Studio that does not load the model (for tests of its controls)."""
    return Studio(warm_up=False, chart=False, **kwargs)




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


def test_remainder_tracking_skips_dropped_pieces():
    text = "Hello there 🙂 friend. How are you?"
    position = _advance(text, 0, "Hello there friend.")
    assert text[position:] == " How are you?"
    assert _advance(text, position, "How are you?") == len(text)


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


def test_speak_carries_the_pages_controls_with_the_click(monkeypatch):
    """The page's values of the controls come with the click and are applied before Speak reads
    them: a pick still held in the page (ipywidgets sends a control's next change only after
    the kernel answered its last one) is not overtaken by the click."""
    studio = offline_studio(voice="bf_emma", voice2="af_heart")
    heard = []
    monkeypatch.setattr(studio, "speak", lambda: heard.append(
        (studio.selected_voice().parts, studio.speed.value)))
    button = studio.speak_button
    assert isinstance(button, SpeakButton)
    assert set(button.controls) == {c.model_id for c in (
        studio.text, studio.voice, studio.voice2, studio.blend, studio.speed, studio.custom,
        studio.provider, studio.precision)}
    page = {studio.voice2.model_id: {"index": 0}, studio.speed.model_id: {"value": 1.25}}
    button._on_page_message(button, {"event": "click", "state": page}, [])
    assert studio.voice2.value == NO_VOICE and heard == [((("bf_emma", 1.0),), 1.25)]

    # what the page cannot hold is left alone; the click still speaks with the kernel's values
    bad = {studio.voice.model_id: {"index": 10_000}, "no-such-model": {"value": 3}}
    button._on_page_message(button, {"event": "click", "state": bad}, [])
    button._on_page_message(button, {"event": "click"}, [])
    assert studio.voice.value == "bf_emma" and len(heard) == 3


def test_without_the_built_front_end_speak_is_a_plain_button(monkeypatch):
    def missing(name):
        raise FrontendMissing(f"{name} is missing")

    monkeypatch.delattr(SpeakButton, "_esm", raising=False)
    monkeypatch.setattr(player, "_static", missing)
    studio = offline_studio()
    assert type(studio.speak_button) is widgets.Button
    heard = []
    monkeypatch.setattr(studio, "speak", lambda: heard.append(True))
    studio.speak_button.click()
    assert heard == [True]
