"""ONNX Runtime sessions: one per (stage, precision, provider, threads), created once, kept warm.

The rules:

* A provider the user asks for either runs the model or raises :class:`ProviderUnavailable`
  naming what is available. ONNX Runtime itself falls back to CPU silently when, say, the CUDA
  libraries fail to load; we check the session's active providers after creation and refuse
  that fallback instead of hiding it.
* A *stage* is the whole graph (``"model"``) or one half of the graph split before the vocoder
  (``"front"``, ``"generator"``; see :mod:`kokoro_lab.engine.split`). Each stage gets its own
  warm session, so the split path costs no session creation per chunk.
* Memory stays bounded on a long read, where every chunk is a new input length. Every run
  uses :func:`run_options`, so ONNX Runtime's CPU arena hands back the blocks a run grew
  instead of keeping one set per shape; and after each chunk :func:`release_freed_memory`
  returns what the C allocator keeps of them (glibc holds freed blocks in per-thread arenas,
  so with parallel lanes the shrinkage alone only delays the growth). All sessions of the
  process share one CPU arena that grows by what a run asks for, not by powers of two
  (:func:`shared_cpu_arena`): one arena's peak instead of one per session, and no doubling
  overshoot on a long chunk.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import onnxruntime as ort

from . import assets
from .gpu import preload_gpu_libraries
from .scheduling import SpeedModel

# Short names users type, mapped to ONNX Runtime's provider names.
PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
    "rocm": "ROCMExecutionProvider",
    "migraphx": "MIGraphXExecutionProvider",
    "directml": "DmlExecutionProvider",
    "dml": "DmlExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "qnn": "QNNExecutionProvider",
}

# Options that matter for this model: its input shapes change with every chunk, so an
# exhaustive cuDNN algorithm search would be redone for each new length.
PROVIDER_OPTIONS: dict[str, dict[str, str]] = {
    "CUDAExecutionProvider": {"cudnn_conv_algo_search": "HEURISTIC"},
    "TensorrtExecutionProvider": {"trt_engine_cache_enable": "True"},
}


class ProviderUnavailable(RuntimeError):
    """The requested execution provider cannot run here."""


def provider_name(provider: str) -> str:
    """``"cuda"`` → ``"CUDAExecutionProvider"``; full names pass through."""
    name = PROVIDER_ALIASES.get(provider.lower(), provider)
    if name not in ort.get_all_providers():
        known = ", ".join(sorted(PROVIDER_ALIASES))
        raise ProviderUnavailable(f"unknown provider {provider!r}; known short names: {known}")
    return name


def short_name(provider: str) -> str:
    for alias, name in PROVIDER_ALIASES.items():
        if name == provider:
            return alias
    return provider


# Listed by ORT builds as "available" but it calls remote endpoints: it cannot run this model.
_REMOTE_ONLY = {"AzureExecutionProvider"}


def _local_providers() -> list[str]:
    return [p for p in ort.get_available_providers() if p not in _REMOTE_ONLY]


def available_providers() -> list[str]:
    """Short names of the providers this onnxruntime build offers that can run the model."""
    return [short_name(p) for p in _local_providers()]


def check_available(provider: str) -> str:
    name = provider_name(provider)
    if name not in _local_providers():
        hint = ""
        if name in ("CUDAExecutionProvider", "TensorrtExecutionProvider"):
            hint = (" `kokoro-lab doctor` says why and gives the fix; the GPU runtime is installed"
                    " by `make setup GPU=1` (see docs/troubleshooting.md).")
        raise ProviderUnavailable(
            f"provider {provider!r} ({name}) is not available in this onnxruntime build; "
            f"available: {', '.join(available_providers())}.{hint}"
        )
    return name


def default_threads() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)


SHARED_ARENA = True  # benchmarks/memory_long_read.py turns it off to measure per-session arenas

# ``kSameAsRequested``: extend the arena by the size a run asks for. The default doubles the last
# extension, so one long chunk can reserve twice what it uses (measured on a long read: peak
# 286 MB above the warm engine with per-session default arenas, 181 MB shared, same speed).
_EXTEND_AS_REQUESTED = 1


@functools.cache
def shared_cpu_arena() -> None:
    """Register the process-wide CPU arena every session of this process allocates from (once:
    sessions are created under :class:`SessionCache`'s lock)."""
    memory = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0,
                               ort.OrtMemType.DEFAULT)
    ort.create_and_register_allocator(
        memory, ort.OrtArenaCfg({"arena_extend_strategy": _EXTEND_AS_REQUESTED}))


