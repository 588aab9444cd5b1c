"""The documentation is tested like code: its examples run and the site builds strictly.

* Every ```` ```python ```` and ```` ```ipython ```` block in ``docs/*.md`` runs, in page order,
  in one IPython shell per page (so a page reads like a notebook: later blocks use earlier
  names). ``ipython`` blocks may use magics; after each one the test waits for the ``%%speak``
  it started to finish and fails if synthesis failed. Code runs in a temporary directory with a
  temporary run log, so examples that write files leave nothing behind.
* A block preceded by ``<!-- docs-test: skip REASON -->`` is skipped with that reason; one
  preceded by ``<!-- docs-test: needs PROVIDER -->`` (e.g. ``cuda``) is skipped unless this
  onnxruntime build offers that provider. Nothing else is skipped.
* ``mkdocs build --strict`` succeeds (a broken link, a missing page or a failed API reference
  fails it), and the generated pages hold what they are generated from: every option of every
  magic the extension registers, every ``kokoro-lab`` subcommand, one page per notebook.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ipython_shell

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
FENCE = re.compile(
    r"^(?P<indent>[ \t]*)```(?P<lang>[\w-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$",
    re.MULTILINE | re.DOTALL,
)
MARKER = re.compile(r"<!--\s*docs-test:\s*(?P<kind>skip|needs)\s+(?P<arg>.*?)\s*-->\s*$")
RUNNABLE = ("python", "ipython")
# Blocks that touch the model (or build graphs) are marked `model`, like the other slow tests.
USES_MODEL = re.compile(r"Synthesizer|%%?speak|model_path|synthesize|profile\(|load_ext")
SPEECH_TIMEOUT_S = 180


@dataclass(frozen=True)
class Block:
    page: str
    line: int
    lang: str
    code: str
    marker: tuple[str, str] | None  # ("skip", reason) or ("needs", provider)

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def blocks_of(path: Path) -> list[Block]:
    """The runnable code blocks of one page, with the marker line just above each, if any."""
    text = path.read_text(encoding="utf-8")
    found = []
    for match in FENCE.finditer(text):
        if match.group("lang") not in RUNNABLE:
            continue
        line = text.count("\n", 0, match.start()) + 1
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        marker = MARKER.search(before)
        found.append(Block(
            page=path.name, line=line, lang=match.group("lang"),
            code=textwrap.dedent(match.group("body")),
            marker=(marker.group("kind"), marker.group("arg")) if marker else None,
        ))
    return found


def all_blocks() -> list[Block]:
    return [block for page in sorted(DOCS.glob("*.md")) for block in blocks_of(page)]


def _params():
    return [
        pytest.param(block, id=block.id,
                     marks=[pytest.mark.model] if USES_MODEL.search(block.code) else [])
        for block in all_blocks()
    ]


# -- running the blocks --------------------------------------------------------------------


class PageRunner:
    """One IPython shell namespace per page, reset when the next page starts."""

    def __init__(self, shell):
        self.shell = shell
        self.page: str | None = None
        self.failed: str | None = None

    def enter(self, page: str) -> None:
        if page != self.page:
            self.shell.reset(new_session=False)
            self.page, self.failed = page, None

    def run(self, block: Block) -> None:
        from IPython.utils.capture import capture_output

        # A line ending in "?" is IPython's help syntax: it "succeeds" without running anything.
        if "run_line_magic('pinfo" in self.shell.transform_cell(block.code):
            self.failed = block.id
            pytest.fail(f"{block.id}: a line ends in '?', which IPython reads as a help "
                        f"request, so the block would not run:\n{block.code}", pytrace=False)

        with capture_output() as captured:
            result = self.shell.run_cell(block.code, store_history=False)
        if not result.success:
            self.failed = block.id
            error = result.error_in_exec or result.error_before_exec
            pytest.fail(f"{block.id} ({block.lang}) raised {type(error).__name__}: {error}\n"
                        f"--- code ---\n{block.code}--- output ---\n{captured.stdout}"
                        f"{captured.stderr}", pytrace=False)
        self._wait_for_speech(block)

    def _wait_for_speech(self, block: Block) -> None:
        """A ``%%speak`` returns at once; its synthesis must finish, and finish cleanly."""
        from kokoro_lab.notebook import current_magics

        magics = current_magics(self.shell)
        speech = magics.current if magics is not None else None
        if speech is None:
            return
        result = speech.wait(SPEECH_TIMEOUT_S)
        assert not speech.running, f"{block.id}: speech still running after {SPEECH_TIMEOUT_S} s"
        assert not result.error, f"{block.id}: synthesis failed: {result.error}"
        assert result.chunks, f"{block.id}: the utterance produced no audio"


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    shell = ipython_shell()
    workdir = tmp_path_factory.mktemp("docs-run")
    saved_cwd, saved_data = Path.cwd(), os.environ.get("KOKORO_LAB_DATA")
    os.chdir(workdir)
    os.environ["KOKORO_LAB_DATA"] = str(workdir / "data")  # profiles log here, not in $HOME
    try:
        yield PageRunner(shell)
    finally:
        if "speak" in shell.magics_manager.magics["cell"]:
            shell.run_line_magic("unload_ext", "kokoro_lab")
        shell.reset(new_session=False)
        os.chdir(saved_cwd)
        if saved_data is None:
            os.environ.pop("KOKORO_LAB_DATA", None)
        else:
            os.environ["KOKORO_LAB_DATA"] = saved_data


@pytest.mark.parametrize("block", _params())
def test_code_block_runs(block: Block, runner: PageRunner) -> None:
    runner.enter(block.page)
    if block.marker is not None:
        kind, arg = block.marker
        if kind == "skip":
            pytest.skip(f"{block.id}: {arg}")
        from kokoro_lab import available_providers

        if arg not in available_providers():
            pytest.skip(f"{block.id}: needs the {arg} provider "
                        f"(this onnxruntime offers {', '.join(available_providers())})")
    if runner.failed is not None:
        pytest.skip(f"an earlier block of {block.page} failed ({runner.failed})")
    runner.run(block)


# -- the extractor itself ------------------------------------------------------------------


def test_blocks_are_found_with_their_markers(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(textwrap.dedent("""\
        Text.

        ```python
        a = 1
        ```

        <!-- docs-test: skip needs a browser -->
        ```ipython
        %%speak
        Hi.
        ```

        1. In a list:

            <!-- docs-test: needs cuda -->
            ```python
            b = a + 1
            ```

        ```bash
        make demo
        ```
    """))
    found = blocks_of(page)
    assert [(b.lang, b.line, b.marker) for b in found] == [
        ("python", 3, None),
        ("ipython", 8, ("skip", "needs a browser")),
        ("python", 16, ("needs", "cuda")),
    ]
    assert found[2].code == "b = a + 1\n"  # dedented out of the list item


def test_every_page_with_code_has_runnable_blocks() -> None:
    """The pages that teach by example keep examples the suite runs (no silent zero)."""
    pages = {block.page for block in all_blocks()}
    for page in ("getting-started.md", "streaming.md", "precisions.md", "troubleshooting.md"):
        assert page in pages, f"docs/{page} has no python/ipython block left to test"


# -- generated reference pages -------------------------------------------------------------


def _load_generator():
    sys.path.insert(0, str(DOCS))
    try:
        import gen_magic_reference
    finally:
        sys.path.remove(str(DOCS))
    return gen_magic_reference


def test_magic_reference_lists_every_registered_magic_and_option() -> None:
    """The generator finds exactly what ``%load_ext kokoro_lab`` registers, with all options."""
    generator = _load_generator()
    reference = generator.markdown()
    shell = ipython_shell()
    loaded_before = "speak" in shell.magics_manager.magics["cell"]
    warm_setting = shell.config.SpeakMagics.get("warm_on_load")
    shell.config.SpeakMagics.warm_on_load = False  # listing the magics needs no model
    try:
        if not loaded_before:
            shell.run_line_magic("load_ext", "kokoro_lab")
        from kokoro_lab.notebook import kernel

        registered = kernel.loaded(shell)
        assert {type(m) for m in registered} == set(generator.magic_classes())
        for magics in registered:
            for kind, table in magics.magics.items():
                for name, method in table.items():  # registered instances hold bound methods
                    prefix = "%%" if kind == "cell" else "%"
                    assert f"{prefix}{name}" in reference, f"{prefix}{name} missing"
                    if isinstance(method, str):
                        method = getattr(magics, method)
                    parser = getattr(method, "parser", None)
                    for action in parser._actions if parser else []:
                        for flag in action.option_strings:
                            if flag not in ("-h", "--help"):
                                assert f"`{flag}`" in reference, f"{prefix}{name} {flag} missing"
            for trait in type(magics).class_traits(config=True):
                assert f"{type(magics).__name__}.{trait}" in reference
    finally:
        if warm_setting is None:
            shell.config.SpeakMagics.pop("warm_on_load", None)
        else:
            shell.config.SpeakMagics.warm_on_load = warm_setting
        if not loaded_before and "speak" in shell.magics_manager.magics["cell"]:
            shell.run_line_magic("unload_ext", "kokoro_lab")


# -- the site ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    try:
        import mkdocs  # noqa: F401
        import mkdocs_jupyter  # noqa: F401
        import mkdocstrings  # noqa: F401
    except ImportError as error:
        pytest.fail(f"the docs toolchain is not installed ({error.name}): "
                    "pip install -e '.[docs]'", pytrace=False)
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env=env,
    )
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stdout}\n{done.stderr}"
    return out


def _text(page: Path) -> str:
    import html

    return html.unescape(re.sub(r"<[^>]+>", "", page.read_text(encoding="utf-8")))


def test_site_builds_strict_with_generated_references(site: Path) -> None:
    magics = _text(site / "magics" / "index.html")
    for option in ("--voice", "--speed", "--provider", "--precision", "--lang", "--output",
                   "--wait", "--no-play", "--no-plot", "--raw", "SpeakMagics.voice"):
        assert option in magics, f"magics page lacks {option}"
    cli = _text(site / "cli" / "index.html")
    import argparse

    from kokoro_lab.cli import build_parser

    commands = next(a for a in build_parser()._actions
                    if isinstance(a, argparse._SubParsersAction)).choices
    for name in commands:
        assert f"kokoro-lab {name}" in cli, f"CLI page lacks kokoro-lab {name}"
    engine = _text(site / "api" / "engine" / "index.html")
    for name in ("Synthesizer", "Stream", "Chunk", "Result", "model_path", "ChunkPlanner"):
        assert name in engine, f"API reference lacks {name}"
    assert ":class:" not in engine  # Sphinx roles are shown as code, not as raw markup


def test_site_renders_every_notebook(site: Path) -> None:
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        page = site / "notebooks" / notebook.stem / "index.html"
        assert page.is_file(), f"no page for notebooks/{notebook.name}"
        assert "jp-Notebook" in page.read_text(encoding="utf-8") or "jupyter-wrapper" in \
            page.read_text(encoding="utf-8"), f"{page} is not a rendered notebook"


def test_benchmark_and_profile_results_are_embedded(site: Path) -> None:
    results = ROOT / "benchmarks" / "results"
    benchmarks = _text(site / "benchmarks" / "index.html")
    files = sorted(p for p in results.iterdir() if p.is_file() and not p.name.startswith(".")) \
        if results.is_dir() else []
    if not files:
        assert "No results in this build" in benchmarks
    for path in files:
        assert path.name in benchmarks, f"{path.name} not on the benchmarks page"
        if path.suffix in (".json", ".html"):
            assert (site / "results" / path.name).is_file(), f"{path.name} not copied"
    for path in (p for p in files if p.suffix == ".json"):
        first_value = next(iter(json.loads(path.read_text(encoding="utf-8")).values()), None)
        if isinstance(first_value, str) and not path.with_suffix(".md").exists():
            assert first_value[:40] in benchmarks, f"{path.name} figures not shown"
    precisions = _text(site / "precisions" / "index.html")
    profiles = sorted(results.glob("profile*.json")) if results.is_dir() else []
    if not profiles:
        assert "No profile in this build" in precisions
    for path in profiles:
        assert path.name in precisions
        assert (site / "results" / path.name).is_file()


def test_profile_table_is_rendered_from_the_profile_json(tmp_path: Path, monkeypatch) -> None:
    """The precisions page's table is built from ``kokoro-lab profile --json`` output: one row
    per cell, absent cells with their reason, quality columns only when measured."""
    sys.path.insert(0, str(DOCS))
    try:
        import hooks
    finally:
        sys.path.remove(str(DOCS))
    from kokoro_lab.profiling.runlog import machine_info

    report = {
        "summary": [
            {"provider": "cpu", "precision": "int8", "first_audio_ms": 1234.4, "rtf": 0.7512,
             "load_ms": 900.0, "load_rss_mb": 130.2, "wer": 0.05, "pesq_wb": 4.21,
             "pesq_wb_min": 3.9, "dnsmos_ovrl": 3.41, "dnsmos_sig": 3.62, "dnsmos_p808": 3.9},
            {"provider": "cpu", "precision": "fp16", "first_audio_ms": float("nan"),
             "rtf": 1.5, "load_ms": 2000.0, "load_rss_mb": None, "wer": 0.1},
            {"provider": "cuda", "precision": "int8", "absent": "not in this build | sorry"},
        ],
        "reference": {"label": "kokoro-onnx create on the fp32 graph", "wer": 0.0,
                      "dnsmos_ovrl": 3.45, "dnsmos_sig": 3.66, "dnsmos_p808": 4.1},
        "machine": machine_info(),
        "batch": None,
    }
    (tmp_path / "profile-test.json").write_text(json.dumps(report))
    monkeypatch.setattr(hooks, "RESULTS", tmp_path)
    table = hooks.profile_markdown()
    rows = [line for line in table.splitlines() if line.startswith("| cpu") or
            line.startswith("| cuda")]
    assert rows[0].startswith("| cpu | int8 | 1234 | 0.751 | 900 | 130 |")
    assert "4.21 (3.90)" in rows[0] and "3.41 / 3.62 / 3.90" in rows[0]
    assert rows[1].startswith("| cpu | fp16 | – | 1.500 | 2000 | – |")
    assert rows[1].endswith("– (–) | – / – / – |")  # not judged: shown as such, not as zero
    assert "kokoro-onnx create on the fp32 graph" in table  # what PESQ compared against
    assert rows[2].startswith("| cuda | int8 | absent: not in this build \\| sorry |")
    assert rows[2].count("|") - rows[2].count("\\|") == rows[0].count("|")  # same columns
    assert machine_info()["cpu"] in table


def test_execute_notebooks_rejects_unknown_names_and_skips_current_copies(tmp_path, capsys,
                                                                          monkeypatch) -> None:
    sys.path.insert(0, str(DOCS))
    try:
        import execute_notebooks
    finally:
        sys.path.remove(str(DOCS))
    with pytest.raises(SystemExit) as exit_info:
        execute_notebooks.main(["no_such_notebook"])
    assert exit_info.value.code == 2
    assert "no_such_notebook" in capsys.readouterr().err

    source = tmp_path / "notebooks" / "tiny.ipynb"
    source.parent.mkdir()
    source.write_text("{}")
    out = tmp_path / "out"
    copy = out / "tiny.ipynb"
    monkeypatch.setattr(execute_notebooks, "NOTEBOOKS", source.parent)
    monkeypatch.setattr(execute_notebooks, "OUT", out)
    out.mkdir()
    copy.write_text("{}")
    os.utime(copy, (source.stat().st_mtime + 10,) * 2)  # the copy is newer: nothing to run
    assert execute_notebooks.main([]) == 0
    assert "executed copy is current" in capsys.readouterr().out
