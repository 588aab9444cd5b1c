"""The voice studio: one panel to pick a voice, blend two, set speed, provider and precision, speak.

The rules this module implements:

* **Controls apply to the next utterance.** Text, provider and precision are read when Speak is
  pressed.
* **Voice and speed changes during playback apply from the next chunk on.** The engine's
  :class:`~kokoro_lab.engine.synthesizer.Stream` takes its voice and speed at start, so a change
  cancels the stream and starts a new one on the unspoken remainder of the text, at the next
  chunk boundary. The remainder is found by matching each sent chunk's words against the
  cleaned input (chunk texts are the input's own words, in order), so no word is skipped or
  said twice.
* **Audio is sent to the browser only ``lead_s`` ahead of playback** (paced by the browser's own
  schedule reports, or by a real-time estimate when no browser reports), so "the next chunk" is
  the one after the chunk that is playing, not the end of whatever was synthesized ahead.
* **All segments play as one utterance**: one player stream, one latency chart, one result
  whose chunks are numbered 0, 1, 2 … across segments and carry the voice and speed they were
  made with.
* **Bad values never raise into the notebook**: unknown voices, blend weights that do not sum to
  a positive number, an unavailable provider or precision: each is a specific message in the
  panel.
* Only what this machine can run is offered: providers from ONNX Runtime's available list,
  precisions whose graph exists or can be derived here; a note says why the others are missing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import html
import importlib.metadata
import importlib.util
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

import ipywidgets as widgets
import numpy as np
from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from IPython.display import display
from traitlets import Float, Unicode
from traitlets.config import Configurable

from ..engine import assets
from ..engine.chunking import TextError, clean_text
from ..engine.metrics import SAMPLE_RATE, Chunk
from ..engine.sessions import ProviderUnavailable, available_providers
from ..engine.synthesizer import MAX_SPEED, MIN_SPEED, Stream, Synthesizer, check_speed
from ..engine.voices import GENDERS, LANGUAGES, Voice, VoiceError, describe_voice, parse, voice
from .chart import LatencyChart
from .player import FrontendMissing, Player
from .speech import SpeakResult

DEFAULT_TEXT = "Hello! This is the Kokoro voice studio. Pick a voice, blend it, and press Speak."
LEAD_S = 1.0  # seconds of audio sent ahead of playback: room to re-synthesize after a change
NO_VOICE = ""  # the second voice picker's "none" value
PREVIEW_CHARS = 60

# Providers worth explaining when absent, with the package or platform each needs.
_EXPLAINED_PROVIDERS = ("cuda", "tensorrt", "rocm", "openvino", "coreml", "directml")

# -------------------------------------------------------------------------------------------
# the kernel's synthesizer, shared with %%speak when the extension is loaded

_SHARED: Synthesizer | None = None
_SHARED_LOCK = threading.Lock()


def shared_synthesizer() -> Synthesizer:
    """The kernel's warm synthesizer: ``%%speak``'s when the extension is loaded, else one
    created here once (int8 on CPU) and reused by every Studio, comparison and voice map."""
    global _SHARED
    from .magic import current_magics

    try:
        magics = current_magics()
    except Exception:  # no IPython at all (plain Python): fall through to our own
        magics = None
    if magics is not None:
        return magics.synth
    with _SHARED_LOCK:
        if _SHARED is None:
            _SHARED = Synthesizer()
        return _SHARED


# -------------------------------------------------------------------------------------------
# what this machine offers


def stock_voices() -> list[str]:
    """Names of the stock voices in the voices file, without loading a model."""
    with np.load(assets.voices_path()) as data:
        return sorted(data.files)


def voice_label(name: str) -> str:
    """``"af_heart"`` → ``"American English · female · Heart (af_heart)"``."""
    info = describe_voice(name)
    return f"{info['language']} · {info['gender']} · {info['display']} ({name})"


def blend_label(spec: Voice) -> str:
    parts = " + ".join(f"{describe_voice(n)['display']} {w:.0%}" for n, w in spec.parts)
    return f"Blend · {spec.name or spec.label} ({parts})"


def voice_options(names: list[str], blends: tuple[Voice, ...] | list[Voice] = ()) -> list:
    """Dropdown options grouped by language then gender, each labelled with its display name.

    Named blends come first, their values being the :class:`Voice` objects themselves.
    """
    language_order = {code: i for i, code in enumerate(LANGUAGES)}
    gender_order = {code: i for i, code in enumerate(GENDERS)}

    def key(name: str) -> tuple:
        return (language_order.get(name[:1], 99), gender_order.get(name[1:2], 9),
                describe_voice(name)["display"])

    options: list = [(blend_label(b), b) for b in blends]
    options += [(voice_label(n), n) for n in sorted(names, key=key)]
    return options


def _dist_installed(name: str) -> bool:
    try:
        importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def provider_choices() -> tuple[list[str], dict[str, str]]:
    """(providers that can run here, {absent provider: why}) for the provider picker."""
    available = available_providers()
    gpu_build = _dist_installed("onnxruntime-gpu")
    reasons = {
        "cuda": "this onnxruntime build has no CUDA" if gpu_build
        else "onnxruntime-gpu not installed (pip install 'kokoro-lab[gpu]')",
        "tensorrt": "TensorRT is not in this onnxruntime build" if gpu_build
        else "onnxruntime-gpu not installed",
        "rocm": "needs an onnxruntime ROCm build",
        "openvino": "needs onnxruntime-openvino",
        "coreml": "macOS only" if sys.platform != "darwin"
        else "not in this onnxruntime build",
        "directml": "Windows only (onnxruntime-directml)" if sys.platform != "win32"
        else "needs onnxruntime-directml",
    }
    missing = {p: reasons[p] for p in _EXPLAINED_PROVIDERS if p not in available}
    return available, missing


def precision_choices() -> tuple[list[str], dict[str, str], dict[str, str]]:
    """(precisions that can run here, {absent: why}, {available: a note, e.g. "built on first
    use"}) for the precision picker.

    int8 is the released graph. fp32 and fp16 are derived from it (see
    :mod:`kokoro_lab.engine.precisions`): available when their graph is cached or given by the
    user, or when the ``onnx`` package is here to derive it.
    """
    available, missing, notes = [], {}, {}
    for precision in assets.PRECISIONS:
        if precision == "int8" or os.environ.get(assets.model_env_var(precision)):
            available.append(precision)
            continue
        from ..engine import precisions

        cached = precisions.expected_path(assets.cache_dir(), precision).is_file()
        if cached:
            available.append(precision)
        elif importlib.util.find_spec("onnx") is not None:
            available.append(precision)
            notes[precision] = "derived from int8 on first use (takes a while once)"
        else:
            missing[precision] = "needs the onnx package to derive it from int8"
    return available, missing, notes


def availability_note(missing_providers: dict[str, str], missing_precisions: dict[str, str],
                      precision_notes: dict[str, str]) -> str:
    """The small HTML note under the pickers: what is not offered here, and why."""
    lines = []
    if missing_providers:
        lines.append("Providers not available here: " + "; ".join(
            f"<b>{html.escape(p)}</b>: {html.escape(why)}" for p, why in missing_providers.items()))
    if missing_precisions:
        lines.append("Precisions not available here: " + "; ".join(
            f"<b>{html.escape(p)}</b>: {html.escape(why)}"
            for p, why in missing_precisions.items()))
    if precision_notes:
        lines.append("; ".join(f"<b>{html.escape(p)}</b>: {html.escape(n)}"
                               for p, n in precision_notes.items()))
    if not lines:
        return ""
    return ("<div class='kl-studio-notes' style='font-size:85%;color:#666;line-height:1.3'>"
            + "<br>".join(lines) + "</div>")


# -------------------------------------------------------------------------------------------
# one utterance: engine streams feeding one player stream


@dataclass(repr=False)
class StudioResult(SpeakResult):
    """A Studio utterance: a :class:`SpeakResult` whose chunks may come from several segments.

    ``segments`` lists where each engine stream began (``first_chunk``) and the voice and speed
    it used; a voice or speed change during playback starts a new segment.
    """

    segments: list[dict] = field(default_factory=list)


@dataclass(frozen=True)
class Settings:
    """What the engine needs for one segment."""

    voice: Voice
    speed: float


def _advance(cleaned: str, position: int, chunk_text: str) -> int:
    """The position in ``cleaned`` just after ``chunk_text``'s words, searched from
    ``position``. Words are found one by one, so pieces the engine dropped (emoji, stray
    symbols between words) are skipped rather than breaking the match."""
    for word in chunk_text.split():
        found = cleaned.find(word, position)
        if found >= 0:
            position = found + len(word)
    return position


class Utterance:
    """One press of Speak: segments of engine streams played as one stream in a player.

    Chunks are held in the kernel until playback is within ``lead_s`` of needing them
    (``lead_s=None`` sends each chunk as soon as it is made). :meth:`update` asks for a new
    voice or speed; it takes effect from the next chunk sent.
    """

    def __init__(self, synth: Synthesizer, text: str, settings: Settings, *,
                 provider: str, precision: str, player: Player | None = None,
                 chart: LatencyChart | None = None, lead_s: float | None = LEAD_S,
                 requested: float | None = None,
                 player_lock: threading.RLock | None = None) -> None:
        self.synth = synth
        self.text = text
        self.provider = provider
        self.precision = precision
        self.player = player
        self.chart = chart
        self.lead_s = lead_s
        # Held while talking to the player: a stopping utterance's feeder may still be
        # finishing a chunk when the next one takes the player over, and must not push into,
        # stop or end the newer stream (see _owns_player).
        self._player_lock = player_lock or threading.RLock()
        self.requested = time.perf_counter() if requested is None else requested
        self._cleaned = clean_text(text)
        self._position = 0  # how much of the cleaned text has been sent to the player
        self._settings = settings
        self._pending: Settings | None = None
        self._lock = threading.Lock()
        self._wake = threading.Event()  # set on update() / stop(): the feeder re-checks
        self._stopped = threading.Event()
        self._stop_reason = ""
        self._play_end = 0.0  # perf_counter when the audio sent so far ends playing
        self._durations: list[float] = []  # seconds per chunk sent, by sequence number
        self.on_chunk: list[Callable[[Chunk], None]] = []  # called on the feeder thread
        self.on_done: list[Callable[[Utterance], None]] = []
        # The first stream starts here, on the caller's thread, so bad input raises at once.
        stream = self._open(settings)
        self.result = StudioResult(
            chunks=[], provider=stream.loaded.provider, precision=stream.loaded.precision,
            text=text, voice=settings.voice.label, speed=settings.speed, lang=stream.lang,
            requested=self.requested,
        )
        self.result.segments.append(self._segment(settings))
        self.stream = stream
        self.stream_id: str | None = None
        if player is not None:
            with self._player_lock:
                self.stream_id = player.start(label=_preview(text))
            player.on_stop_request(self._on_stop_request)
            player.on_scheduled(self._on_scheduled)
            if chart is not None:
                player.on_scheduled(chart.add_report)
        if chart is not None:
            chart.reset(self.requested)
        self._thread = threading.Thread(target=self._feed, name="kokoro-lab-studio",
                                        daemon=True)

    # -- control ----------------------------------------------------------------------------

    def start(self) -> Utterance:
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    @property
    def settings(self) -> Settings:
        """The voice and speed of the segment being sent now."""
        return self._settings

    def update(self, settings: Settings) -> None:
        """Use ``settings`` from the next chunk sent to the player on."""
        with self._lock:
            self._pending = settings
        self._wake.set()

    def stop(self, reason: str = "stopped") -> None:
        """Cancel synthesis (within one chunk) and silence the player."""
        if self._stopped.is_set():
            return
        self._stop_reason = reason
        self._stopped.set()
        self._wake.set()
        self.stream.cancel()
        with self._player_lock:
            if self._owns_player():
                self.player.stop(reason)

    def _owns_player(self) -> bool:
        return self.player is not None and self.player.stream_id == self.stream_id

    def wait(self, timeout: float | None = None) -> StudioResult:
        """Block until the utterance ends. A kernel interrupt stops it, then re-raises."""
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while self._thread.is_alive():
                left = 0.1 if deadline is None else min(0.1, deadline - time.monotonic())
                if left <= 0:
                    raise TimeoutError(f"the utterance is still running after {timeout} s")
                self._thread.join(left)
        except KeyboardInterrupt:
            self.stop("interrupted")
            self._thread.join(5)
            raise
        return self.result

    def detach(self) -> None:
        """Stop listening to the player (a newer utterance is taking it over)."""
        if self.player is not None:
            self.player.on_stop_request(self._on_stop_request, remove=True)
            self.player.on_scheduled(self._on_scheduled, remove=True)
            if self.chart is not None:
                self.player.on_scheduled(self.chart.add_report, remove=True)

    # -- browser callbacks ------------------------------------------------------------------

    def _on_stop_request(self, stream_id: str) -> None:
        if stream_id == self.stream_id:
            self.stop("Stop pressed")

    def _on_scheduled(self, report: dict) -> None:
        """The browser scheduled chunk ``seq``: re-anchor the playback estimate on its clock."""
        try:
            seq = int(report["seq"])
            ends_in = float(report["start"]) + float(report["duration"]) - float(report["now"])
            received = float(report["received"])
        except (KeyError, TypeError, ValueError):
            return
        with self._lock:
            later = sum(self._durations[seq + 1:])
            self._play_end = received + ends_in + later
        self._wake.set()

    # -- the feeder thread ------------------------------------------------------------------

    def _open(self, settings: Settings, text: str | None = None) -> Stream:
        return self.synth.stream(
            self._cleaned if text is None else text, voice=settings.voice,
            speed=settings.speed, precision=self.precision, provider=self.provider,
        )

    def _segment(self, settings: Settings) -> dict:
        return {"first_chunk": len(self.result.chunks), "voice": settings.voice.label,
                "speed": settings.speed, "started": time.perf_counter()}

    def _take_change(self) -> Settings | None:
        """The pending settings if they differ from the current segment's, else None."""
        with self._lock:
            pending, self._pending = self._pending, None
        if pending is None or pending == self._settings:
            return None
        return pending

    def _hold(self) -> Settings | None:
        """Wait until the next chunk is due in the player; return new settings if a change
        arrives meanwhile (the held chunk is then dropped and re-synthesized)."""
        while not self._stopped.is_set():
            change = self._take_change()
            if change is not None:
                return change
            if self.lead_s is None:
                return None
            with self._lock:
                ahead = self._play_end - time.perf_counter()
            if ahead <= self.lead_s:
                return None
            self._wake.wait(min(0.05, ahead - self.lead_s))
            self._wake.clear()
        return None

    def _feed(self) -> None:
        try:
            stream: Stream | None = self.stream
            while stream is not None and not self._stopped.is_set():
                stream = self._consume(stream)
        except Exception as error:  # shown in the panel and the result, not lost in a thread
            self.result.error = f"{type(error).__name__}: {error}"
            with self._player_lock:
                if self._owns_player():
                    self.player.message = f"Error: {self.result.error}"
        finally:
            self._finish()

    def _consume(self, stream: Stream) -> Stream | None:
        """Send ``stream``'s chunks; return the stream to continue with (None at the end)."""
        for chunk in stream:
            change = self._hold()
            if self._stopped.is_set():
                return None
            if change is not None:
                stream.cancel()
                return self._restart(change)
            self._deliver(chunk)
        return None

    def _restart(self, settings: Settings) -> Stream | None:
        """A new stream with ``settings`` on the text not yet sent (None if nothing is left)."""
        remainder = self._cleaned[self._position:]
        self._settings = settings
        if not any(ch.isalnum() for ch in remainder):
            return None
        try:
            stream = self._open(settings, remainder)
        except TextError:  # only punctuation or unspeakable symbols left
            return None
        self.result.segments.append(self._segment(settings))
        self.stream = stream  # what stop() cancels
        if self._stopped.is_set():  # stopped while the new stream was starting
            stream.cancel()
        return stream

    def _deliver(self, chunk: Chunk) -> None:
        sequence = len(self.result.chunks)
        # One numbering and one clock for the whole utterance: the chunk's index in it, and
        # ready times measured from the press of Speak rather than from its segment's start.
        chunk = dataclasses.replace(chunk, index=sequence, queued=self.requested)
        seconds = len(chunk.audio) / SAMPLE_RATE
        with self._player_lock:
            if self._owns_player() and not self._stopped.is_set():
                self.player.push(
                    chunk.audio, index=sequence, text=chunk.text, voice=chunk.voice,
                    speed=chunk.speed, ready_ms=round(chunk.ready_ms, 2),
                    audio_ms=round(chunk.audio_ms, 2),
                    synthesis_ms=round(chunk.synthesis_ms, 2),
                )
        now = time.perf_counter()
        with self._lock:
            self._durations.append(seconds)
            self._play_end = max(self._play_end, now) + seconds
        self.result.chunks.append(chunk)
        self._position = _advance(self._cleaned, self._position, chunk.text)
        if self.chart is not None:
            self.chart.add_chunk(chunk)
        for callback in list(self.on_chunk):
            callback(chunk)

    def _finish(self) -> None:
        result = self.result
        result.cancelled = self._stopped.is_set()
        result.reason = self._stop_reason if result.cancelled else ""
        first_audio = result.playback.first_audio_ms if result.chunks else None
        with self._player_lock:
            if self._owns_player():
                self.player.finish(
                    cancelled=result.cancelled, reason=result.reason,
                    first_audio_ms=None if first_audio is None or first_audio != first_audio
                    else round(first_audio, 2),
                )
        result._done.set()
        for callback in list(self.on_done):
            try:
                callback(self)
            except Exception as error:  # a display callback must not hide the result
                result.error = result.error or f"{type(error).__name__}: {error}"


def _preview(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= PREVIEW_CHARS else flat[: PREVIEW_CHARS - 1] + "…"


# The utterance playing in this kernel, from any Studio: a new one stops it (one voice at a time).
_PLAYING: weakref.ref | None = None


def _stop_playing(reason: str) -> None:
    current = _PLAYING() if _PLAYING is not None else None
    if current is not None and current.running:
        current.stop(reason)
    try:
        from .magic import current_magics

        magics = current_magics()
    except Exception:
        magics = None
    if magics is not None:
        magics.stop(reason)


# -------------------------------------------------------------------------------------------
# the panel


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
        blends = list(blends)
        custom = ""
        if isinstance(voice, Voice) and len(voice.parts) > 1 and voice not in blends:
            blends.insert(0, voice)
        if isinstance(voice, Voice) and len(voice.parts) == 1:
            voice = voice.parts[0][0]
        if isinstance(voice, str) and voice not in self._stock:
            custom, voice = voice, "af_heart"  # a blend string or an unknown name: the spec box
        options = voice_options(names, blends)
        second = [("(none)", NO_VOICE)] + [o for o in options if isinstance(o[1], str)]

        wide = widgets.Layout(width="auto", flex="1 1 auto")
        self.text = widgets.Textarea(value=text, placeholder="Text to speak",
                                     layout=widgets.Layout(width="100%", height="5em"))
        self.voice = widgets.Dropdown(options=options, value=voice, description="Voice",
                                      layout=wide)
        self.voice2 = widgets.Dropdown(options=second, value=voice2 or NO_VOICE,
                                       description="Blend with", layout=wide)
        self.blend = widgets.FloatSlider(
            value=blend, min=0.0, max=1.0, step=0.05, description="Weight 2",
            readout_format=".0%", disabled=not voice2,
            tooltip="share of the second voice in the blend",
        )
        self.custom = widgets.Text(
            value=custom, description="or a spec", continuous_update=False,  # on Enter/blur
            placeholder="e.g. af_heart:0.7,bf_emma:0.3 (overrides the pickers)",
            layout=widgets.Layout(width="100%"),
        )
        self.speed = widgets.FloatSlider(value=speed, min=MIN_SPEED, max=MAX_SPEED, step=0.05,
                                         description="Speed", readout_format=".2f")
        problems: list[str] = []
        available, missing = provider_choices()
        self.provider = widgets.Dropdown(
            options=available, description="Provider",
            value=_pick("provider", provider, available, missing, "cpu", problems))
        precisions, missing_precisions, notes = precision_choices()
        self.precision = widgets.Dropdown(
            options=precisions, description="Precision",
            value=_pick("precision", precision, precisions, missing_precisions, "int8",
                        problems))
        self.notes = widgets.HTML(availability_note(missing, missing_precisions, notes))
        self.speak_button = widgets.Button(description="Speak", button_style="success",
                                           icon="play", tooltip="speak the text")
        self.stop_button = widgets.Button(description="Stop", button_style="danger",
                                          icon="stop", tooltip="stop speaking", disabled=True)
        self.status = widgets.HTML("")
        self.message = widgets.HTML("")
        for control, name in ((self.text, "kl-studio-text"), (self.voice, "kl-studio-voice"),
                              (self.voice2, "kl-studio-voice2"), (self.blend, "kl-studio-blend"),
                              (self.custom, "kl-studio-spec"), (self.speed, "kl-studio-speed"),
                              (self.provider, "kl-studio-provider"),
                              (self.precision, "kl-studio-precision"),
                              (self.speak_button, "kl-studio-speak"),
                              (self.stop_button, "kl-studio-stop"),
                              (self.status, "kl-studio-status"),
                              (self.message, "kl-studio-message")):
            control.add_class(name)
        try:
            self.player: Player | None = Player()
        except FrontendMissing as error:  # the panel still works; results hold the audio
            self.player = None
            self._show_error(str(error))
        self.chart = LatencyChart(height=360) if chart else None

        self.speak_button.on_click(lambda _button: self.speak())
        self.stop_button.on_click(lambda _button: self.stop("Stop pressed"))
        for control in (self.voice, self.voice2, self.blend, self.custom, self.speed):
            control.observe(self._on_voice_or_speed, names="value")
        self.voice2.observe(self._on_second_voice, names="value")

        rows = [
            self.text,
            widgets.HBox([self.voice, self.voice2]),
            widgets.HBox([self.blend, self.speed]),
            self.custom,
            widgets.HBox([self.provider, self.precision]),
            self.notes,
            widgets.HBox([self.speak_button, self.stop_button, self.status]),
            self.message,
        ]
        if self.player is not None:
            rows.append(self.player)
        if self.chart is not None:
            rows.append(self.chart.figure)
        super().__init__(rows)
        self.add_class("kokoro-studio")
        if custom:
            try:
                self.selected_voice()
            except VoiceError as error:
                problems.append(_explain(error))
        if problems:
            self._show_error("; ".join(problems))
        if synth is None and warm_up:
            # Load and warm the model now, off the main thread, so the first Speak is quick.
            self._warming: threading.Thread | None = threading.Thread(
                target=self._warm, name="kokoro-lab-studio-warm-up", daemon=True)
            self._warming.start()
        else:
            self._warming = None

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
        global _PLAYING
        requested = time.perf_counter()
        self._show_error("")
        try:
            settings = self.selected_settings()
            _stop_playing("stopped by a newer utterance")
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
        _PLAYING = weakref.ref(utterance)
        self.stop_button.disabled = False
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
        self.stop_button.disabled = True
        result = utterance.result
        if result.error:
            self._show_error(f"synthesis failed: {result.error}")
        playback = result.playback if result.chunks else None
        first = playback.first_audio_ms if playback else float("nan")
        segments = len(result.segments)
        self._set_status(utterance, (
            f"{result.state}{' (' + result.reason + ')' if result.reason else ''}: "
            f"{len(result.chunks)} chunks, {result.duration_s:.2f} s audio, "
            f"first audio {first:.0f} ms"
            + (f", {segments} segments" if segments > 1 else "")))

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


# -------------------------------------------------------------------------------------------
# %speak_studio


@magics_class
class StudioMagics(Magics, Configurable):
    """``%speak_studio``: open a :class:`Studio` panel (``%config StudioMagics.lead_s = 2``)."""

    voice = Unicode("af_heart", help="Voice the panel starts with (a name or a blend spec).").tag(
        config=True)
    speed = Float(1.0, help="Speed the panel starts with, 0.5 to 2.0.").tag(config=True)
    lead_s = Float(LEAD_S, help="Seconds of audio sent ahead of playback; voice and speed "
                                "changes apply after what is already sent.").tag(config=True)

    def __init__(self, shell=None, **kwargs) -> None:
        super().__init__(shell=shell, **kwargs)
        self.studios: list[weakref.ref] = []

    @no_var_expand
    @magic_arguments()
    @argument("-v", "--voice", help="starting voice: a name or 'af_heart:0.7,bf_emma:0.3'")
    @argument("-s", "--speed", type=float, help="starting speed 0.5–2.0")
    @argument("-p", "--provider", help="starting provider (one this machine can run)")
    @argument("--precision", help="starting precision: int8, fp32 or fp16")
    @argument("-o", "--output", metavar="NAME", help="store the Studio in variable NAME")
    @argument("text", nargs="*", help="starting text")
    @line_magic
    def speak_studio(self, line: str) -> None:
        """Open the voice studio: text, voice and blend, speed, provider and precision pickers,
        Speak/Stop, the streaming player and the live latency chart.

        Example::

            %speak_studio -v bf_emma -s 1.1 -o studio Good morning.
        """
        args = parse_argstring(self.speak_studio, line)
        if args.output is not None and not args.output.isidentifier():
            raise UsageError(f"%speak_studio -o: {args.output!r} is not a valid variable name")
        speed = self.speed if args.speed is None else args.speed
        try:
            check_speed(speed)
            studio = Studio(" ".join(args.text) or DEFAULT_TEXT, voice=args.voice or self.voice,
                            speed=speed, provider=args.provider, precision=args.precision,
                            synth=self._synth(), lead_s=self.lead_s)
        except (ValueError, assets.AssetError, FileNotFoundError) as error:
            raise UsageError(f"%speak_studio: {error}") from None
        if args.output:
            self.shell.user_ns[args.output] = studio
        self.studios = [ref for ref in self.studios if ref() is not None]
        self.studios.append(weakref.ref(studio))
        display(studio)

    def _synth(self) -> Synthesizer | None:
        from .magic import current_magics

        magics = current_magics(self.shell)
        return magics.synth if magics is not None else None

    def close(self) -> None:
        """Stop every Studio this extension opened (``%unload_ext``)."""
        for ref in self.studios:
            studio = ref()
            if studio is not None:
                studio.stop("extension unloaded")
                if studio.utterance is not None:
                    studio.utterance.wait(60)
        self.studios = []
