"""``%load_ext kokoro_lab``: the ``%%speak`` / ``%speak`` magics and their kernel-wide state.

The rules this module implements:

* One warm :class:`~kokoro_lab.Synthesizer` per kernel, created in the background when the
  extension loads and reused by every ``%%speak`` (``%unload_ext kokoro_lab`` stops what is
  still being synthesized and frees the ONNX Runtime sessions; audio already made plays out).
* **Every speaking cell is heard.** A ``%%speak`` that runs while another cell's speech is
  still playing is queued behind it (``SpeakMagics.overlap = "queue"``, the default): its
  synthesis starts when the one ahead has finished synthesizing, and the page plays it when
  the one ahead has played out. That is what "Run All" on a read-along notebook needs, and it
  is the same when cells are run one by one by hand. Running the *same* cell again replaces
  its earlier speech (the user wants the new version); ``--now`` (or ``overlap =
  "interrupt"``) stops everything playing or queued and speaks at once.
* The cell returns at once (synthesis runs on a worker thread) unless ``--wait`` is given.
  Audio reaches the page from that thread whatever the main thread does next: under Run All,
  ``--wait``, a long-running next cell, or ``.wait()`` in the same cell, it plays as soon as its
  first chunk exists.
* Stopping: the player's Stop button, ``--now``, or a kernel interrupt (which also empties the
  queue). An interrupt during a ``--wait`` cell raises ``KeyboardInterrupt`` in it; an
  interrupt while the kernel is idle (the usual case, since the cell has returned) reaches a
  SIGINT handler this module installs in ipykernel's idle slot (ipykernel ignores SIGINT
  between cells otherwise).
* Bad input is a ``UsageError`` with a specific message, never a traceback.
"""

from __future__ import annotations

import contextlib
import re
import signal
import sys
import threading
import time

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from IPython.display import display
from traitlets import Bool, Enum, Float, Int, Unicode, observe
from traitlets.config import Configurable

