"""The Studio panel: text, voice or blend, speed, provider and precision pickers, Speak/Stop,
the streaming player and the live latency chart.

The rules this module implements:

* **Controls apply to the next utterance.** Text, provider and precision are read when Speak is
  pressed, as the page shows them: the click carries the page's controls, so a pick the page
  has not sent yet is not overtaken (:mod:`.speak_button`). Voice and speed changes during
  playback apply from the next chunk on (see :mod:`.utterance`).
* **Bad values never raise into the notebook**: unknown voices, blend weights that do not sum to
  a positive number, an unavailable provider or precision: each is a specific message in the
  panel.
* Only what this machine can run is offered (see :mod:`.choices`).
"""

from __future__ import annotations

import contextlib
import difflib
import html
import threading
import time

import ipywidgets as widgets

from ...engine import Synthesizer, assets, check_speed
from ...engine.chunking import TextError
from ...engine.metrics import Chunk, plural
from ...engine.request import MAX_SPEED, MIN_SPEED
from ...engine.sessions import ProviderUnavailable
from ...engine.voices import Voice, VoiceError, parse, voice
from ..chart import LatencyChart
from ..player import FrontendMissing, Player
from .choices import (
    availability_note,
    precision_choices,
    provider_choices,
    stock_voices,
    voice_options,
)
from .shared import now_playing, shared_synthesizer, stop_playing
from .speak_button import SpeakButton
from .utterance import LEAD_S, Settings, StudioResult, Utterance

DEFAULT_TEXT = "Hello! This is the Kokoro voice studio. Pick a voice, blend it, and press Speak."
NO_VOICE = ""  # the second voice picker's "none" value
MAX_WIDTH = "900px"  # the panel's width on a wide page; it shrinks with a narrow one
LABELS = {"description_width": "80px"}  # one label width, so the controls line up


