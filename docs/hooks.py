"""MkDocs hooks: the parts of the site that come from the code and from measurements.

The rule: nothing on the site that the code or a run can produce is typed by hand.

* ``docs/magics.md`` gets the magics' reference generated from their own parsers
  (:mod:`gen_magic_reference`) where it says ``<!-- kokoro-lab: magic-reference -->``.
* ``docs/cli.md`` gets every ``kokoro-lab`` subcommand's options from the CLI's own parser
  where it says ``<!-- kokoro-lab: cli-reference -->``.
* ``docs/benchmarks.md`` gets every results file under ``benchmarks/results/`` (``*.md`` inlined,
  ``*.json`` without a ``.md`` of the same name shown folded, ``*.json`` and ``*.html`` copied
  and linked) where it says
  ``<!-- kokoro-lab: benchmark-results -->``; with no results yet it says so.
* ``docs/precisions.md`` gets a table of each ``benchmarks/results/profile*.json`` (the JSON
  ``kokoro-lab profile --json`` prints) where it says ``<!-- kokoro-lab: profile-results -->``.
* Every ``notebooks/*.ipynb`` becomes a page under "Notebooks". The executed copy in
  ``build/docs-notebooks/`` (written by ``docs/execute_notebooks.py``) is rendered when it is at
  least as new as the notebook, so the outputs shown are ones this checkout produced.
* Pages other people own (batch rendering, the streaming decoder) are linked when they exist;
  a missing one is left out of the navigation instead of failing the build.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from pathlib import Path

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files

log = logging.getLogger("mkdocs.hooks.kokoro_lab")

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
# Executed copies keep the ``notebooks/`` folder so they can be served from the same URL.
EXECUTED_ROOT = ROOT / "build" / "docs-notebooks"
EXECUTED = EXECUTED_ROOT / "notebooks"
RESULTS = ROOT / "benchmarks" / "results"
JSON_LINES = 200  # a results JSON without its own .md is shown folded, up to this many lines
OPTIONAL_PAGES = {"batch.md", "streaming-decoder.md"}
# Notebooks in reading order; others follow alphabetically.
NOTEBOOK_ORDER = ("quickstart", "voices", "read_aloud", "profiling")

MAGIC_MARKER = "<!-- kokoro-lab: magic-reference -->"
RESULTS_MARKER = "<!-- kokoro-lab: benchmark-results -->"
PROFILE_MARKER = "<!-- kokoro-lab: profile-results -->"
CLI_MARKER = "<!-- kokoro-lab: cli-reference -->"


# -- notebooks -----------------------------------------------------------------------------


def notebook_sources() -> list[Path]:
    """The notebooks to render, in reading order."""
    found = {path.stem: path for path in NOTEBOOKS.glob("*.ipynb")}
    ordered = [found.pop(name) for name in NOTEBOOK_ORDER if name in found]
    return ordered + [found[name] for name in sorted(found)]


def rendered_copy(source: Path) -> Path:
    """The executed copy when it is current, else the notebook as stored."""
    executed = EXECUTED / source.name
    if executed.is_file() and executed.stat().st_mtime >= source.stat().st_mtime:
        return executed
    log.info("notebook %s has no current executed copy; rendering it as stored "
             "(run docs/execute_notebooks.py, or `make docs`)", source.name)
    return source


def notebook_title(path: Path) -> str:
    """The notebook's first markdown heading, or its file name."""
    try:
        cells = json.loads(path.read_text(encoding="utf-8")).get("cells", [])
    except (OSError, ValueError):
        return path.stem
    for cell in cells:
        if cell.get("cell_type") != "markdown":
            continue
        for line in "".join(cell.get("source", [])).splitlines():
            if line.startswith("# "):
                return line[2:].strip()
    return path.stem.replace("_", " ").capitalize()


# -- navigation ----------------------------------------------------------------------------