from ..engine import (
    ProviderUnavailable,
    Synthesizer,
    TextError,
    VoiceError,
)
from ..engine.assets import AssetError
from ..engine.cache import ChunkCache
from ..engine.metrics import plural, simulate_playback
from ..engine.sessions import SESSIONS
from .chart import LatencyChart
from .player import FrontendMissing, Player
from .result import SpeakResult
from .speech import Speech

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
    captions = Bool(
        True, help="Show the cell's text under the player with the word being heard "
                   "highlighted (False is like --no-captions).",
    ).tag(config=True)
    wait = Bool(False, help="Block each cell until synthesis ends (like --wait).").tag(
        config=True)
    overlap = Enum(
        ("queue", "interrupt"), "queue",
        help="What a %%speak does while another cell's speech is still playing: 'queue' plays "
             "it afterwards (every speaking cell is heard, as Run All needs); 'interrupt' stops "
             "what plays (like --now). Re-running the same cell always replaces its own speech.",
    ).tag(config=True)
    threads = Int(0, help="ONNX Runtime intra-op threads; 0 uses every core.").tag(config=True)
    warm_on_load = Bool(
        True, help="Load and warm the model in the background as soon as the extension loads."
    ).tag(config=True)
    cache = Bool(
        True, help="Play chunks made before (same text, voice, speed and graph) from memory, so "
                   "a cell run again is heard at once; False synthesizes every chunk.",
    ).tag(config=True)
    tuning = Enum(
        ("auto", "off"), "auto",
        help="'auto': this machine's tuning profile (kokoro-lab tune) or the built-in one; "
             "'off': the released graph with plain settings.",
    ).tag(config=True)

    def __init__(self, shell=None, **kwargs) -> None:
        super().__init__(shell=shell, **kwargs)
        self._synth: Synthesizer | None = None
        self._synth_lock = threading.Lock()
        self._warming: threading.Thread | None = None
        self.speeches: list[Speech] = []  # utterances playing or queued, oldest first
        self._order = 0
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

    def _create(self) -> Synthesizer:
        with self._synth_lock:
            if self._synth is None:
                self._synth = Synthesizer(precision=self.precision, provider=self.provider,
                                          threads=self.threads or None, tuning=self.tuning,
                                          cache=self.cache)
            return self._synth

    def settle(self) -> None:
        """One short run on the kernel's sessions, if it has made them (never loads a model).

        Another job in the kernel that ran them on its own inputs (``%speak_profile``) leaves
        their arenas grown, and only a run of the kernel's own gives that back: after a judged
        profile the kernel stayed ~210 MB above a warm one, ~90 MB once settled and trimmed.
        """
        if self._synth is not None:
            self._synth.warm_up()

    @observe("cache")
    def _cache_changed(self, change) -> None:
        if self._synth is not None:
            self._synth.cache = ChunkCache() if change["new"] else None

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
                                          threads=self.threads or None, tuning=self.tuning,
                                          cache=self.cache)
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
    @argument("--now", action="store_true",
              help="stop any speech playing or queued and speak at once (default: queue "
                   "behind it, see SpeakMagics.overlap)")
    @argument("--no-play", action="store_true", help="no audio player")
    @argument("--no-plot", action="store_true", help="no live latency chart")
    @argument("--no-captions", action="store_true",
              help="no text with the word being heard highlighted under the player")
    @argument("--raw", action="store_true",
              help="speak the text as written: no {name} interpolation")
    @argument("text", nargs="*", help="(line magic only) the text to speak")
    @line_cell_magic
    def speak(self, line: str, cell: str | None = None) -> SpeakResult | None:
        """Speak text with Kokoro-82M, streaming audio to the browser while it is synthesized.

        ``%%speak [options]`` speaks the cell body; ``%speak [options] text`` speaks the rest of
        the line. ``{name}`` in the text is filled from the notebook's variables (unknown names
        are left as written; ``--raw`` turns this off). The cell returns at once; a gapless
        player and a latency chart show the stream. While another cell's speech plays, this
        one is queued behind it (``--now`` interrupts instead); re-running a cell replaces its
        own speech. The player's Stop button and a kernel interrupt stop it.

        ``res = %speak --wait …`` returns the finished result.

        Examples::

            %%speak -v bf_emma -s 1.1 -o res
            Good morning, {name}. Here is the weather.

            res = %speak --wait --no-play Hello there.
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
        speech = self.say(
            text, milestones={"magic parsed": time.perf_counter()},
            voice=args.voice, speed=args.speed, provider=args.provider,
            precision=args.precision, lang=args.lang, output=args.output,
            wait=args.wait or self.wait, play=self.play and not args.no_play,
            plot=self.plot and not args.no_plot, requested=requested, kind=kind,
            now=args.now or self.overlap == "interrupt",
            captions=self.captions and not args.no_captions,
        )
        # `res = %speak --wait …` gets the finished result; without --wait the cell returns at
        # once and shows the player (the result is `-o NAME`'s), so nothing is echoed twice.
        return speech.result if args.wait and cell is None else None

    def say(self, text: str, *, voice: str | None = None, speed: float | None = None,
            provider: str | None = None, precision: str | None = None, lang: str | None = None,
            output: str | None = None, wait: bool = False, play: bool = True, plot: bool = True,
            requested: float | None = None, kind: str = "%%speak", now: bool = False,
            captions: bool = True, milestones: dict[str, float] | None = None) -> Speech:
        """What ``%%speak`` does after parsing: start (or queue) and show one utterance.

        Returns the :class:`Speech`; its ``.result`` is what ``-o`` stores.
        """
        requested = time.perf_counter() if requested is None else requested
        try:
            synth = self.synth  # the first %%speak of a kernel waits here for the model
        except AssetError as e:
            raise UsageError(f"{kind}: the model could not be loaded: {e}") from None
        milestones = dict(milestones or {})
        milestones["model ready"] = time.perf_counter()
        model_wait_ms = (milestones["model ready"] - requested) * 1000
        after = self._queue_ahead(now)
        try:
            request = synth.request(
                text, voice or self.voice, self.speed if speed is None else speed,
                lang or self.lang or None, precision=precision or self.precision,
                provider=provider or self.provider)
            milestones["request checked"] = time.perf_counter()
            player = Player(captions=captions) if play else None
            # Nothing ahead: start now, in the cell (so every error is reported here).
            source = request if after is not None else synth.stream(request)
            if after is None:
                milestones["synthesis started"] = time.perf_counter()
        except (TextError, VoiceError, ProviderUnavailable, ValueError, FileNotFoundError,
                FrontendMissing) as e:
            raise UsageError(f"{kind}: {e}") from None
        self._make_room(kind, now)
        self._order += 1
        speech = Speech(source, synth=synth, player=player, requested=requested,
                        after=after, order=self._order, milestones=milestones)
        speech.cell_id = _cell_id(self.shell)
        speech.model_wait_ms = model_wait_ms
        self.speeches.append(speech)
        self._install_interrupt_handler()
        speech.start()
        if output:
            self.shell.user_ns[output] = speech.result
        if player is not None:
            display(player)
        if plot:
            # Shown now (an empty Output costs nothing), drawn once audio is flowing.
            chart = LatencyChart()
            display(chart.widget)
            speech.attach_chart(chart)
        if wait:
            try:
                result = speech.wait()
            except KeyboardInterrupt:
                print(f"{kind}: interrupted; stopped after "
                      f"{plural(len(speech.result.chunks), 'chunk')}", file=sys.stderr)
                raise
            if result.error:
                print(f"{kind}: synthesis failed: {result.error}", file=sys.stderr)
        return speech

    @property
    def current(self) -> Speech | None:
        """The newest utterance still playing or queued (None when all are over)."""
        live = self._live()
        return live[-1] if live else None

    def _live(self) -> list[Speech]:
        self.speeches = [s for s in self.speeches if not _finished(s)]
        return list(self.speeches)

    def _queue_ahead(self, now: bool) -> Speech | None:
        """The utterance a new one queues behind under the overlap rule (None: start now)."""
        if now:
            return None
        cell = _cell_id(self.shell)
        live = [s for s in self._live() if not s._stopping.is_set()
                and (cell is None or getattr(s, "cell_id", None) != cell)]
        return live[-1] if live else None

    def _make_room(self, kind: str, now: bool) -> None:
        """Stop what the new utterance replaces: everything with ``--now``, else the speech
        of the same cell run earlier."""
        cell = _cell_id(self.shell)
        for speech in self._live():
            if now:
                speech.stop(f"stopped by a newer {kind} --now")
            elif cell is not None and getattr(speech, "cell_id", None) == cell:
                speech.stop(f"replaced: this cell ran again ({len(speech.result.chunks)} "
                            "chunks in)")

    # -- interrupts and unloading -----------------------------------------------------------

    def stop(self, reason: str = "stopped") -> None:
        """Stop every utterance playing or queued."""
        for speech in self._live():
            speech.stop(reason)

    def _on_idle_sigint(self, signum, frame) -> None:
        # A signal handler runs on the main thread between bytecodes, possibly while the main
        # thread holds the player's lock (handling a browser message); stopping on another
        # thread cannot deadlock with it.
        if self._live():
            threading.Thread(target=self.stop, args=("kernel interrupted",),
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

        Only speech still being made (or queued to be) is stopped. An utterance the kernel
        has finished making is all in the page already and plays out there, so the last cell
        of a Run All can be ``%unload_ext`` without cutting off the speech queued before it;
        finished players keep their audio.
        """
        for speech in self._live():
            if not speech.result.done:
                speech.stop("extension unloaded")
                with contextlib.suppress(TimeoutError):
                    speech.wait(timeout)
        self.speeches = []
        if self._warming is not None:
            self._warming.join(timeout)
            self._warming = None
        self._synth = None
        SESSIONS.clear()
        self._remove_interrupt_handler()


