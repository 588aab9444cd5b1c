"""Rendering on a Dask cluster: one warm synthesizer per worker, items batched into tasks.

The rule: the synthesizer lives in a :class:`SynthesizerPlugin` registered on the cluster, so
every worker (including one that joins or is restarted later) loads the model once and keeps
it; tasks only carry text. The driver keeps a bounded number of batches in flight and streams
each result to the manifest as it completes, so a million-item corpus never becomes a million
futures, and adding workers (adaptive scaling) raises the bound.

Nothing is lost when a worker dies: its unfinished tasks, and finished results not yet fetched,
are recomputed on other workers by the scheduler (tasks are pure functions of their items).
A batch that kills its worker ``distributed.scheduler.allowed-failures`` times fails with
``KilledWorker``; its items are recorded as failed and the run goes on.
"""

from __future__ import annotations

import math
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from distributed import Client, Future, LocalCluster, as_completed, get_worker
from distributed.diagnostics.plugin import WorkerPlugin

from . import _worker
from ._local import Outcome, cpu_count

PLUGIN_PREFIX = "kokoro-lab-synthesizer"


def _host(address: str) -> str:
    return urlsplit(address).hostname or address


class SynthesizerPlugin(WorkerPlugin):
    """Dask worker plugin: one warm :class:`~kokoro_lab.Synthesizer` per worker process.

    The model is loaded on a background thread started in :meth:`setup`, so the worker's event
    loop (heartbeats, data transfers) is not blocked for the seconds a load takes; the first
    task waits for it. ``threads`` is ONNX Runtime's intra-op thread count; ``None`` shares the
    host's cores between the Dask workers on that host (``threads_by_host`` counts them).
    """

    idempotent = True  # registering the same configuration twice keeps the warm engines

    def __init__(self, precision: str = "int8", provider: str = "cpu", threads: int | None = None,
                 workers_by_host: dict[str, int] | None = None):
        self.precision = precision
        self.provider = provider
        self.threads = threads
        self.workers_by_host = dict(workers_by_host or {})
        self.name = f"{PLUGIN_PREFIX}-{precision}-{provider}-{threads or 'auto'}"
        self._synth: Any = None
        self._error: BaseException | None = None
        self._loader: threading.Thread | None = None

    def setup(self, worker: Any) -> None:
        slots = max(1, getattr(getattr(worker, "state", None), "nthreads", 1) or 1)
        sharing = self.workers_by_host.get(_host(worker.address), 1)
        threads = self.threads or max(1, cpu_count() // (sharing * slots))
        # espeak (phonemization) and the synthesizer's speed model are not thread-safe: a
        # worker with several task slots renders one batch at a time on its synthesizer.
        self.lock = threading.Lock()
        self._loader = threading.Thread(target=self._load, args=(threads,),
                                        name="kokoro-lab-load", daemon=True)
        self._loader.start()

    def _load(self, threads: int) -> None:
        try:
            from ..engine import Synthesizer

            self._synth = Synthesizer(precision=self.precision, provider=self.provider, cache=False,
                                      threads=threads)
        except BaseException as error:  # surfaced to every task on this worker
            self._error = error

    def synthesizer(self) -> Any:
        """The warm synthesizer, waiting for the load started in :meth:`setup`."""
        if self._loader is not None:
            self._loader.join()
        if self._error is not None:
            raise RuntimeError(f"this worker could not load the {self.precision} model on "
                               f"{self.provider!r}: {self._error}") from self._error
        if self._synth is None:
            raise RuntimeError("the kokoro-lab synthesizer plugin was not set up on this worker")
        return self._synth

    def teardown(self, worker: Any) -> None:
        self._synth = None


def render_batch_on_worker(tasks: list[dict[str, Any]], plugin_name: str, audio_format: str,
                           write_dir: str | None) -> list[tuple[dict[str, Any], bytes | None]]:
    """The Dask task: a batch of items on this worker's warm synthesizer."""
    worker = get_worker()
    plugin = worker.plugins.get(plugin_name)
    if plugin is None:
        raise RuntimeError(f"worker {worker.address} has no plugin {plugin_name!r}")
    synth = plugin.synthesizer()
    with plugin.lock:
        return _worker.render_batch(synth, tasks, audio_format, write_dir, worker.address)


def register(client: Client, precision: str, provider: str, threads: int | None) -> str:
    """Register the synthesizer plugin on ``client``'s cluster; return its name."""
    workers = client.scheduler_info(n_workers=-1)["workers"]
    by_host = Counter(_host(address) for address in workers)
    plugin = SynthesizerPlugin(precision, provider, threads, dict(by_host))
    client.register_plugin(plugin, name=plugin.name)
    return plugin.name


def total_threads(client: Client) -> int:
    return max(1, sum(client.nthreads().values()))


def auto_batch_size(items: int, slots: int) -> int:
    """Enough batches for ~8 per task slot (load balance), at most 16 items per batch (so a
    lost worker costs little); more items per task only amortize Dask's ~1 ms per task."""
    return max(1, min(16, math.ceil(items / (8 * slots))))


def run_dask(
    client: Client,
    tasks: list[dict[str, Any]],
    *,
    precision: str,
    provider: str,
    threads: int | None,
    audio_format: str,
    write_dir: str | None,
    batch_size: int | None = None,
) -> Iterator[Outcome]:
    """Render ``tasks`` on the cluster behind ``client``, yielding outcomes as they complete."""
    if not tasks:
        return
    plugin_name = register(client, precision, provider, threads)
    slots = total_threads(client)
    size = batch_size or auto_batch_size(len(tasks), slots)
    batches = [tasks[i:i + size] for i in range(0, len(tasks), size)]
    run_id = uuid.uuid4().hex[:8]
    queue = iter(enumerate(batches))
    inflight: dict[str, tuple[Future, list[dict[str, Any]]]] = {}
    done_count = 0
    completed = as_completed(with_results=True, raise_errors=False)

    def submit(limit: int) -> None:
        while len(inflight) < limit:
            try:
                number, batch = next(queue)
            except StopIteration:
                return
            key = f"kokoro-render-{run_id}-{number:07d}"
            future = client.submit(render_batch_on_worker, batch, plugin_name, audio_format,
                                   write_dir, key=key, pure=False, retries=1)
            inflight[key] = (future, batch)
            completed.add(future)

    limit = 2 * slots
    submit(limit)
    try:
        for future, result in completed:
            _, batch = inflight.pop(future.key)
            if future.status == "finished":
                for task, (record, data) in zip(batch, result, strict=True):
                    yield task, record, data
            else:  # KilledWorker, a cancelled future, or an error outside the per-item guard
                error = result[1] if isinstance(result, tuple) else result
                for task in batch:
                    yield task, _batch_failed(task, error), None
            done_count += 1
            if done_count % 32 == 0:  # workers may have joined (adaptive scaling) or left
                limit = 2 * total_threads(client)
            submit(limit)
    finally:
        if inflight:
            client.cancel([future for future, _ in inflight.values()])


def _batch_failed(task: dict[str, Any], error: BaseException) -> dict[str, Any]:
    return {"id": task["id"], "status": "failed", "worker": None,
            "error": f"{type(error).__name__}: {error}"}


def local_cluster(workers: int) -> tuple[LocalCluster, Client]:
    """A ``LocalCluster`` of ``workers`` single-threaded worker processes and its client."""
    cluster = LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address=":0",
    )
    return cluster, Client(cluster)


__all__ = ["SynthesizerPlugin", "auto_batch_size", "local_cluster", "render_batch_on_worker",
           "run_dask"]
