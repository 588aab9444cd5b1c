"""Execute the notebooks headless into ``build/docs-notebooks/`` so the site shows real outputs.

The rule: the notebooks are committed without outputs, and the site never shows outputs this
checkout did not produce. ``make docs`` runs this first; ``docs/hooks.py`` then renders each
executed copy that is at least as new as its notebook (and the stored notebook otherwise).

Each notebook runs in a fresh kernel with its own folder as the working directory, as
JupyterLab would run it, and with its widget state stored so players and charts render. A
notebook whose copy is already current is skipped unless ``--force`` is given. A cell that
raises stops that notebook and makes the exit status 1; the others still run.

    python docs/execute_notebooks.py [--force] [--timeout SECONDS] [NAME ...]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
OUT = ROOT / "build" / "docs-notebooks" / "notebooks"  # docs/hooks.py reads them from here


def is_current(source: Path, copy: Path) -> bool:
    return copy.is_file() and copy.stat().st_mtime >= source.stat().st_mtime


def execute(source: Path, target: Path, timeout: int) -> None:
    """Run ``source`` top to bottom and write it, outputs included, to ``target``."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(source, as_version=4)
    client = NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                            store_widget_state=True,
                            resources={"metadata": {"path": str(source.parent)}})
    client.execute()
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".ipynb.part")
    nbformat.write(notebook, partial)
    partial.replace(target)  # an interrupted run never leaves a half notebook to render


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="notebook names (default: all in notebooks/)")
    parser.add_argument("--force", action="store_true", help="re-run current copies too")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per cell")
    args = parser.parse_args(argv)

    sources = sorted(NOTEBOOKS.glob("*.ipynb"))
    if args.names:
        wanted = {name.removesuffix(".ipynb") for name in args.names}
        unknown = wanted - {s.stem for s in sources}
        if unknown:
            parser.error(f"no such notebook in {NOTEBOOKS}: {', '.join(sorted(unknown))}")
        sources = [s for s in sources if s.stem in wanted]
    failed = []
    for source in sources:
        target = OUT / source.name
        if not args.force and is_current(source, target):
            print(f"{source.name}: executed copy is current", flush=True)
            continue
        started = time.perf_counter()
        print(f"{source.name}: executing…", flush=True)
        try:
            execute(source, target, args.timeout)
        except Exception as error:  # report and go on: one broken notebook hides no others
            failed.append(source.name)
            print(f"{source.name}: FAILED: {type(error).__name__}: {error}", file=sys.stderr)
            continue
        print(f"{source.name}: done in {time.perf_counter() - started:.0f} s → "
              f"{target.relative_to(ROOT)}", flush=True)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