def _prune(items: list, docs_dir: Path) -> list:
    """The nav without optional pages whose files do not exist (yet)."""
    kept = []
    for item in items:
        if isinstance(item, dict):
            (title, value), = item.items()
            if isinstance(value, list):
                value = _prune(value, docs_dir)
            elif isinstance(value, str) and value in OPTIONAL_PAGES \
                    and not (docs_dir / value).is_file():
                log.info("nav: %s does not exist yet; left out", value)
                continue
            kept.append({title: value})
        else:
            kept.append(item)
    return kept


def on_config(config):
    sys.path.insert(0, str(ROOT))  # kokoro_lab from this checkout, not a stale install
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # gen_magic_reference
    docs_dir = Path(config["docs_dir"])
    nav = _prune(list(config["nav"] or []), docs_dir)
    notebooks = [{notebook_title(rendered_copy(p)): f"notebooks/{p.name}"}
                 for p in notebook_sources()]
    if notebooks:
        nav.append({"Notebooks": notebooks})
    config["nav"] = nav
    return config


# -- files ---------------------------------------------------------------------------------


@event_priority(100)  # before mkdocs-jupyter, which turns .ipynb files into pages
def on_files(files: Files, config) -> Files:
    # Plain Files with a src_dir, not File.generated: mkdocs-jupyter's wrapper reads the path
    # from src_dir and would see None for a generated file.
    def add(path: str, src_dir: Path) -> None:
        files.append(File(path, str(src_dir), config["site_dir"], config["use_directory_urls"]))

    for source in notebook_sources():
        copy = rendered_copy(source)
        add(f"notebooks/{source.name}", EXECUTED_ROOT if copy.parent == EXECUTED else ROOT)
    for result in results_files():
        if result.suffix in (".json", ".html", ".png", ".svg"):
            add(f"results/{result.name}", RESULTS.parent)
    return files


# -- generated content ---------------------------------------------------------------------


def results_files() -> list[Path]:
    if not RESULTS.is_dir():
        return []
    return sorted(p for p in RESULTS.iterdir() if p.is_file() and not p.name.startswith("."))


def _demote(markdown: str, levels: int = 2) -> str:
    """Headings of an inlined results file sit under the page's own headings."""
    return re.sub(r"^(#{1,4}) ", lambda m: "#" * (len(m.group(1)) + levels) + " ", markdown,
                  flags=re.MULTILINE)


def results_markdown() -> str:
    files = results_files()
    if not files:
        return ("!!! note \"No results in this build\"\n"
                "    `benchmarks/results/` was empty when this site was built. Run the commands "
                "above, then `make docs`, and the tables appear here.\n")
    parts = []
    stems_with_markdown = {p.stem for p in files if p.suffix == ".md"}
    for path in files:
        if path.suffix == ".md":
            parts += [f"### `{path.name}`", "", _demote(path.read_text(encoding="utf-8")), ""]
        elif path.suffix == ".json" and path.stem not in stems_with_markdown:
            # No table written for it: show the raw figures, folded, rather than hide them.
            body = path.read_text(encoding="utf-8").splitlines()
            shown = body[:JSON_LINES] + (["…"] if len(body) > JSON_LINES else [])
            parts += [f'??? info "`{path.name}`"', "", "    ```json",
                      *("    " + line for line in shown), "    ```", ""]
    links = [f"- [`{p.name}`](results/{p.name})" for p in files
             if p.suffix in (".json", ".html", ".png", ".svg")]
    if links:
        parts += ["### Raw files", "", *links, ""]
    for path in files:
        if path.suffix == ".html":
            parts += [f'<iframe src="../results/{path.name}" title="{path.stem}" '
                      'style="width:100%;height:720px;border:0"></iframe>', ""]
        elif path.suffix in (".png", ".svg"):
            parts += [f"![{path.stem}](results/{path.name})", ""]
    return "\n".join(parts)


def _number(value, digits: int = 0) -> str:
    if not isinstance(value, (int, float)) or value != value:  # None or NaN
        return "–"
    return f"{value:.{digits}f}"


