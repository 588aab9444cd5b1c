"""The voice explorer: one sentence in several voices side by side, and a map of all the voices.

The rules this module implements:

* :func:`compare_voices` synthesizes the voices **one after another**, never in parallel:
  parallel runs would share the cores and distort each other's real-time factor and time to
  first audio. It runs on a worker thread, so the grid shows at once and fills in card by card.
* Each card's figures are the engine's own measurements: *duration* is the audio length;
  *first audio* is the time from the request until the first audible sample would play
  (:attr:`~kokoro_lab.engine.metrics.Result.playback`); *RTF* is total synthesis time over
  audio duration.
* A finished card gets its own player holding the whole utterance, playable but not auto-played
  (the cards would otherwise talk over each other).
* :func:`voice_map` places every voice by its style table averaged over the table's length rows
  (one 256-vector per voice), projected on the first two principal components of the centred
  54 × 256 matrix (numpy SVD). The projection is linear, so a blend lands exactly at the
  weighted mean of its parts' positions. Clicking a point speaks a sample in that voice.
"""

from __future__ import annotations

import html
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import ipywidgets as widgets
import numpy as np
import plotly.graph_objects as go

from ..engine import Stream, Synthesizer, assets
from ..engine.metrics import Result
from ..engine.voices import GENDERS, LANGUAGES, Voice, VoiceError, describe_voice, parse
from .clip import Clip
from .labels import place_labels
from .player import FrontendMissing, Player
from .studio.shared import shared_synthesizer
from .studio.utterance import Settings, Utterance

DEFAULT_VOICES = ("af_heart", "am_michael", "bf_emma", "bm_george")
DEFAULT_SAMPLE = "Hello! This is how I sound."
CARD_WIDTH = "320px"  # narrower, and the audio controls squeeze their seek bar away
LANGUAGE_COLORS = dict(zip(LANGUAGES, (
    "#1e88e5", "#43a047", "#e53935", "#8e24aa", "#fb8c00", "#00897b", "#d81b60", "#6d4c41",
    "#3949ab",
), strict=True))
GENDER_SYMBOLS = {"f": "circle", "m": "square"}
MAP_HEIGHT = 600
# The legend sits in the bottom margin; the toolbar (modebar) runs down the right one, so it
# never covers the title.
MAP_MARGIN = {"l": 60, "r": 44, "t": 60, "b": 130}
MAP_MIN_WIDTH = 640  # the narrowest the map is expected to be drawn: labels are placed for it
MARKER_SIZE = 11
LABEL_FONT = 10


def _resolve(synth: Synthesizer, spec: str | Voice) -> Voice:
    return synth.resolve_voice(spec)  # raises VoiceError with a suggestion for unknown names


def _file_name(label: str) -> str:
    """A download name for a voice label (blend specs hold ``:`` and ``,``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", label).strip("_") + ".wav"


def _describe(spec: Voice) -> str:
    if len(spec.parts) == 1:
        info = describe_voice(spec.parts[0][0])
        return f"{info['display']} · {info['language']} · {info['gender']}"
    return "blend: " + " + ".join(f"{describe_voice(n)['display']} {w:.0%}"
                                  for n, w in spec.parts)


# -------------------------------------------------------------------------------------------
# compare_voices


@dataclass
class VoiceTake:
    """One voice's rendering of the comparison text."""

    voice: str  # the voice's label (a name, a blend spec, or a named blend's name)
    result: Result

    @property
    def duration_s(self) -> float:
        return self.result.duration_s

    @property
    def first_audio_ms(self) -> float:
        return self.result.playback.first_audio_ms

    @property
    def synthesis_ms(self) -> float:
        return sum(c.synthesis_ms for c in self.result.chunks)

    @property
    def rtf(self) -> float:
        audio_ms = self.duration_s * 1000
        return self.synthesis_ms / audio_ms if audio_ms else float("inf")

    def record(self) -> dict:
        return {
            "voice": self.voice, "chunks": len(self.result.chunks),
            "duration_s": round(self.duration_s, 3),
            "first_audio_ms": round(self.first_audio_ms, 1),
            "synthesis_ms": round(self.synthesis_ms, 1), "rtf": round(self.rtf, 3),
            "provider": self.result.provider, "precision": self.result.precision,
        }


