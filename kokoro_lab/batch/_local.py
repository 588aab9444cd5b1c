"""Rendering on this machine: in this process, or a pool of worker processes.

The rule: each worker process loads and warms one synthesizer in the pool initializer and keeps
it for its whole life, and the machine's cores are shared out between the processes (``N``
processes on ``C`` cores run ONNX Runtime with ``C // N`` threads each) so they do not fight.

A worker process that dies (killed, out of memory) breaks a ``ProcessPoolExecutor`` as a whole;
the runner then starts a fresh pool and resubmits every item that had not come back. An item
in flight at ``max_attempts`` such deaths is recorded as failed, so one item that crashes its
process cannot loop forever; a pool that dies before finishing anything twice in a row is an
error of the setup (a missing model, a bad provider) and is raised.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from . import _worker

MAX_DEFAULT_PROCESSES = 8
Outcome = tuple[dict[str, Any], dict[str, Any], "bytes | None"]  # task, record, audio bytes


def cpu_count() -> int:
    """Cores this process may run on (the affinity mask, not the machine's total)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def threads_per_process(processes: int, cores: int | None = None) -> int:
    """ONNX Runtime intra-op threads for each of ``processes`` sharing ``cores``."""
    return max(1, (cores or cpu_count()) // max(1, processes))


def default_processes(cores: int | None = None) -> int:
    """One process per core up to :data:`MAX_DEFAULT_PROCESSES`, then threads fill the rest.

    Short utterances keep ONNX Runtime's intra-op threads poorly used, so whole processes scale
    better than threads (on the project's shared 2-core machine, 2 processes x 1 thread made
    ~1.7x the steady-state audio of 1 x 2 threads in ``benchmarks/batch_throughput.py``, a
    noisy figure); the cap bounds memory, one model copy per process.
    """
    return max(1, min(cores or cpu_count(), MAX_DEFAULT_PROCESSES))


def run_in_process(synth: Any, tasks: list[dict[str, Any]], audio_format: str,
                   write_dir: str | None) -> Iterator[Outcome]:
    """Render serially on ``synth`` in this process (``workers=1``, or a notebook's own)."""
    label = _worker.worker_label()
    for task in tasks:
        record, data = _worker.render_item(synth, task, audio_format, write_dir, label)
        yield task, record, data


def run_pool(
    tasks: list[dict[str, Any]],
    *,
    workers: int,
    precision: str,
    provider: str,
    threads: int | None,
    audio_format: str,
    write_dir: str | None,
    batch_size: int = 1,
    max_attempts: int = 3,
) -> Iterator[Outcome]:
    """Render ``tasks`` on ``workers`` processes, yielding each item's outcome as it finishes."""
    threads = threads or threads_per_process(workers)
    # spawn, not fork: forking a process that already runs ONNX Runtime or Jupyter threads can
    # deadlock the child, and spawn behaves the same on Linux, macOS and Windows.
    context = multiprocessing.get_context("spawn")
    pending: deque[dict[str, Any]] = deque(tasks)
    attempts: dict[str, int] = {}
    barren_pools = 0  # consecutive pools that died before returning anything
    while pending:
        progressed = False
        inflight: dict[Future, list[dict[str, Any]]] = {}
        pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_worker.init_process,
                                   initargs=(precision, provider, threads))
        try:
            while pending or inflight:
                # Keep every process busy plus one batch queued each, never the whole corpus:
                # a million-item render must not hold a million futures.
                while pending and len(inflight) < 2 * workers:
                    batch = [pending.popleft() for _ in range(min(batch_size, len(pending)))]
                    future = pool.submit(_worker.render_batch_in_process, batch, audio_format,
                                         write_dir)
                    inflight[future] = batch
                done, _ = wait(inflight, return_when=FIRST_COMPLETED)
                for future in done:
                    results = future.result()  # BrokenProcessPool is handled below
                    batch = inflight.pop(future)
                    progressed = True
                    barren_pools = 0
                    for task, (record, data) in zip(batch, results, strict=True):
                        yield task, record, data
        except BrokenProcessPool as error:
            # Batches that finished before the pool broke keep their results.
            for future, batch in list(inflight.items()):
                if future.done() and not future.cancelled() and future.exception() is None:
                    del inflight[future]
                    progressed = True
                    for task, (record, data) in zip(batch, future.result(), strict=True):
                        yield task, record, data
            barren_pools = 0 if progressed else barren_pools + 1
            if barren_pools >= 2:
                raise RuntimeError(
                    f"worker processes die before finishing any item ({error}); check that "
                    f"the {precision} model loads on provider {provider!r} in a plain "
                    "`kokoro-lab speak` first"
                ) from error
            for batch in inflight.values():
                for task in reversed(batch):
                    attempts[task["id"]] = attempts.get(task["id"], 0) + 1
                    if attempts[task["id"]] >= max_attempts:
                        yield task, _died(task, attempts[task["id"]]), None
                    else:
                        pending.appendleft(task)  # retried first, in its original order
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def _died(task: dict[str, Any], attempts: int) -> dict[str, Any]:
    return {
        "id": task["id"], "status": "failed", "attempts": attempts, "worker": None,
        "error": f"WorkerDied: the worker process died {attempts} times while this item was "
                 "in flight (killed, or out of memory); it was not retried again",
    }