class Studio(widgets.VBox):
    """An interactive voice lab: text, voice (or a blend of two), speed, provider, precision.

    >>> studio = Studio("Good morning.", voice="bf_emma", speed=1.1)
    >>> studio                       # the panel: press Speak, or …
    >>> studio.speak(wait=True)      # … speak from code and get the StudioResult

    Speak applies every control to the new utterance; while it plays, changing the voice, the
    blend or the speed applies from the next chunk on. ``blends`` adds named blends (see
    :func:`kokoro_lab.voice`) to the voice picker. ``lead_s`` is how far ahead of playback
    audio is sent (``None``: as soon as it is made; later changes then apply only to what is
    not yet synthesized). ``warm_up=False`` defers loading the model to the first Speak.
    """

    def __init__(self, text: str = DEFAULT_TEXT, voice: str | Voice = "af_heart",
                 speed: float = 1.0, *, voice2: str | None = None, blend: float = 0.5,
                 provider: str | None = None, precision: str | None = None,
                 blends: tuple[Voice, ...] | list[Voice] = (), synth: Synthesizer | None = None,
                 lead_s: float | None = LEAD_S, chart: bool = True,
                 warm_up: bool = True) -> None:
        self._synth = synth
        self.lead_s = lead_s
        self._player_lock = threading.RLock()
        self.utterance: Utterance | None = None
        self.result: StudioResult | None = None
        names = stock_voices()
        self._stock = set(names)
        voice, custom, blends = _starting_voice(voice, list(blends), self._stock)
        problems: list[str] = []
        self._make_voice_controls(text, voice_options(names, blends), voice, voice2, blend,
                                  speed, custom)
        self._make_run_controls(provider, precision, problems)
        self._make_output(chart)
        self._connect()
        super().__init__(self._rows(), layout=widgets.Layout(max_width=MAX_WIDTH))
        self.add_class("kokoro-studio")
        if custom:
            try:
                self.selected_voice()
            except VoiceError as error:
                problems.append(_explain(error))
        if problems:
            self._show_error("; ".join(problems))
        self._warming: threading.Thread | None = None
        if synth is None and warm_up:
            # Load and warm the model now, off the main thread, so the first Speak is quick.
            self._warming = threading.Thread(target=self._warm, daemon=True,
                                             name="kokoro-lab-studio-warm-up")
            self._warming.start()

    # -- building the panel -----------------------------------------------------------------

    def _make_voice_controls(self, text: str, options: list, voice: str | Voice,
                             voice2: str | None, blend: float, speed: float,
                             custom: str) -> None:
        second = [("(none)", NO_VOICE)] + [o for o in options if isinstance(o[1], str)]
        # width "auto", not "100%": a widget's margin comes on top of a 100% width, and that
        # sliver scrolls the whole output area sideways.
        self.text = widgets.Textarea(value=text, placeholder="Text to speak",
                                     layout=widgets.Layout(width="auto", height="5em"))
        self.voice = widgets.Dropdown(options=options, value=voice, description="Voice",
                                      layout=_share(), style=LABELS)
        self.voice2 = widgets.Dropdown(options=second, value=voice2 or NO_VOICE,
                                       description="Blend with", layout=_share(), style=LABELS)
        self.blend = widgets.FloatSlider(
            value=blend, min=0.0, max=1.0, step=0.05, description="Weight 2",
            readout_format=".0%", disabled=not voice2, layout=_share(), style=LABELS,
            tooltip="share of the second voice in the blend",
        )
        self.speed = widgets.FloatSlider(value=speed, min=MIN_SPEED, max=MAX_SPEED, step=0.05,
                                         description="Speed", readout_format=".2f",
                                         layout=_share(), style=LABELS)
        self.custom = widgets.Text(
            value=custom, description="or a spec", continuous_update=False,  # on Enter/blur
            placeholder="e.g. af_heart:0.7,bf_emma:0.3 (overrides the pickers)",
            layout=widgets.Layout(width="auto"), style=LABELS,
        )

    def _make_run_controls(self, provider: str | None, precision: str | None,
                           problems: list[str]) -> None:
        available, missing = provider_choices()
        self.provider = widgets.Dropdown(
            options=available, description="Provider", layout=_share(), style=LABELS,
            value=_pick("provider", provider, available, missing, "cpu", problems))
        precisions, missing_precisions, notes = precision_choices()
        self.precision = widgets.Dropdown(
            options=precisions, description="Precision", layout=_share(), style=LABELS,
            value=_pick("precision", precision, precisions, missing_precisions, "int8",
                        problems))
        self.notes = widgets.HTML(availability_note(missing, missing_precisions, notes))
        self.speak_button = _speak_button([self.text, self.voice, self.voice2, self.blend,
                                           self.speed, self.custom, self.provider,
                                           self.precision])
        self.status = widgets.HTML("", layout=_share())
        self.message = widgets.HTML("")

    def _make_output(self, chart: bool) -> None:
        try:
            self.player: Player | None = Player()
        except FrontendMissing as error:  # the panel still works; results hold the audio
            self.player = None
            self._show_error(str(error))
        # One Stop: the player's (shown while it plays, and it stops synthesis too). The panel
        # has its own only when there is no player to hold one.
        self.stop_button: widgets.Button | None = None
        if self.player is None:
            self.stop_button = widgets.Button(description="Stop", icon="stop", disabled=True,
                                              tooltip="stop speaking")
        self.chart = LatencyChart(height=360, origin="Speak was pressed") if chart else None

    def _connect(self) -> None:
        for control, name in ((self.text, "text"), (self.voice, "voice"),
                              (self.voice2, "voice2"), (self.blend, "blend"),
                              (self.custom, "spec"), (self.speed, "speed"),
                              (self.provider, "provider"), (self.precision, "precision"),
                              (self.speak_button, "speak"), (self.stop_button, "stop"),
                              (self.status, "status"), (self.message, "message")):
            if control is not None:
                control.add_class(f"kl-studio-{name}")
        self.speak_button.on_click(lambda _button: self.speak())
        if self.stop_button is not None:
            self.stop_button.on_click(lambda _button: self.stop("Stop pressed"))
        for control in (self.voice, self.voice2, self.blend, self.custom, self.speed):
            control.observe(self._on_voice_or_speed, names="value")
        self.voice2.observe(self._on_second_voice, names="value")

    def _rows(self) -> list[widgets.Widget]:
        buttons = [b for b in (self.speak_button, self.stop_button) if b is not None]
        rows = [
            self.text,
            _row(self.voice, self.voice2),
            _row(self.blend, self.speed),
            self.custom,
            _row(self.provider, self.precision),
            self.notes,
            _row(*buttons, self.status),
            self.message,
        ]
        if self.player is not None:
            rows.append(self.player)
        if self.chart is not None:
            rows.append(self.chart.figure)
        return rows

    # -- the synthesizer --------------------------------------------------------------------

    def _warm(self) -> None:
        # A failure here is not lost: the first Speak tries again and reports it in the panel.
        with contextlib.suppress(Exception):
            shared_synthesizer()

    @property
    def synth(self) -> Synthesizer:
        if self._synth is None:
            if self._warming is not None:
                self._warming.join()
                self._warming = None
            self._synth = shared_synthesizer()
        return self._synth

    # -- reading the controls ---------------------------------------------------------------

    def selected_voice(self) -> Voice:
        """The voice the controls describe: the spec box if filled, else the picker(s).

        Raises :class:`VoiceError` with a specific message for unknown voices and blend
        weights that do not sum to a positive number.
        """
        spec = self.custom.value.strip()
        if spec:
            chosen = parse(spec)
        else:
            first = self.voice.value
            second = self.voice2.value
            if second == NO_VOICE:
                chosen = parse(first)
            else:
                share = float(self.blend.value)
                if isinstance(first, Voice):  # a named blend blended again: expand its parts
                    parts = [(n, w * (1 - share)) for n, w in first.parts] + [(second, share)]
                    chosen = voice(*[n for n, _ in parts], weights=[w for _, w in parts])
                else:
                    chosen = voice(first, second, weights=(1 - share, share))
        for name, _ in chosen.parts:
            if name not in self._stock:
                close = difflib.get_close_matches(name, sorted(self._stock), n=3)
                hint = f"did you mean {', '.join(close)}? " if close else ""
                raise VoiceError(f"unknown voice {name!r}; {hint}{len(self._stock)} voices "
                                 "available (see the Voice picker)")
        return chosen

    def selected_settings(self) -> Settings:
        return Settings(voice=self.selected_voice(), speed=check_speed(self.speed.value))

    # -- actions ----------------------------------------------------------------------------

    def speak(self, wait: bool = False, timeout: float | None = None) -> StudioResult | None:
        """Speak the text with the current controls (what the Speak button does).

        Returns the :class:`StudioResult` (filling while it plays; ``wait=True`` blocks until
        the end), or None when a control holds a bad value: the panel then says what is wrong.
        """
        requested = time.perf_counter()
        self._show_error("")
        try:
            settings = self.selected_settings()
            stop_playing("stopped by a newer utterance")
            if self.utterance is not None:
                self.utterance.detach()
            self.utterance = None
            utterance = Utterance(
                self.synth, self.text.value, settings, provider=self.provider.value,
                precision=self.precision.value, player=self.player, chart=self.chart,
                lead_s=self.lead_s, requested=requested, player_lock=self._player_lock,
            )
        except (TextError, VoiceError, ProviderUnavailable, ValueError, assets.AssetError,
                FileNotFoundError) as error:
            self._show_error(_explain(error))
            return None
        except Exception as error:  # never a traceback in the log of a button handler
            self._show_error(f"unexpected error: {type(error).__name__}: {error}")
            return None
        utterance.on_chunk.append(self._on_chunk)
        utterance.on_done.append(self._on_done)
        self.utterance = utterance
        self.result = utterance.result
        now_playing(utterance)
        self._stop_enabled(True)
        self._set_status(utterance, "synthesizing…")
        utterance.start()
        if wait:
            return utterance.wait(timeout)
        return utterance.result

    def stop(self, reason: str = "stopped") -> None:
        """Stop the utterance playing in this panel, if any."""
        if self.utterance is not None and self.utterance.running:
            self.utterance.stop(reason)

    def close(self) -> None:
        """Stop speaking and close the panel's widgets."""
        self.stop("panel closed")
        super().close()

    # -- reacting to the controls -----------------------------------------------------------

    def _on_second_voice(self, change: dict) -> None:
        self.blend.disabled = change["new"] == NO_VOICE

    def _on_voice_or_speed(self, _change: dict) -> None:
        """A voice or speed control moved: validate now, and re-voice the playing utterance
        from its next chunk."""
        try:
            settings = self.selected_settings()
        except (VoiceError, ValueError) as error:
            self._show_error(_explain(error))
            return
        self._show_error("")
        utterance = self.utterance
        if utterance is not None and utterance.running:
            utterance.update(settings)
            self._set_status(utterance, f"from the next chunk: {settings.voice.label}, "
                                        f"speed {settings.speed:g}")

    def _on_chunk(self, chunk: Chunk) -> None:
        self._set_status(self.utterance, f"chunk {chunk.index} · {chunk.voice} · "
                                         f"speed {chunk.speed:g} · RTF {chunk.rtf:.2f}")

    def _on_done(self, utterance: Utterance) -> None:
        if utterance is not self.utterance:
            return
        self._stop_enabled(False)
        result = utterance.result
        if result.error:
            self._show_error(f"synthesis failed: {result.error}")
        self._set_status(utterance, done_status(result))

    def _stop_enabled(self, enabled: bool) -> None:
        if self.stop_button is not None:
            self.stop_button.disabled = not enabled

    def _set_status(self, utterance: Utterance | None, text: str) -> None:
        where = ""
        if utterance is not None:
            where = f"{utterance.provider}/{utterance.precision} · "
        self.status.value = f"<span style='color:#555'>{html.escape(where + text)}</span>"

    def _show_error(self, text: str) -> None:
        self.message.value = (
            "" if not text else
            f"<div class='kl-studio-error' style='color:#b71c1c;font-weight:600'>"
            f"⚠ {html.escape(text)}</div>"
        )

    @property
    def error(self) -> str:
        """The message the panel shows about a bad value ("" when none)."""
        if not self.message.value:
            return ""
        return html.unescape(self.message.value.split("⚠ ", 1)[-1].rsplit("</div>", 1)[0])