def session_options(threads: int | None = None, profile_prefix: str | None = None,
                    spinning: bool = True, custom_ops: str = ""):
    """Explicit options rather than ORT's defaults, so runs are comparable across machines.
    ``spinning=False`` lets idle intra-op threads sleep instead of spinning (a tuning);
    ``custom_ops`` names a custom-op library the graph needs (:func:`custom_ops_library`)."""
    options = ort.SessionOptions()
    if custom_ops:
        options.register_custom_ops_library(custom_ops)
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if SHARED_ARENA:
        shared_cpu_arena()
        options.add_session_config_entry("session.use_env_allocators", "1")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads or default_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    if profile_prefix:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return options


# Shrink the CPU arena back after every run: without it, RSS grows by the largest block each new
# chunk length needed and never returns it (1.6 GB after 60 chunks of a long read). The next run
# faults its memory in again, a few percent of throughput; shrinking only past a headroom of
# resident memory was measured (benchmarks/memory_long_read.py) and let single readings peak
# 375-398 MB above the warm engine, over the 350 MB bound, for no clear gain in speed.
ARENA_SHRINKAGE = ("memory.enable_memory_arena_shrinkage", "cpu:0")


def run_options() -> ort.RunOptions:
    """Options for every inference run: arena shrinkage on; ``terminate`` aborts the run."""
    options = ort.RunOptions()
    options.add_run_config_entry(*ARENA_SHRINKAGE)
    return options


def _malloc_trim():
    """glibc's ``malloc_trim``, or None where the C library has none (macOS, Windows, musl)."""
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None


_MALLOC_TRIM = _malloc_trim()


def release_freed_memory() -> None:
    """Give the memory the C allocator holds free back to the system (glibc; no-op elsewhere).

    It costs about a millisecond, and a chunk takes hundreds: called after every chunk.
    """
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def release_session_memory() -> None:
    """After sessions are dropped: collect them now (a cycle may hold one) and hand what the
    C allocator keeps free back to the system."""
    import gc

    gc.collect()
    release_freed_memory()


STAGES = ("model", "front", "generator")


@dataclass
class LoadedSession:
    """A warm session and what it cost to load."""

    session: ort.InferenceSession
    precision: str
    provider: str  # short name asked for
    model_path: Path  # the source graph (the whole model, also for a stage)
    load_ms: float
    active_providers: list[str] = field(default_factory=list)
    threads: int = 1
    stage: str = "model"
    graph: str = ""  # the file this session runs (the model, or one of its derived stages)
    # What this session's speed turned out to be, so chunk sizing learns per provider/precision.
    speed_model: SpeedModel = field(default_factory=SpeedModel)
    custom_ops: str = ""  # the custom-op library its graph needs, if any


def custom_ops_library(stage: str, variant: str) -> str:
    """The custom-op library a stage's graph variant needs (built on first use), or ""."""
    from .graphs import variants

    if stage != "generator" or variant not in variants.NATIVE:
        return ""
    from .graphs import native

    return str(native.library_path())


