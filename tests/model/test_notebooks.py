"""Every notebook in notebooks/ runs top to bottom, headless, in a fresh kernel (nbclient).

Nothing is faked: the notebooks use the real model, so they are marked ``model``. A notebook
passes when every code cell executes without an error; the notebooks' own cells check what
they show (a cell that fails to produce what it needs raises).
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))
CELL_TIMEOUT_S = 900


@pytest.mark.model
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
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