def done_status(result: StudioResult) -> str:
    """The status line of a finished utterance. Its time is the engine's (when the first chunk
    was ready after Speak), labelled so: what the page heard is on the chart."""
    state = result.state + (f" ({result.reason})" if result.reason else "")
    if not result.chunks:
        return f"{state}: no audio"
    ready = (result.chunks[0].finished - result.requested) * 1000
    segments = len(result.segments)
    return (f"{state} · {plural(len(result.chunks), 'chunk')} · {result.duration_s:.1f} s"
            + (f" · {plural(segments, 'segment')}" if segments > 1 else "")
            + f" · engine: first chunk at {ready:.0f} ms")


def _starting_voice(voice: str | Voice, blends: list[Voice], stock: set[str]
                    ) -> tuple[str | Voice, str, list[Voice]]:
    """(the voice picker's value, the spec box's text, the named blends to offer) for the
    ``voice`` a Studio was opened with."""
    custom = ""
    if isinstance(voice, Voice) and len(voice.parts) > 1 and voice not in blends:
        blends.insert(0, voice)
    if isinstance(voice, Voice) and len(voice.parts) == 1:
        voice = voice.parts[0][0]
    if isinstance(voice, str) and voice not in stock:
        custom, voice = voice, "af_heart"  # a blend string or an unknown name: the spec box
    return voice, custom, blends