def _finished(speech: Speech) -> bool:
    """Over for the listener too: synthesis ended and the page has played it out (or no page
    reported within the audio's own length, e.g. a headless run)."""
    if not speech.result.done:
        return False
    if speech.result.cancelled or speech.player is None:
        return True
    heard = speech.player.heard or {}
    if heard.get("final"):
        return True
    # Without a final report (the page's reports reach a busy kernel late), assume it plays out
    # by its estimated end, with 5 s to spare.
    return time.perf_counter() > _played_out_by(speech) + 5.0


def _played_out_by(speech: Speech) -> float:
    """When a page playing ``speech`` without a hitch would have played it out (perf_counter
    seconds): each chunk from when it was made or the previous one ended, whichever is later,
    and the whole after the utterance it queued behind. Measured from the utterance's length
    alone, a slow machine's stalls (tens of seconds under load) or a long queue ahead made a
    later cell start over audio still playing instead of queuing behind it."""
    start = speech.first_ready or speech.requested
    if speech.after is not None:
        start = max(start, _played_out_by(speech.after))
    chunks = list(speech.result.chunks)
    if not chunks:
        return start
    playback = simulate_playback([max(0.0, chunk.finished - start) * 1000 for chunk in chunks],
                                 [chunk.audio for chunk in chunks])
    return start + playback.played_out_ms / 1000


def _cell_id(shell) -> str | None:
    """The id of the notebook cell being run (JupyterLab and Notebook 7 send it), or None."""
    parent = getattr(shell, "parent_header", None) or {}
    metadata = parent.get("metadata") or {}
    return metadata.get("cellId") or None
