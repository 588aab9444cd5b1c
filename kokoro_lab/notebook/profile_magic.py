"""``%speak_profile``: the provider × precision matrix from one notebook line, figures inline.

``%speak_profile -r 3 The quick brown fox.`` (or ``%%speak_profile`` with the text as the
cell body) runs :func:`kokoro_lab.profiling.profile` and shows the summary table and the plotly
figures under the cell. The :class:`~kokoro_lab.profiling.ProfileReport` is not returned (the
table would show twice) but kept as ``_speak_profile`` in the user namespace. Defaults are
traits: ``%config ProfileMagics.repeats = 5``.
The line is expanded like any IPython line (``-P {",".join(precisions)}`` works); the body of
``%%speak_profile`` is taken as written. Bad options are a ``UsageError`` naming the problem,
never a traceback.
"""

from __future__ import annotations

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from IPython.display import Markdown, display
from traitlets import Bool, Int, List, Unicode
from traitlets.config import Configurable

from ..engine.sessions import ProviderUnavailable, release_session_memory
from .kernel import current_magics

DEFAULT_TEXT = "The quick brown fox jumps over the lazy dog."


def _names(value: str | None) -> list[str] | None:
    if value is None:
        return None
    names = [v.strip() for v in value.split(",") if v.strip()]
    if not names:
        raise UsageError(f"expected a comma-separated list, got {value!r}")
    return names


@magics_class
class ProfileMagics(Magics, Configurable):
    """Profile providers × precisions side by side (``%speak_profile``)."""

    repeats = Int(3, help="Measured runs per cell (after one warm-up run).").tag(config=True)
    providers = List(Unicode(), default_value=[],
                     help="Providers to profile; empty: those available plus cuda and tensorrt "
                          "(shown as absent with the reason).").tag(config=True)
    precisions = List(Unicode(), default_value=["int8", "fp32", "fp16"],
                      help="Precisions to profile.").tag(config=True)
    voice = Unicode("af_heart", help="Voice for the profiled text.").tag(config=True)
    log = Bool(True, help="Record each profile in the run log.").tag(config=True)
    show_figures = Bool(True, help="Display the plotly figures under the cell.").tag(config=True)
    progress = Bool(True, help="Show a progress bar while the matrix runs.").tag(config=True)

    last_report = None

    @magic_arguments()
    @argument("-p", "--providers", default=None, help="comma-separated, e.g. cpu,cuda")
    @argument("-P", "--precisions", default=None, help="comma-separated, e.g. int8,fp32")
    @argument("-r", "--repeats", type=int, default=None, help="measured runs per cell")
    @argument("--voice", default=None)
    @argument("--quality", action="store_true",
              help="judge each cell by ear (slow): ASR word error rate, PESQ-WB against "
                   "the whole text rendered by kokoro-onnx on fp32, DNSMOS")
    @argument("--audit", action="store_true",
              help="also show node placement for each cell that ran")
    @argument("--ops", action="store_true",
              help="instead of the matrix: the first chunk's time stage by stage and op by "
                   "op (ONNX Runtime's profiler) for each precision x provider asked for")
    @argument("--no-log", action="store_true", help="keep this run out of the run log")
    @argument("--no-figures", action="store_true", help="only the table")
    @argument("--html", default=None, help="also write the figures to this HTML file")
    @argument("text", nargs="*", help="text to profile (or the cell body)")
    @line_cell_magic
    def speak_profile(self, line: str = "", cell: str | None = None):
        """Run the provider × precision matrix on a text and show the figures inline."""
        from ..profiling import audit, profile, profile_ops

        try:
            args = parse_argstring(self.speak_profile, line)
        except SystemExit as error:  # argparse exits on bad options
            raise UsageError(f"bad %speak_profile options: {line!r}") from error
        text = (cell if cell is not None and cell.strip() else " ".join(args.text)).strip()
        text = text or DEFAULT_TEXT
        repeats = args.repeats if args.repeats is not None else self.repeats
        if repeats < 1:
            raise UsageError(f"--repeats must be at least 1, got {repeats}")
        if args.ops:
            self._show_ops(text, args, repeats, profile_ops)
            return
        try:
            report = profile(
                text, providers=_names(args.providers) or (self.providers or None),
                precisions=_names(args.precisions) or list(self.precisions), repeats=repeats,
                voice=args.voice or self.voice, progress=self.progress,
                log=self.log and not args.no_log, quality=args.quality)
        except (ValueError, ProviderUnavailable) as error:
            raise UsageError(str(error)) from None
        display(Markdown(report.markdown()))
        if report.batch:
            display(Markdown(f"*logged as batch `{report.batch}`; list with "
                             "`kokoro_lab.profiling.runs()`*"))
        if self.show_figures and not args.no_figures and report.cells:
            for figure in report.figures().values():
                display(figure)
        if args.audit:
            for cell_ in report.cells:
                display(Markdown(audit(cell_.precision, cell_.provider, warn=False).markdown()))
        if args.html:
            report.write_html(args.html)
        self.last_report = report
        if self.shell is not None:
            self.shell.user_ns["_speak_profile"] = report
        _give_memory_back(self.shell)


    def _show_ops(self, text: str, args, repeats: int, profile_ops) -> None:
        """``--ops``: one :class:`~kokoro_lab.profiling.OpsProfile` per provider x precision,
        its figure and table inline; the last is kept as ``_speak_profile``."""
        providers = _names(args.providers) or list(self.providers) or ["cpu"]
        precisions = _names(args.precisions) or ["int8"]
        report = None
        for provider in providers:
            for precision in precisions:
                try:
                    report = profile_ops(text, args.voice or self.voice, precision=precision,
                                         provider=provider, repeats=repeats)
                except (ValueError, ProviderUnavailable) as error:
                    raise UsageError(f"%speak_profile --ops: {error}") from None
                if self.show_figures and not args.no_figures:
                    display(report.figure())
                display(Markdown(report.markdown()))
        self.last_report = report
        if self.shell is not None:
            self.shell.user_ns["_speak_profile"] = report
        _give_memory_back(self.shell)


def _give_memory_back(shell) -> None:
    """Settle the kernel's own sessions, then collect and trim, once the figures are out.

    The profile gave its own sessions and judges back when it ended, but the sessions it
    shared with ``%%speak`` keep grown arenas, and building and publishing its tables and
    figures frees more after that; the C allocator would keep both until the next ``%%speak``.
    """
    speaking = current_magics(shell) if shell is not None else None
    if speaking is not None:
        speaking.settle()
    release_session_memory()


def load_ipython_extension(ipython) -> None:
    """``%load_ext kokoro_lab.notebook.profile_magic``: only ``%speak_profile``."""
    ipython.register_magics(ProfileMagics(shell=ipython))


__all__ = ["ProfileMagics", "load_ipython_extension"]
