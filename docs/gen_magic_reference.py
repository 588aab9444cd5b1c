"""Write the magics' reference from their own ``magic_arguments`` parsers and traits.

The rule: the reference is never typed by hand. Every option listed comes from the argparse
parser IPython builds for the magic (what ``%%speak?`` prints), and every ``%config`` default
from the class's configurable traits, so the page cannot drift from the code. The magics are
those ``%load_ext kokoro_lab`` registers (``kokoro_lab.notebook.extension.MAGICS``).

``docs/hooks.py`` puts :func:`markdown` into ``docs/magics.md`` at build time; run this file to
print it: ``python docs/gen_magic_reference.py``.
"""

from __future__ import annotations

import argparse
import inspect
import os
import textwrap
from collections.abc import Iterator

from traitlets.config import Configurable


def magic_classes() -> list[type]:
    """The Magics classes ``%load_ext kokoro_lab`` registers, in registration order."""
    from kokoro_lab.notebook.extension import MAGICS

    return list(MAGICS)


def magics_of(cls: type) -> Iterator[tuple[str, list[str], object]]:
    """(magic name, kinds such as ["line", "cell"], the method) for each magic of ``cls``."""
    table: dict[str, dict[str, str]] = cls.magics  # set by @magics_class: kind -> {name: attr}
    names: dict[str, list[str]] = {}
    for kind in ("line", "cell"):
        for name in table.get(kind, {}):
            names.setdefault(name, []).append(kind)
    for name, kinds in names.items():
        attr = table[kinds[0]][name]
        yield name, kinds, getattr(cls, attr)


def _cell(text: object) -> str:
    """Text safe inside a markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def option_table(parser: argparse.ArgumentParser) -> list[str]:
    """A markdown table of the parser's options (shared with the CLI reference)."""
    rows = ["| option | value | default | what it does |", "|---|---|---|---|"]
    for action in parser._actions:  # argparse keeps no public list of its actions
        if isinstance(action, argparse._HelpAction):
            continue
        if action.option_strings:
            flags = ", ".join(f"`{flag}`" for flag in action.option_strings)
        else:
            flags = f"`{action.dest}` (positional)"
        if action.nargs == 0:
            value = "flag"
        else:
            metavar = action.metavar or action.dest.upper()
            kind = getattr(action.type, "__name__", None)
            value = f"`{metavar}`" + (f" ({kind})" if kind and kind != "str" else "")
            if action.nargs in ("*", "+"):
                value += " …"
        default = action.default
        if default in (None, False, [], argparse.SUPPRESS):
            shown = ""
        else:  # a Path default reads better as the path than as PosixPath('…')
            shown = f"`{default if isinstance(default, os.PathLike) else repr(default)}`"
        rows.append(f"| {flags} | {value} | {shown} | {_cell(action.help or '')} |")
    return rows


def _docstring(method: object) -> str:
    """The magic's own docstring as markdown: RST ``Examples::`` blocks become fenced code.

    ``magic_arguments`` replaces ``__doc__`` with the parser's help; the original docstring is
    kept as the parser's description.
    """
    parser = getattr(method, "parser", None)
    doc = inspect.cleandoc(parser.description or "") if parser else inspect.getdoc(method) or ""
    out: list[str] = []
    lines = doc.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.rstrip().endswith("::"):
            out.append(line.rstrip()[:-1])  # "Examples::" -> "Examples:"
            block: list[str] = []
            i += 1
            while i < len(lines) and (not lines[i].strip() or lines[i].startswith("    ")):
                block.append(lines[i])
                i += 1
            out += ["", "```text", textwrap.dedent("\n".join(block)).strip("\n"), "```", ""]
            continue
        out.append(line.replace("``", "`"))
        i += 1
    return "\n".join(out).strip()


def _trait_rows(cls: type) -> list[str]:
    if not issubclass(cls, Configurable):
        return []
    traits = cls.class_traits(config=True)
    rows = ["| setting | type | default | what it does |", "|---|---|---|---|"]
    for name, trait in traits.items():
        rows.append(f"| `%config {cls.__name__}.{name}` | {type(trait).__name__} | "
                    f"`{trait.default()!r}` | {_cell(trait.help)} |")
    return rows


def markdown(heading_level: int = 2) -> str:
    """The whole reference: per magic its usage, options and docstring; per class its traits."""
    h = "#" * heading_level
    parts: list[str] = []
    for cls in magic_classes():
        for name, kinds, method in magics_of(cls):
            forms = " / ".join(("%%" if kind == "cell" else "%") + name for kind in kinds)
            parts += [f"{h} `{forms}`", ""]
            parser = getattr(method, "parser", None)
            if parser is not None:
                # IPython formats usage as an RST literal block ("::"), argparse as "usage:".
                usage = parser.format_usage().strip().removeprefix("::").strip()
                usage = textwrap.dedent(usage.removeprefix("usage:").strip())
                parts += ["```text", usage, "```", ""]
            parts += [_docstring(method), ""]
            if parser is not None:
                parts += [*option_table(parser), ""]
        traits = _trait_rows(cls)
        if traits:
            parts += [f"{h}# `{cls.__name__}` settings", "",
                      f"Defaults for {cls.__name__}'s magics; an option on the magic's line wins "
                      "over the setting.", "", *traits, ""]
    return "\n".join(parts).rstrip() + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