def _machine_line(machine: dict) -> str:
    versions = machine.get("versions") or {}
    libraries = ", ".join(f"{k} {v}" for k, v in versions.items() if k in
                          ("onnxruntime", "onnxruntime-gpu", "kokoro-onnx"))
    parts = [machine.get("cpu"), f"{machine.get('cores')} cores" if machine.get("cores") else None,
             f"{machine.get('memory_gb')} GiB" if machine.get("memory_gb") else None,
             f"GPU: {machine['gpu']}" if machine.get("gpu") else "no GPU",
             machine.get("os"), libraries or None]
    return " · ".join(str(p) for p in parts if p)


def profile_markdown() -> str:
    """Cost and quality per provider × precision, from each saved profile report."""
    from kokoro_lab.profiling.runner import quality_cells, reference_note

    reports = [p for p in results_files() if p.name.startswith("profile") and p.suffix == ".json"]
    if not reports:
        return ("!!! note \"No profile in this build\"\n"
                "    No `benchmarks/results/profile*.json` existed when this site was built. "
                "The command below writes one; `make docs` then shows it here.\n")
    parts = []
    for path in reports:
        data = json.loads(path.read_text(encoding="utf-8"))
        rows = data.get("summary", [])
        quality = any("wer" in row for row in rows)
        parts += [f"**`{path.name}`** — {_machine_line(data.get('machine', {}))}", ""]
        head = "| provider | precision | first audio ms | RTF | load ms | load MB |"
        rule = "|---|---|---:|---:|---:|---:|"
        if quality:
            head += " WER | PESQ-WB mean (min) | DNSMOS OVRL / SIG / P.808 |"
            rule += "---:|---:|---|"
        parts += [head, rule]
        for row in rows:
            if "absent" in row:
                parts.append(f"| {row['provider']} | {row['precision']} | absent: "
                             f"{_cell(row['absent'])} |" + " |" * (6 if quality else 3))
                continue
            line = (f"| {row['provider']} | {row['precision']} | "
                    f"{_number(row.get('first_audio_ms'))} | {_number(row.get('rtf'), 3)} | "
                    f"{_number(row.get('load_ms'))} | {_number(row.get('load_rss_mb'))} |")
            if quality:
                line += quality_cells(row)
            parts.append(line)
        if quality and data.get("reference"):
            parts += ["", reference_note(data["reference"])]
        parts += ["", "Medians over the measured repeats. Raw file: "
                  f"[`{path.name}`](results/{path.name}).", ""]
    return "\n".join(parts)


def _cell(text: object) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def cli_markdown() -> str:
    """Each ``kokoro-lab`` subcommand: its help line, usage and options, from the parser."""
    import argparse

    from gen_magic_reference import option_table

    from kokoro_lab.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {choice.dest: choice.help for choice in sub._choices_actions}
    parts = []
    for name, command in sub.choices.items():
        usage = command.format_usage().removeprefix("usage: ").strip()
        parts += [f"## `kokoro-lab {name}`", "", helps.get(name) or "", ""]
        if command.description and command.description != helps.get(name):
            parts += [command.description, ""]
        parts += ["```text", usage, "```", "", *option_table(command), ""]
    return "\n".join(parts)


def on_page_markdown(markdown: str, page, config, files) -> str:
    if CLI_MARKER in markdown:
        markdown = markdown.replace(CLI_MARKER, cli_markdown())
    if MAGIC_MARKER in markdown:
        from gen_magic_reference import markdown as magic_reference  # beside this file

        markdown = markdown.replace(MAGIC_MARKER, magic_reference(heading_level=2))
    if PROFILE_MARKER in markdown:
        markdown = markdown.replace(PROFILE_MARKER, profile_markdown())
    if RESULTS_MARKER in markdown:
        markdown = markdown.replace(RESULTS_MARKER, results_markdown())
    return markdown