def create_session(
    model: Path, provider: str, threads: int | None = None, profile_prefix: str | None = None,
    spinning: bool = True, custom_ops: str = "",
) -> tuple[ort.InferenceSession, list[str]]:
    """Create a session on ``provider`` (plus CPU for ops it lacks) and refuse a fallback."""
    name = check_available(provider)
    chain: list = [(name, PROVIDER_OPTIONS.get(name, {}))]
    if name == "TensorrtExecutionProvider":
        chain.append(("CUDAExecutionProvider", PROVIDER_OPTIONS["CUDAExecutionProvider"]))
    if name != "CPUExecutionProvider":
        chain.append("CPUExecutionProvider")
    if name in ("CUDAExecutionProvider", "TensorrtExecutionProvider"):
        # pip's CUDA/cuDNN wheels are not on the loader's path; without this preload the
        # session silently falls back to CPU (refused below) even though the GPU build is fine.
        preload_gpu_libraries()
    session = ort.InferenceSession(
        str(model), sess_options=session_options(threads, profile_prefix, spinning, custom_ops),
        providers=chain
    )
    active = session.get_providers()
    if name not in active:
        raise ProviderUnavailable(
            f"ONNX Runtime could not start {name} (it would have fallen back to {active}); "
            "check the GPU driver and CUDA/cuDNN libraries"
        )
    return session, active


def stage_path(model: Path, stage: str, variant: str = "released") -> Path:
    """The graph file a stage runs: the model itself, or one of its cached split stages (the
    generator in the graph ``variant`` asked for)."""
    if stage == "model":
        return model
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; choose one of {', '.join(STAGES)}")
    from . import phase, split  # onnx is only imported when a split is asked for

    paths = split.split_model(model)
    # The generator stage takes a phase offset, so it can start after skipped frames; with an
    # offset of zero it is the unsplit model's vocoder, bit for bit.
    graph = paths.front if stage == "front" else phase.phase_graph_path(paths)
    from .graphs import variants

    if stage == "front" and variant != "released":
        variant = "matmul-exact"  # every GEMM variant runs the front's convolutions exactly
    if variant == "released":
        return graph
    import onnx

    # Without VNNI or AMX the rewrites leave the convolutions that could saturate the GEMM, so
    # the graph depends on the CPU's kind (variants.gemm_tag).
    name = f"{stage}-{variant}{variants.gemm_tag()}-v{variants.VARIANTS_VERSION}.onnx"
    return split.cached_graph(paths.sha256, name,
                              lambda: variants.build(variant, onnx.load(str(graph))))


class SessionCache:
    """Sessions keyed by (stage, precision, provider, model file, threads, graph variant,
    spinning), made on first use."""

    def __init__(self) -> None:
        self._sessions: dict[tuple, LoadedSession] = {}
        self._lock = threading.Lock()

    def get(self, precision: str, provider: str, model: str | Path | None = None,
            threads: int | None = None, stage: str = "model", variant: str = "released",
            spinning: bool = True) -> LoadedSession:
        path = Path(model) if model else assets.model_path(precision)
        threads = threads or default_threads()
        variant = variant if stage in ("front", "generator") else "released"
        key = (stage, precision, provider.lower(), str(path), threads, variant, spinning)
        with self._lock:
            if key not in self._sessions:
                start = time.perf_counter()
                graph = stage_path(path, stage, variant)
                custom_ops = custom_ops_library(stage, variant)
                session, active = create_session(graph, provider, threads, spinning=spinning,
                                                 custom_ops=custom_ops)
                self._sessions[key] = LoadedSession(
                    session=session, precision=precision, provider=provider.lower(),
                    model_path=path, graph=str(graph),
                    load_ms=(time.perf_counter() - start) * 1000,
                    active_providers=active, threads=threads, stage=stage,
                    speed_model=SpeedModel(prior_scale=(default_threads() / threads) ** 0.5),
                    custom_ops=custom_ops,
                )
            return self._sessions[key]

    def loaded(self) -> list[LoadedSession]:
        """Every session created so far."""
        with self._lock:
            return list(self._sessions.values())

    def keys(self) -> set[tuple]:
        """The keys of every session made so far (to drop what a job added, see :meth:`drop`)."""
        with self._lock:
            return set(self._sessions)

    def drop(self, keys) -> None:
        """Forget the sessions under ``keys`` and give their memory back to the system."""
        with self._lock:
            for key in keys:
                self._sessions.pop(key, None)
        release_session_memory()

    def clear(self) -> None:
        with self._lock:
            self._sessions.clear()
        release_session_memory()

    def __len__(self) -> int:
        return len(self._sessions)


# One cache per process: a notebook kernel, a CLI run or a batch worker keeps its sessions warm.
SESSIONS = SessionCache()
