"""Where a benchmark's figures go: ``<stem>.json`` (the data) and ``<stem>.md`` (the table the
docs include) in its results folder, the table also printed."""

from __future__ import annotations

import json
from pathlib import Path


def write_results(folder: Path, stem: str, report: dict, markdown: str) -> None:
    """Write ``report`` and its ``markdown`` to ``folder`` and print the markdown. Numpy
    scalars in ``report`` are written as floats."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stem}.json").write_text(json.dumps(report, indent=1, default=float) + "\n")
    (folder / f"{stem}.md").write_text(markdown)
    print(markdown)


__all__ = ["write_results"]
