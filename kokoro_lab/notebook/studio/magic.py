"""``%speak_studio``: open a :class:`~kokoro_lab.notebook.studio.Studio` from one line."""

from __future__ import annotations

import contextlib
import weakref

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from IPython.display import display
from traitlets import Float, Unicode
from traitlets.config import Configurable

from ...engine import Synthesizer, assets, check_speed
from ..kernel import current_magics
from .panel import DEFAULT_TEXT, Studio
from .utterance import LEAD_S


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
        magics = current_magics(self.shell)
        return magics.synth if magics is not None else None

    def close(self) -> None:
        """Stop every Studio this extension opened (``%unload_ext``)."""
        for ref in self.studios:
            studio = ref()
            if studio is not None:
                studio.stop("extension unloaded")
                if studio.utterance is not None:
                    with contextlib.suppress(TimeoutError):
                        studio.utterance.wait(60)
        self.studios = []
