"""``%load_ext kokoro_lab``: the ``%%speak`` / ``%speak`` magics and their kernel-wide state.

The rules this module implements:

* One warm :class:`~kokoro_lab.Synthesizer` per kernel, created in the background when the
  extension loads and reused by every ``%%speak`` (``%unload_ext kokoro_lab`` stops what is
  playing and frees the ONNX Runtime sessions).
* One utterance at a time: a new ``%%speak`` stops the one still playing.
* The cell returns at once (synthesis runs on a worker thread) unless ``--wait`` is given.
* Stopping: the player's Stop button, the next ``%%speak``, or a kernel interrupt. An interrupt
  during a ``--wait`` cell raises ``KeyboardInterrupt`` in it; an interrupt while the kernel is
  idle (the usual case, since the cell has returned) reaches a SIGINT handler this module
  installs in ipykernel's idle slot (ipykernel ignores SIGINT between cells otherwise).
* Bad input is a ``UsageError`` with a specific message, never a traceback.
"""

from __future__ import annotations

import contextlib
import importlib
import re
import signal
import sys
import threading
import time

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from IPython.display import display
from ipywidgets import VBox
from traitlets import Bool, Float, Int, Unicode
from traitlets.config import Configurable

from ..engine.assets import AssetError
from ..engine.chunking import TextError
from ..engine.sessions import SESSIONS, ProviderUnavailable
from ..engine.synthesizer import Synthesizer
from ..engine.voices import VoiceError
from .chart import LatencyChart
from .player import FrontendMissing, Player
from .speech import Speech

# Magics written in sibling modules, registered when those modules exist.
OPTIONAL_MAGICS = (
    ("kokoro_lab.notebook.profile_magic", "ProfileMagics"),
    ("kokoro_lab.notebook.studio", "StudioMagics"),
)
PREVIEW_CHARS = 60
CHART_DEFER_S = 3.0  # the chart waits at most this long for the first chunk to be sent

_FIELD = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")


def interpolate(text: str, namespace: dict) -> tuple[str, list[str]]:
    """Fill ``{name}`` (and ``{name.attr}``, ``{name[0]}``, ``{name:.2f}``) from ``namespace``.

    Fields that cannot be filled are left exactly as written and returned as the second value,
    so a stray brace in prose never breaks a cell. ``{{`` and ``}}`` give literal braces.
    """
    missing: list[str] = []

    def fill(match: re.Match) -> str:
        token = match.group(0)
        if token in ("{{", "}}"):
            return token[0]
        try:
            return token.format_map(namespace)
        except (KeyError, AttributeError, IndexError, ValueError, TypeError):
            missing.append(match.group(1))
            return token

    return _FIELD.sub(fill, text), missing


def _warm_plotly() -> None:
    """Import plotly and build its subplot machinery once, so the first chart is quick."""
    from plotly.subplots import make_subplots

    make_subplots(rows=2, cols=1).add_bar(x=[0], y=[0], row=1, col=1)