def _speak_button(controls: list[widgets.Widget]) -> SpeakButton | widgets.Button:
    """Speak, carrying the page's values of ``controls`` with the click (see
    :mod:`.speak_button`); a plain button where the front end is not built."""
    try:
        return SpeakButton(controls, tooltip="speak the text")
    except FrontendMissing:
        return widgets.Button(description="Speak", button_style="success", icon="play",
                              tooltip="speak the text")


def _share() -> widgets.Layout:
    """A control taking an equal share of its row, allowed to shrink below its content (a long
    option label must not push the row past the output area)."""
    return widgets.Layout(width="auto", flex="1 1 0%", min_width="0")


def _row(*children: widgets.Widget) -> widgets.HBox:
    return widgets.HBox(list(children), layout=widgets.Layout(width="auto",
                                                              align_items="center"))


def _pick(what: str, wanted: str | None, available: list[str], missing: dict[str, str],
          default: str, problems: list[str]) -> str:
    """The picker's starting value; a ``wanted`` value that cannot run here is reported in
    ``problems`` (shown in the panel) and replaced by the default."""
    fallback = default if default in available else available[0]
    if wanted is None or wanted.lower() in available:
        return fallback if wanted is None else wanted.lower()
    why = missing.get(wanted.lower(), "not known here")
    problems.append(f"{what} {wanted!r} is not available ({why}); using {fallback}. "
                    f"Available: {', '.join(available)}")
    return fallback


def _explain(error: BaseException) -> str:
    kind = {TextError: "text", VoiceError: "voice", ProviderUnavailable: "provider"}
    for cls, label in kind.items():
        if isinstance(error, cls):
            return f"{label}: {error}"
    return str(error)

