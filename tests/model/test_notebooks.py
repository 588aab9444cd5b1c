"""The notebooks in notebooks/ without a player run top to bottom, headless, in a fresh kernel
(nbclient); those with players are run the way a user runs them, Run All in JupyterLab in
Chromium, by ``tests/ui/test_notebooks_browser.py`` (which covers what a headless run would).

Nothing is faked: the notebooks use the real model. A notebook passes when every code cell
executes without an error; the notebooks' own cells check what they show (a cell that fails
to produce what it needs raises).
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))
# Run All in the browser (tests/ui/test_notebooks_browser.py) runs these, players and all.
IN_THE_BROWSER = {"quickstart.ipynb", "read_aloud.ipynb", "voices.ipynb"}
HEADLESS = [p for p in NOTEBOOKS if p.name not in IN_THE_BROWSER]
CELL_TIMEOUT_S = 900


def test_every_notebook_is_run_by_one_tier():
    from tests.ui.test_notebooks_browser import NOTEBOOKS as BROWSER

    assert set(BROWSER) == IN_THE_BROWSER
    assert {p.name for p in NOTEBOOKS} == IN_THE_BROWSER | {p.name for p in HEADLESS}


@pytest.mark.parametrize("path", HEADLESS, ids=[p.name for p in HEADLESS])
def test_notebook_executes_headless(path: Path):
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert code, f"{path.name} has no code cells"
    assert all(c.execution_count for c in code), "some cells did not run"
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors, errors


def test_notebooks_are_committed_without_outputs():
    """Outputs hold audio and widget state; the notebooks are stored clean."""
    for path in NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        dirty = [i for i, c in enumerate(notebook.cells)
                 if c.cell_type == "code" and (c.outputs or c.execution_count)]
        assert not dirty, f"{path.name}: cells {dirty} have outputs; clear them before committing"