def _preview(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= PREVIEW_CHARS else flat[: PREVIEW_CHARS - 1] + "…"


@magics_class
class SpeakMagics(Magics, Configurable):
    """Speak text with Kokoro-82M as a live stream (``%%speak`` / ``%speak``).

    Defaults come from these traits: ``%config SpeakMagics.voice = "bf_emma"``.
    """

    voice = Unicode(
        "af_heart",
        help="Default voice: a name such as 'af_heart' or a blend 'af_heart:0.7,bf_emma:0.3'.",
    ).tag(config=True)
    speed = Float(1.0, help="Default speaking speed, 0.5 to 2.0.").tag(config=True)
    provider = Unicode(
        "cpu", help="ONNX Runtime execution provider: cpu, cuda, tensorrt, coreml, …"
    ).tag(config=True)
    precision = Unicode("int8", help="Model precision: int8, fp32 or fp16.").tag(config=True)
    lang = Unicode(
        "", help="Phonemizer language such as 'en-us'; empty means the voice's own language."
    ).tag(config=True)
    play = Bool(True, help="Show the streaming player (False is like --no-play).").tag(
        config=True)
    plot = Bool(True, help="Show the live latency chart (False is like --no-plot).").tag(
        config=True)
    wait = Bool(False, help="Block each cell until synthesis ends (like --wait).").tag(
        config=True)
    threads = Int(0, help="ONNX Runtime intra-op threads; 0 uses every core.").tag(config=True)
    warm_on_load = Bool(
        True, help="Load and warm the model in the background as soon as the extension loads."
    ).tag(config=True)

    def __init__(self, shell=None, **kwargs) -> None:
        super().__init__(shell=shell, **kwargs)
        self._synth: Synthesizer | None = None
        self._synth_lock = threading.Lock()
        self._warming: threading.Thread | None = None
        self.current: Speech | None = None
        self._sigint_installed = False
        self._saved_idle_handler = None

    # -- the kernel's synthesizer -----------------------------------------------------------

    def warm(self) -> None:
        """Create the synthesizer on a background thread (the first ``%%speak`` waits for it)."""
        if self._synth is None and self._warming is None:
            self._warming = threading.Thread(target=self._create_quietly,
                                             name="kokoro-lab-warm-up", daemon=True)
            self._warming.start()

    def _create_quietly(self) -> None:
        # A failure here is not lost: the first %%speak creates it again and reports the error.
        with contextlib.suppress(Exception):
            self._create()
        with contextlib.suppress(Exception):
            _warm_plotly()

    def _create(self) -> Synthesizer:
        with self._synth_lock:
            if self._synth is None:
                self._synth = Synthesizer(precision=self.precision, provider=self.provider,
                                          threads=self.threads or None)
            return self._synth

    @property
    def synth(self) -> Synthesizer:
        """The kernel's warm synthesizer (created on first use)."""
        if self._warming is not None:
            self._warming.join()
            self._warming = None
        if self._synth is None:
            try:
                self._create()
            except ProviderUnavailable:
                # The configured provider cannot run here; keep a CPU engine so the error
                # is reported per call (by stream()) and other settings still work.
                self._synth = Synthesizer(precision=self.precision, provider="cpu",
                                          threads=self.threads or None)
        return self._synth

    # -- the magic --------------------------------------------------------------------------

    @no_var_expand
    @magic_arguments()
    @argument("-v", "--voice", help="voice name or blend, e.g. af_heart or "
              "'af_heart:0.7,bf_emma:0.3' (default: SpeakMagics.voice)")
    @argument("-s", "--speed", type=float, help="speaking speed 0.5–2.0 (default 1.0)")
    @argument("-p", "--provider", help="execution provider: cpu, cuda, … (default cpu)")
    @argument("--precision", help="model precision: int8, fp32, fp16 (default int8)")
    @argument("-l", "--lang", help="phonemizer language, e.g. en-us (default: the voice's)")
    @argument("-o", "--output", metavar="NAME",
              help="store the result (audio, per-chunk metrics) in variable NAME")
    @argument("--wait", action="store_true",
              help="block until synthesis ends (headless runs; Ctrl-C/interrupt stops it)")
    @argument("--no-play", action="store_true", help="no audio player")
    @argument("--no-plot", action="store_true", help="no live latency chart")
    @argument("--raw", action="store_true",
              help="speak the text as written: no {name} interpolation")
    @argument("text", nargs="*", help="(line magic only) the text to speak")
    @line_cell_magic
    def speak(self, line: str, cell: str | None = None) -> None:
        """Speak text with Kokoro-82M, streaming audio to the browser while it is synthesized.

        ``%%speak [options]`` speaks the cell body; ``%speak [options] text`` speaks the rest of
        the line. ``{name}`` in the text is filled from the notebook's variables (unknown names
        are left as written; ``--raw`` turns this off). The cell returns at once; a gapless
        player and a live latency chart show the stream. A new ``%%speak`` stops the previous
        one; so do the player's Stop button and a kernel interrupt.

        Examples::

            %%speak -v bf_emma -s 1.1 -o res
            Good morning, {name}. Here is the weather.

            %speak --wait --no-play Hello there.
        """
        requested = time.perf_counter()
        args = parse_argstring(self.speak, line)
        kind = "%%speak" if cell is not None else "%speak"
        if cell is not None:
            if args.text:
                raise UsageError(
                    f"%%speak takes its text from the cell body, but the first line also has "
                    f"{' '.join(args.text)!r}; options must start with '-' (see %%speak?)"
                )
            text = cell
        else:
            text = " ".join(args.text)
        if not text.strip():
            raise UsageError(
                "%%speak: the cell is empty; write the text to speak below %%speak"
                if cell is not None else
                "%speak: nothing to speak; usage: %speak [options] text (see %speak?)"
            )
        if args.output is not None and not args.output.isidentifier():
            raise UsageError(f"{kind} -o: {args.output!r} is not a valid variable name")
        if not args.raw:
            text, missing = interpolate(text, self.shell.user_ns if self.shell else {})
            if missing:
                names = ", ".join("{" + m + "}" for m in dict.fromkeys(missing))
                print(f"{kind}: {names} not defined; spoken as written "
                      "(define it, or use --raw to turn interpolation off)", file=sys.stderr)
        self.say(
            text, voice=args.voice, speed=args.speed, provider=args.provider,
            precision=args.precision, lang=args.lang, output=args.output,
            wait=args.wait or self.wait, play=self.play and not args.no_play,
            plot=self.plot and not args.no_plot, requested=requested, kind=kind,
        )

    def say(self, text: str, *, voice: str | None = None, speed: float | None = None,
            provider: str | None = None, precision: str | None = None, lang: str | None = None,
            output: str | None = None, wait: bool = False, play: bool = True, plot: bool = True,
            requested: float | None = None, kind: str = "%%speak") -> Speech:
        """What ``%%speak`` does after parsing: start (and show) one utterance.

        Returns the :class:`Speech`; its ``.result`` is what ``-o`` stores.
        """
        requested = time.perf_counter() if requested is None else requested
        previous = self.current
        if previous is not None and previous.running:
            previous.stop(f"stopped by a newer {kind}")
            print(f"{kind}: stopped the previous utterance "
                  f"({len(previous.result.chunks)} chunks in)", file=sys.stderr)
        self.current = None
        try:
            synth = self.synth
        except AssetError as e:
            raise UsageError(f"{kind}: the model could not be loaded: {e}") from None
        try:
            stream = synth.stream(
                text, voice=voice or self.voice, speed=self.speed if speed is None else speed,
                lang=lang or self.lang or None, precision=precision or self.precision,
                provider=provider or self.provider,
            )
        except (TextError, VoiceError, ProviderUnavailable, ValueError, FileNotFoundError) as e:
            raise UsageError(f"{kind}: {e}") from None
        try:
            player = Player() if play else None
        except FrontendMissing as e:
            stream.cancel()
            raise UsageError(f"{kind}: {e}") from None
        speech = Speech(stream, player=player, requested=requested, label=_preview(text))
        self.current = speech
        self._install_interrupt_handler()
        speech.start()
        if output:
            self.shell.user_ns[output] = speech.result
        if player is not None:
            display(player)
        if plot:
            if player is None:
                chart = LatencyChart()
                speech.attach_chart(chart)
                display(chart.figure)
            else:
                display(_deferred_chart(speech, player))
        if wait:
            try:
                result = speech.wait()
            except KeyboardInterrupt:
                print(f"{kind}: interrupted; stopped after {len(speech.result.chunks)} chunks",
                      file=sys.stderr)
                raise
            if result.error:
                print(f"{kind}: synthesis failed: {result.error}", file=sys.stderr)
        return speech

    # -- interrupts and unloading -----------------------------------------------------------

    def stop(self, reason: str = "stopped") -> None:
        """Stop the utterance that is playing, if any."""
        if self.current is not None and self.current.running:
            self.current.stop(reason)

    def _on_idle_sigint(self, signum, frame) -> None:
        # A signal handler runs on the main thread between bytecodes, possibly while the main
        # thread holds the player's lock (handling a browser message); stopping on another
        # thread cannot deadlock with it.
        speech = self.current
        if speech is not None and speech.running:
            threading.Thread(target=speech.stop, args=("kernel interrupted",),
                             name="kokoro-lab-interrupt", daemon=True).start()

    def _install_interrupt_handler(self) -> None:
        """Make a kernel interrupt while idle stop the speech (ipykernel ignores it otherwise).

        ipykernel sets SIGINT to SIG_IGN between cells and restores ``saved_sigint_handler``
        after each request; replacing that attribute makes our handler the idle one.
        """
        kernel = getattr(self.shell, "kernel", None)
        if self._sigint_installed or kernel is None or not hasattr(kernel, "saved_sigint_handler"):
            return
        if threading.current_thread() is not threading.main_thread():
            return
        self._saved_idle_handler = kernel.saved_sigint_handler
        kernel.saved_sigint_handler = self._on_idle_sigint
        self._sigint_installed = True

    def _remove_interrupt_handler(self) -> None:
        kernel = getattr(self.shell, "kernel", None)
        if self._sigint_installed and kernel is not None:
            if kernel.saved_sigint_handler == self._on_idle_sigint:
                kernel.saved_sigint_handler = self._saved_idle_handler or signal.SIG_IGN
            self._sigint_installed = False

    def close(self, timeout: float = 60.0) -> None:
        """Stop playback, end the worker threads and drop the sessions.

        Cancellation takes effect between chunks, so this waits for the chunk in progress.
        """
        speech = self.current
        if speech is not None:
            speech.stop("extension unloaded")
            speech.wait(timeout)
        self.current = None
        if self._warming is not None:
            self._warming.join(timeout)
            self._warming = None
        self._synth = None
        SESSIONS.clear()
        self._remove_interrupt_handler()


def _deferred_chart(speech: Speech, player: Player) -> VBox:
    """A placeholder that receives the latency chart once the first chunk has left the kernel.

    Building a plotly FigureWidget costs the kernel tens of milliseconds and the browser a
    multi-megabyte bundle on first use; JupyterLab handles a kernel's widget messages in order,
    so a chart created up front would sit between the player and its first chunk.
    """
    holder = VBox()

    def build() -> None:
        player.first_sent.wait(CHART_DEFER_S)
        chart = LatencyChart()
        speech.attach_chart(chart)
        holder.children = (chart.figure,)

    threading.Thread(target=build, name="kokoro-lab-chart", daemon=True).start()
    return holder


_LOADED: dict[int, list[Magics]] = {}  # id(shell) -> the magics instances this extension made


def current_magics(shell=None) -> SpeakMagics | None:
    """The loaded :class:`SpeakMagics` (for sibling widgets that share its synthesizer)."""
    if shell is None:
        from IPython import get_ipython

        shell = get_ipython()
    for magics in _LOADED.get(id(shell), []):
        if isinstance(magics, SpeakMagics):
            return magics
    return None


def load_ipython_extension(ipython) -> None:
    """Register ``%%speak`` (and sibling modules' magics) and start warming the model."""
    if id(ipython) in _LOADED:
        return
    speak = SpeakMagics(shell=ipython)
    loaded: list[Magics] = [speak]
    ipython.register_magics(speak)
    for module_name, class_name in OPTIONAL_MAGICS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name == module_name:
                continue  # that part of the notebook layer is not installed here
            raise
        magics = getattr(module, class_name)(shell=ipython)
        ipython.register_magics(magics)
        loaded.append(magics)
    _LOADED[id(ipython)] = loaded
    if speak.warm_on_load:
        speak.warm()


def unload_ipython_extension(ipython) -> None:
    """Stop streams, free the sessions, and remove the magics."""
    loaded = _LOADED.pop(id(ipython), [])
    manager = ipython.magics_manager
    for magics in loaded:
        closer = getattr(magics, "close", None)
        if callable(closer):
            closer()
        for kind, table in magics.magics.items():
            for name in table:
                manager.magics[kind].pop(name, None)
        manager.registry.pop(type(magics).__name__, None)
        if magics in ipython.configurables:
            ipython.configurables.remove(magics)
    SESSIONS.clear()
