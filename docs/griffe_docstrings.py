"""A griffe extension: the package's reST-flavoured docstrings, read as Markdown.

The docstrings are written to read well in ``help()``: double-backtick code, ``>>>`` examples,
``Examples::`` literal blocks and Sphinx roles (``:class:`Synthesizer```). Markdown would show
the examples as nested quotes and the roles as raw text, so before rendering this rewrites:

* a run of ``>>>`` / ``...`` lines into a fenced Python block (prompts removed);
* a paragraph ending in ``::`` plus its indented block into the paragraph and a fenced block;
* ``:role:`~a.b.Name``` into ```Name``` (the ``~`` form shows the last part, as Sphinx does).

The source files are not touched; only what mkdocstrings renders changes.
"""

from __future__ import annotations

import re
import textwrap

import griffe

ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|exc|obj):`(~?)([^`]+)`")
DOCTEST = re.compile(r"^\s*(>>>|\.\.\.)( |$)")


def _role(match: re.Match) -> str:
    target = match.group(2)
    return f"`{target.rsplit('.', 1)[-1] if match.group(1) else target}`"


def to_markdown(doc: str) -> str:
    """The docstring text with doctests and literal blocks fenced and roles turned to code."""
    lines = doc.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if DOCTEST.match(line):
            block = []
            while i < len(lines) and DOCTEST.match(lines[i]):
                block.append(DOCTEST.sub("", lines[i], count=1))
                i += 1
            out += ["```python", *block, "```"]
            continue
        if line.rstrip().endswith("::") and not line.strip().startswith(".."):
            head = line.rstrip()[:-1]
            out.append(head if head.strip() else "")
            i += 1
            block = []
            while i < len(lines) and (not lines[i].strip() or lines[i].startswith((" ", "\t"))):
                block.append(lines[i])
                i += 1
            body = textwrap.dedent("\n".join(block)).strip("\n")
            if body:
                out += ["", "```text", body, "```", ""]
            continue
        out.append(line)
        i += 1
    text = "\n".join(out)
    return ROLE.sub(_role, text)


class ReSTDocstrings(griffe.Extension):
    """Rewrite every docstring as it is loaded (see the module docstring)."""

    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = to_markdown(obj.docstring.value)