class VoiceComparison:
    """A grid of cards, one per voice, filled in as each voice is synthesized.

    Display it (it is the cell's output), then ``.wait()`` for the figures:
    ``.takes`` (voice label → :class:`VoiceTake`), ``.records()``, ``.to_dataframe()``.
    """

    def __init__(self, text: str, voices: Sequence[str | Voice], *, synth: Synthesizer,
                 speed: float = 1.0, lang: str | None = None, play: bool = True) -> None:
        if isinstance(voices, (str, Voice)):
            voices = [voices]
        if not voices:
            raise VoiceError("compare_voices needs at least one voice")
        resolved = [_resolve(synth, v) for v in voices]
        labels = [v.label for v in resolved]
        repeated = sorted({label for label in labels if labels.count(label) > 1})
        if repeated:
            raise VoiceError(f"voice listed twice: {', '.join(repeated)}")
        self.text, self.speed, self.lang = text, speed, lang
        self.synth = synth
        self.voices = resolved
        self.play = play
        self.takes: dict[str, VoiceTake] = {}
        self.errors: dict[str, str] = {}
        self._cancel = threading.Event()
        self._done = threading.Event()
        # The first stream opens here, so bad text or speed raises to the caller at once.
        self._first: Stream | None = self._open(resolved[0])
        self._cards = [self._card(v, "waiting…") for v in resolved]
        self._cards[0].children[1].value = "<i>synthesizing…</i>"
        self.widget = widgets.GridBox(
            self._cards, layout=widgets.Layout(
                grid_template_columns=f"repeat(auto-fill, minmax({CARD_WIDTH}, 1fr))",
                grid_gap="10px"),
        )
        self.widget.add_class("kokoro-compare")
        self._thread = threading.Thread(target=self._run, name="kokoro-lab-compare",
                                        daemon=True)
        self._thread.start()

    def _open(self, spec: Voice) -> Stream:
        return self.synth.stream(self.text, voice=spec, speed=self.speed, lang=self.lang)

    @staticmethod
    def _card(spec: Voice, state: str) -> widgets.VBox:
        head = widgets.HTML(f"<b>{html.escape(spec.label)}</b><br>"
                            f"<span style='color:#666;font-size:85%'>"
                            f"{html.escape(_describe(spec))}</span>")
        body = widgets.HTML(f"<i>{html.escape(state)}</i>")
        card = widgets.VBox([head, body], layout=widgets.Layout(
            border="1px solid #ddd", padding="6px", width="auto"))
        card.add_class("kokoro-compare-card")
        return card

    # -- the worker -------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            for position, spec in enumerate(self.voices):
                if self._cancel.is_set():
                    break
                card = self._cards[position]
                card.children[1].value = "<i>synthesizing…</i>"
                try:
                    stream = self._first if position == 0 else self._open(spec)
                    self._first = None
                    result = stream.result()
                except Exception as error:  # one voice failing does not sink the others
                    self.errors[spec.label] = f"{type(error).__name__}: {error}"
                    card.children[1].value = (f"<span style='color:#b71c1c'>"
                                              f"{html.escape(self.errors[spec.label])}</span>")
                    continue
                take = VoiceTake(spec.label, result)
                self.takes[spec.label] = take
                self._fill(card, take)
        finally:
            self._done.set()

    def _fill(self, card: widgets.VBox, take: VoiceTake) -> None:
        figures = widgets.HTML(
            "<table style='font-size:90%'>"
            f"<tr><td>duration</td><td><b>{take.duration_s:.2f} s</b></td></tr>"
            f"<tr><td>first audio (engine)</td><td><b>{take.first_audio_ms:.0f} ms</b></td></tr>"
            f"<tr><td>RTF</td><td><b>{take.rtf:.2f}</b></td></tr>"
            f"<tr><td>chunks</td><td>{len(take.result.chunks)}</td></tr></table>"
        )
        children = [card.children[0], figures]
        if self.play:
            # Finished audio: the browser's own controls and a download link, not a streaming
            # player (whose Stop and progress bar mean nothing for a clip that is complete).
            children.append(Clip(take.result.audio, filename=_file_name(take.voice)))
        card.children = tuple(children)

    # -- the caller's side ------------------------------------------------------------------

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> VoiceComparison:
        """Block until every voice is done; returns ``self``."""
        if not self._done.wait(timeout):
            raise TimeoutError(f"voice comparison still running after {timeout} s")
        return self

    def stop(self) -> None:
        """Skip the voices not yet synthesized (the one in progress finishes)."""
        self._cancel.set()

    def records(self) -> list[dict]:
        """One row per finished voice, in the order given."""
        return [self.takes[v.label].record() for v in self.voices if v.label in self.takes]

    def to_dataframe(self):
        """The records as a pandas DataFrame (needs pandas)."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("to_dataframe() needs pandas: pip install pandas") from None
        return pd.DataFrame.from_records(self.records())

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    def __repr__(self) -> str:
        state = "done" if self.done else "running"
        return (f"<VoiceComparison {state}: {len(self.takes)}/{len(self.voices)} voices, "
                f"text {self.text[:40]!r}>")


def compare_voices(text: str, voices: Sequence[str | Voice] = DEFAULT_VOICES, *,
                   speed: float = 1.0, lang: str | None = None, play: bool = True,
                   synth: Synthesizer | None = None) -> VoiceComparison:
    """Render ``text`` in each voice as a grid of players with duration, first audio and RTF.

    Voices are names, blend specs (``"af_heart:0.7,bf_emma:0.3"``) or :func:`kokoro_lab.voice`
    blends. Returns at once (synthesis runs on a worker thread, one voice at a time); the
    returned :class:`VoiceComparison` displays as the grid; ``.wait()`` blocks until done.
    Unknown voices, empty text and a bad speed raise before anything is synthesized.

    >>> cmp = compare_voices("Good morning.", ["af_heart", "bf_emma", "af_heart:0.5,bf_emma:0.5"])
    >>> cmp.wait().to_dataframe()
    """
    return VoiceComparison(text, voices, synth=synth or shared_synthesizer(), speed=speed,
                           lang=lang, play=play)


# -------------------------------------------------------------------------------------------
# voice_map


def style_vectors(path=None) -> dict[str, np.ndarray]:
    """One 256-vector per stock voice: its style table averaged over the length rows."""
    with np.load(assets.voices_path(path)) as data:
        return {name: data[name].reshape(data[name].shape[0], -1).mean(axis=0)
                for name in sorted(data.files)}


@dataclass
class Projection:
    """A 2-D principal-component projection fitted on the stock voices."""

    mean: np.ndarray  # (256,)
    axes: np.ndarray  # (2, 256), unit rows
    explained: np.ndarray  # (2,) share of the total variance along each axis

    @classmethod
    def fit(cls, matrix: np.ndarray) -> Projection:
        mean = matrix.mean(axis=0)
        _, singular, vt = np.linalg.svd(matrix - mean, full_matrices=False)
        variance = singular**2
        return cls(mean=mean, axes=vt[:2], explained=variance[:2] / variance.sum())

    def __call__(self, vectors: np.ndarray) -> np.ndarray:
        return (np.atleast_2d(vectors) - self.mean) @ self.axes.T


class VoiceMap:
    """The voices as points in the plane of their two main style directions.

    ``.figure`` is a plotly ``FigureWidget`` (one trace per language; circles female, squares
    male, stars for blends); hovering shows the name, clicking speaks ``sample`` in that voice
    in ``.player``. ``.coords`` maps each voice to its (x, y); ``.play(name)`` does what a
    click does.
    """

    def __init__(self, *, synth: Synthesizer | None = None, sample: str = DEFAULT_SAMPLE,
                 blends: Sequence[Voice | str] = (), play: bool = True) -> None:
        self.sample = sample
        self._synth = synth
        self.vectors = style_vectors()
        names = list(self.vectors)
        self.projection = Projection.fit(np.stack([self.vectors[n] for n in names]))
        self.blends = [parse(b) for b in blends]
        for blend in self.blends:
            for name, _ in blend.parts:
                if name not in self.vectors:
                    raise VoiceError(f"unknown voice {name!r} in blend {blend.label!r}")
        self.coords: dict[str, tuple[float, float]] = {}
        points = self.projection(np.stack([self.vectors[n] for n in names]))
        for name, (x, y) in zip(names, points, strict=True):
            self.coords[name] = (float(x), float(y))
        for blend in self.blends:
            self.coords[blend.label] = tuple(float(v) for v in self.projection(
                self.blend_vector(blend))[0])
        self.figure = self._draw(names)
        self.status = widgets.HTML("<span style='color:#666'>Click a voice to hear it.</span>")
        self.status.add_class("kl-map-status")
        self.speech: Utterance | None = None
        self.player: Player | None = None
        # One player for every click: an older utterance still finishing its chunk must not
        # push into, or end, the newer one's stream (Utterance checks ownership under this).
        self._player_lock = threading.RLock()
        if play:
            try:
                self.player = Player()
            except FrontendMissing as error:
                self.status.value = f"<i>{html.escape(str(error))}</i>"
        self.widget = widgets.VBox([self.figure, self.status]
                                   + ([self.player] if self.player is not None else []))
        self.widget.add_class("kokoro-voice-map")

    def blend_vector(self, blend: Voice | str) -> np.ndarray:
        """A blend's 256-vector: the weighted mean of its parts' (as the engine blends)."""
        spec = parse(blend)
        return sum(w * self.vectors[n] for n, w in spec.parts)

    @property
    def explained_variance(self) -> tuple[float, float]:
        return tuple(float(v) for v in self.projection.explained)

    def _draw(self, names: list[str]) -> go.FigureWidget:
        labels = {n: describe_voice(n)["display"] for n in names}
        labels.update({b.label: b.label for b in self.blends})
        spots = self._label_spots(labels)
        figure = go.FigureWidget()
        for code, (_, language) in LANGUAGES.items():
            members = [n for n in names if n[:1] == code]
            if members:
                figure.add_scatter(name=language, **self._points(
                    members, labels, spots, [[n, labels[n], language, GENDERS.get(n[1:2], "?")]
                                             for n in members]),
                    marker={"size": MARKER_SIZE, "color": LANGUAGE_COLORS[code],
                            "symbol": [GENDER_SYMBOLS.get(n[1:2], "diamond") for n in members],
                            "line": {"width": 1, "color": "white"}},
                    hovertemplate="<b>%{customdata[1]}</b> (%{customdata[0]})<br>"
                                  "%{customdata[2]}, %{customdata[3]}<extra></extra>")
        if self.blends:
            keys = [b.label for b in self.blends]
            figure.add_scatter(name="blends", **self._points(
                keys, labels, spots, [[b.label, _describe(b), "blend", ""] for b in self.blends]),
                marker={"size": 14, "color": "black", "symbol": "star"},
                hovertemplate="<b>%{customdata[0]}</b><br>%{customdata[1]}<extra></extra>")
        for gender, symbol in GENDER_SYMBOLS.items():  # the shapes' key: legend entries only
            figure.add_scatter(name=GENDERS[gender], x=[None], y=[None],
                               mode="markers", hoverinfo="skip",
                               marker={"size": MARKER_SIZE, "color": "#9e9e9e",
                                       "symbol": symbol})
        figure.update_layout(self._layout())
        figure._config = {"displaylogo": False, "responsive": True}
        for trace in figure.data:
            trace.on_click(self._on_click)
        return figure

    def _ranges(self) -> tuple[tuple[float, float], tuple[float, float]]:
        xs, ys = zip(*self.coords.values(), strict=True)

        def padded(values) -> tuple[float, float]:
            low, high = min(values), max(values)
            pad = (high - low) * 0.06 or 1.0
            return low - pad, high + pad

        return padded(xs), padded(ys)

    def _label_spots(self, labels: dict[str, str]) -> dict[str, str | None]:
        """Where each point's label goes (None: no room; the name is on hover)."""
        keys = list(self.coords)
        x_range, y_range = self._ranges()
        blends = {b.label for b in self.blends}
        spots = place_labels(
            [self.coords[k] for k in keys], [labels[k] for k in keys], x_range=x_range,
            y_range=y_range, width_px=MAP_MIN_WIDTH - MAP_MARGIN["l"] - MAP_MARGIN["r"],
            height_px=MAP_HEIGHT - MAP_MARGIN["t"] - MAP_MARGIN["b"], font_size=LABEL_FONT,
            marker_size=MARKER_SIZE, first=[i for i, k in enumerate(keys) if k in blends])
        return dict(zip(keys, spots, strict=True))

    def _points(self, keys: list[str], labels: dict[str, str], spots: dict[str, str | None],
                customdata: list[list[str]]) -> dict:
        return {"mode": "markers+text", "x": [self.coords[k][0] for k in keys],
                "y": [self.coords[k][1] for k in keys],
                "text": [labels[k] if spots[k] else "" for k in keys],
                "textposition": [spots[k] or "top center" for k in keys],
                "textfont": {"size": LABEL_FONT}, "customdata": customdata}

    def _layout(self) -> dict:
        px, py = self.explained_variance
        x_range, y_range = self._ranges()
        return {
            "height": MAP_HEIGHT, "margin": MAP_MARGIN, "modebar": {"orientation": "v"},
            "title": {"text": "Voices by style (PCA of the style vectors): click one to hear "
                              "it; hover for names", "x": 0, "xanchor": "left",
                      "font": {"size": 14}},
            "xaxis": {"title": {"text": f"PC 1 ({px:.0%} of variance)"}, "range": x_range},
            "yaxis": {"title": {"text": f"PC 2 ({py:.0%})"}, "range": y_range},
            "legend": {"orientation": "h", "x": 0, "xanchor": "left", "y": -0.14,
                       "yanchor": "top", "font": {"size": 11},
                       "title": {"text": "colour: language · shape: gender"}},
        }

    # -- clicking ---------------------------------------------------------------------------

    def _on_click(self, trace, points, _state) -> None:
        if not points.point_inds:
            return
        name = trace.customdata[points.point_inds[0]][0]
        try:
            self.play(name)
        except Exception as error:  # a click handler must not raise into the widget log
            self.status.value = (f"<span style='color:#b71c1c'>{html.escape(type(error).__name__)}"
                                 f": {html.escape(str(error))}</span>")

    @property
    def synth(self) -> Synthesizer:
        if self._synth is None:
            self._synth = shared_synthesizer()
        return self._synth

    def play(self, voice_name: str | Voice) -> Utterance:
        """Speak the sample in ``voice_name`` (a stock voice or one of the map's blends);
        returns the :class:`~kokoro_lab.notebook.studio.Utterance` (``.wait()`` for its
        result). A click while a sample plays stops it."""
        requested = time.perf_counter()
        synth = self.synth
        named = next((b for b in self.blends if b.label == voice_name), None)
        spec = synth.resolve_voice(named or voice_name)  # VoiceError for unknown names
        previous = self.speech
        if previous is not None:
            previous.stop("another voice was clicked")
            previous.detach()
        self.speech = Utterance(
            synth, self.sample, Settings(voice=spec, speed=1.0), provider=synth.provider,
            precision=synth.precision, player=self.player, lead_s=None, requested=requested,
            origin="voice was clicked", player_lock=self._player_lock,
        ).start()
        self.status.value = (f"<span style='color:#555'>speaking as "
                             f"<b>{html.escape(spec.label)}</b> "
                             f"({html.escape(_describe(spec))})</span>")
        return self.speech

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)


def voice_map(*, sample: str = DEFAULT_SAMPLE, blends: Sequence[Voice | str] = (),
              play: bool = True, synth: Synthesizer | None = None) -> VoiceMap:
    """A map of the 54 voices (2-D PCA of their style vectors) as a plotly scatter.

    Hover shows each voice's name; clicking a point speaks ``sample`` in that voice. ``blends``
    adds blends as stars (each lands at the weighted mean of its parts). The model is loaded
    only on the first click.
    """
    return VoiceMap(synth=synth, sample=sample, blends=blends, play=play)
