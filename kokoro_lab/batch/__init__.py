"""Batch rendering: a corpus to one audio file per utterance, locally or on a Dask cluster.

>>> from kokoro_lab.batch import render
>>> report = render("corpus.jsonl", "out/")                     # a process pool on this machine
>>> report = render("corpus.txt", "out/", client=dask_client)  # one warm engine per Dask worker

Each run writes ``out/audio/<id>.flac`` (or ``.wav`` without soundfile) and
``out/manifest.jsonl``; rerunning skips what is already done. See ``docs/batch.md``.
"""

from ._items import InputError, Item, normalize_items, read_items
from ._manifest import read_manifest
from ._render import RenderReport, render

__all__ = ["InputError", "Item", "RenderReport", "normalize_items", "read_items",
           "read_manifest", "render"]
