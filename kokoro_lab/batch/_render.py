"""The driver of a render: decide what is left to do, run it somewhere, record every outcome.

The rule: the driver is the only writer of the manifest and (unless workers write to a shared
filesystem themselves) of the audio files. Every finished item is written atomically and then
appended to the manifest before the next one is handled, so stopping the driver at any moment
loses at most the items in flight, and a rerun picks up exactly where it stopped.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

from ..engine.assets import atomic_write
from . import _local, _manifest, _worker
from ._items import Item, normalize_items, read_items

Source = str | PathLike | Iterable[str | dict | Item]


@dataclass
class RenderReport:
    """What a render did: counts, throughput and where the results are."""

    out_dir: Path
    manifest: Path
    total: int = 0
    skipped: int = 0  # already done by an earlier run
    rendered: int = 0
    failed: int = 0
    audio_s: float = 0.0  # audio rendered by this run
    synthesis_s: float = 0.0  # summed worker time spent on this run's items
    wall_s: float = 0.0
    backend: str = ""
    audio_format: str = ""
    failures: list[dict[str, Any]] = field(default_factory=list)

    @property
    def items_per_s(self) -> float:
        done = self.rendered + self.failed
        return done / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def audio_s_per_s(self) -> float:
        """Throughput: seconds of audio made per second of wall time."""
        return self.audio_s / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def ok(self) -> bool:
        return self.failed == 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "out_dir": str(self.out_dir), "manifest": str(self.manifest), "total": self.total,
            "skipped": self.skipped, "rendered": self.rendered, "failed": self.failed,
            "audio_s": round(self.audio_s, 3), "synthesis_s": round(self.synthesis_s, 3),
            "wall_s": round(self.wall_s, 3), "items_per_s": round(self.items_per_s, 3),
            "audio_s_per_s": round(self.audio_s_per_s, 3), "backend": self.backend,
            "audio_format": self.audio_format,
            "failures": [{"id": f["id"], "error": f.get("error")} for f in self.failures],
        }

    def __str__(self) -> str:
        return (f"{self.rendered} rendered, {self.skipped} already done, {self.failed} failed "
                f"of {self.total} · {self.audio_s:.1f} s audio in {self.wall_s:.1f} s "
                f"({self.items_per_s:.2f} items/s, {self.audio_s_per_s:.2f} audio-s/s) · "
                f"{self.backend} → {self.manifest}")


def render(
    items: Source,
    out_dir: str | PathLike,
    *,
    voice: str = "af_heart",
    speed: float = 1.0,
    lang: str | None = None,
    client: Any = None,
    workers: int | None = None,
    precision: str = "int8",
    provider: str = "cpu",
    threads: int | None = None,
    batch_size: int | None = None,
    audio_format: str = "auto",
    worker_writes: bool = False,
    progress: bool = True,
    max_attempts: int = 3,
    synthesizer: Any = None,
    callback: Callable[[dict[str, Any]], None] | None = None,
    words: bool = False,
) -> RenderReport:
    """Render a corpus to one audio file per item plus ``manifest.jsonl`` in ``out_dir``.

    ``items`` is a corpus file (a path: plain text, one utterance per line, or ``.jsonl``) or
    an iterable of strings, dicts (``text`` plus optional ``id``, ``voice``, ``speed``,
    ``lang``) or :class:`Item`. ``voice``/``speed``/``lang`` are defaults for items that do not
    set their own.

    Where it runs:

    * ``client=None``: this machine. ``workers=1`` renders in this process (on
      ``synthesizer`` when given, e.g. a notebook's warm one); ``workers=N`` uses a pool of
      ``N`` processes, each with one warm synthesizer and ``cores // N`` threads. The default
      is one process per core, at most 8 (then more threads per process).
    * ``client``: a ``distributed.Client``, a scheduler address (``"tcp://host:8786"``) or
      ``"local"`` (a ``LocalCluster`` of ``workers`` single-threaded processes for this run).

    Rerunning with the same ``out_dir`` skips items already done (same id and content hash,
    file present and whole) and redoes failed, changed or missing ones. An item that fails
    (e.g. unspeakable text) is recorded with its error and the run goes on.
    ``callback(record)`` is called in the driver for every finished item, after it is written.
    ``worker_writes=True`` lets workers write the audio themselves (only when ``out_dir`` is
    on a filesystem every worker sees at the same path). ``words=True`` adds each item's word
    timings to its manifest record (``words``: ``[text, start_s, end_s]`` per word); items done
    earlier without them are rendered again.
    """
    started = time.perf_counter()
    if synthesizer is not None:  # its precision decides the audio, so it enters the hashes
        precision, provider = synthesizer.precision, synthesizer.provider
    out = Path(out_dir).expanduser().resolve()
    corpus = _load(items, voice, speed, lang)
    fmt = _worker.resolve_format(audio_format)
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
    manifest_path = out / _manifest.MANIFEST
    report = RenderReport(out_dir=out, manifest=manifest_path, total=len(corpus),
                          audio_format=fmt)

    with _manifest.directory_lock(out):
        previous = _manifest.read_manifest(manifest_path)
        hashes = {item.id: item.content_hash(precision, fmt) for item in corpus}
        todo = [item for item in corpus if not _manifest.is_done(
            previous.get(item.id), hashes[item.id], out, words=words)]
        report.skipped = len(corpus) - len(todo)
        by_id = {item.id: item for item in todo}
        write_dir = str(out) if worker_writes else None
        (out / _worker.AUDIO_DIR).mkdir(parents=True, exist_ok=True)
        with _Backend(client, workers, synthesizer) as backend, \
                _manifest.ManifestWriter(manifest_path) as writer, \
                _Progress(len(todo), progress, backend.describe()) as bar:
            report.backend = backend.describe()
            tasks = [{**item.as_task(), "words": True} if words else item.as_task()
                     for item in todo]
            outcomes = backend.run(tasks, precision=precision, provider=provider,
                                   threads=threads, audio_format=fmt, write_dir=write_dir,
                                   batch_size=batch_size, max_attempts=max_attempts)
            for task, result, data in outcomes:
                item = by_id[task["id"]]
                record = _record(item, hashes[item.id], fmt, result)
                if data is not None:
                    with atomic_write(out / record["path"]) as audio_file:
                        audio_file.write(data)
                writer.write(record)
                report.synthesis_s += record.get("synthesis_s") or 0.0
                if record["status"] == "ok":
                    report.rendered += 1
                    report.audio_s += record["duration_s"]
                else:
                    report.failed += 1
                    report.failures.append(record)
                report.wall_s = time.perf_counter() - started
                bar.update(report)
                if callback is not None:
                    callback(record)
        _manifest.compact(manifest_path, [item.id for item in corpus])
    report.wall_s = time.perf_counter() - started
    return report


def _load(items: Source, voice: str, speed: float, lang: str | None) -> list[Item]:
    if isinstance(items, (str, PathLike)):
        path = Path(items)
        if not path.is_file():
            raise FileNotFoundError(
                f"corpus file {path} does not exist (to render utterances directly, pass a "
                "list of strings)")
        return read_items(path, voice=voice, speed=speed, lang=lang)
    return normalize_items(items, voice=voice, speed=speed, lang=lang)


def _record(item: Item, content_hash: str, fmt: str, result: dict[str, Any]) -> dict[str, Any]:
    record: dict[str, Any] = {
        "id": item.id, "text": item.text, "voice": item.voice, "speed": item.speed,
        "lang": item.lang, "hash": content_hash, "format": fmt,
        **{k: v for k, v in result.items() if k != "id"},
    }
    if record["status"] == "ok":
        record["path"] = _worker.relative_path(item.id, fmt)
    else:
        record.setdefault("error", "unknown error")
    if item.meta:
        record["meta"] = item.meta
    return record


class _Backend:
    """Chooses where items run and owns what it starts (a pool, a LocalCluster, a client)."""

    def __init__(self, client: Any, workers: int | None, synthesizer: Any):
        self.client_spec = client
        self.workers = workers
        self.synthesizer = synthesizer
        self.client: Any = None
        self._owned: list[Any] = []  # closed on exit, newest first

    def __enter__(self) -> _Backend:
        spec = self.client_spec
        if spec is None:
            return self
        try:
            from . import _dask  # only a Dask render needs distributed installed
        except ImportError as error:
            raise RuntimeError(f"rendering on Dask needs distributed ({error}): "
                               "pip install 'kokoro-lab[batch]'") from error

        if isinstance(spec, str):
            if spec == "local":
                cluster, self.client = _dask.local_cluster(self.workers or 2)
                self._owned += [cluster, self.client]
            else:
                from distributed import Client

                self.client = Client(spec)
                self._owned.append(self.client)
        else:
            self.client = spec
        return self

    def __exit__(self, *exc) -> None:
        for thing in reversed(self._owned):
            thing.close()

    def describe(self) -> str:
        if self.client is not None:
            link = getattr(self.client, "dashboard_link", None)
            workers = len(self.client.nthreads())
            return f"dask ({workers} workers{', dashboard ' + link if link else ''})"
        count = self.local_workers()
        return "this process" if count == 1 else f"{count} local processes"

    def local_workers(self) -> int:
        if self.synthesizer is not None:
            return 1
        return self.workers or _local.default_processes()

    def run(self, tasks: list[dict[str, Any]], *, precision: str, provider: str,
            threads: int | None, audio_format: str, write_dir: str | None,
            batch_size: int | None, max_attempts: int) -> Iterator[_local.Outcome]:
        if not tasks:
            return iter(())
        if self.client is not None:
            from . import _dask

            return _dask.run_dask(self.client, tasks, precision=precision, provider=provider,
                                  threads=threads, audio_format=audio_format,
                                  write_dir=write_dir, batch_size=batch_size)
        count = self.local_workers()
        if count == 1:
            synth = self.synthesizer
            if synth is None:
                from ..engine import Synthesizer

                synth = Synthesizer(precision=precision, provider=provider, cache=False,
                                    threads=threads or _local.cpu_count())
            return _local.run_in_process(synth, tasks, audio_format, write_dir)
        return _local.run_pool(tasks, workers=count, precision=precision, provider=provider,
                               threads=threads, audio_format=audio_format, write_dir=write_dir,
                               batch_size=batch_size or 1, max_attempts=max_attempts)


class _Progress:
    """A tqdm bar (terminal or notebook widget) showing items/s and audio-seconds per second."""

    def __init__(self, total: int, enabled: bool, where: str):
        self.bar = None
        if not enabled or total == 0:
            return
        try:
            from tqdm.auto import tqdm
        except ImportError:  # progress is a nicety; rendering goes on without it
            return
        self.bar = tqdm(total=total, desc="render", unit="item", dynamic_ncols=True,
                        smoothing=0.05)
        self.bar.write(f"rendering {total} items on {where}")

    def update(self, report: RenderReport) -> None:
        if self.bar is None:
            return
        self.bar.set_postfix_str(
            f"{report.audio_s_per_s:.2f} audio-s/s, {report.failed} failed", refresh=False)
        self.bar.update(1)

    def __enter__(self) -> _Progress:
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()
