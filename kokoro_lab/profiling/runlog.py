"""The run log: every profile and bench run, kept in one SQLite file per user.

The rules:

* The file lives in ``platformdirs.user_data_dir("kokoro-lab")`` (``$KOKORO_LAB_DATA``
  overrides the directory), so runs from every notebook and CLI call on a machine accumulate,
  and files copied from other machines can be compared with :func:`compare`.
* Each row is one (provider, precision) cell of one run: the machine (host, CPU and GPU names,
  core count, memory), library versions, and the figures measured, as JSON.
* The schema is versioned with SQLite's ``user_version``; a file written by a newer schema is
  refused rather than misread.
* Writers may be many (several kernels, a batch of processes): the journal is WAL, every write
  is one short ``BEGIN IMMEDIATE`` transaction and waits for the lock rather than failing, and
  a reader checks the schema in one read transaction (one snapshot, never half of another
  process's schema creation).
* A file that is not a run log (corrupt, truncated, someone else's database) raises
  :class:`RunLogError` naming the file; it is never deleted, rebuilt or written over.
"""

from __future__ import annotations

import functools
import json
import math
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import platformdirs

SCHEMA_VERSION = 1
DATA_ENV = "KOKORO_LAB_DATA"
FILE_NAME = "runs.sqlite"
BUSY_TIMEOUT_MS = 30_000
LIBRARIES = ("kokoro-lab", "kokoro-onnx", "onnxruntime", "onnxruntime-gpu", "onnx", "numpy")

_SCHEMA = """
CREATE TABLE runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    batch TEXT NOT NULL,          -- one profile() or bench call, shared by its cells
    created TEXT NOT NULL,        -- ISO 8601, UTC
    kind TEXT NOT NULL,           -- 'profile', 'bench', ...
    machine TEXT NOT NULL,        -- host name
    cpu TEXT NOT NULL,
    gpu TEXT NOT NULL,            -- '' when none was found
    cores INTEGER,
    memory_gb REAL,
    os TEXT NOT NULL,
    python TEXT NOT NULL,
    versions TEXT NOT NULL,       -- JSON {library: version}
    provider TEXT NOT NULL,
    precision TEXT NOT NULL,
    model TEXT NOT NULL,          -- honest label of the graph, e.g. 'fp32, dequantized from ...'
    text TEXT,
    figures TEXT NOT NULL         -- JSON {name: number}
);
CREATE INDEX runs_cell ON runs (provider, precision);
CREATE INDEX runs_machine ON runs (machine);
"""
_COLUMNS = ("id", "batch", "created", "kind", "machine", "cpu", "gpu", "cores", "memory_gb", "os",
            "python", "versions", "provider", "precision", "model", "text", "figures")


class RunLogError(RuntimeError):
    """The run-log file cannot be used; the message names it and says what to do."""


def default_path() -> Path:
    """``$KOKORO_LAB_DATA/runs.sqlite`` or the same name in the user data dir."""
    override = os.environ.get(DATA_ENV)
    folder = Path(override) if override else Path(platformdirs.user_data_dir("kokoro-lab"))
    return folder / FILE_NAME


# ---------------------------------------------------------------------------------------------
# the machine


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    if sys.platform == "darwin":
        try:
            return subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True,
                                  text=True, timeout=5).stdout.strip() or platform.processor()
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine()


def _gpu_names() -> str:
    """GPU names from ``nvidia-smi`` (the providers this project runs on GPUs are NVIDIA's)."""
    if not shutil.which("nvidia-smi"):
        return ""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return ""
    return "; ".join(line.strip() for line in out.stdout.splitlines() if line.strip())


def _version(library: str) -> str | None:
    try:
        return metadata.version(library)
    except metadata.PackageNotFoundError:
        return None


@functools.lru_cache(maxsize=1)
def machine_info() -> dict:
    """Where the figures were measured: host, CPU, GPU, cores, memory, OS, library versions."""
    try:
        import psutil

        memory_gb = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        memory_gb = None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    versions = {name: v for name in LIBRARIES if (v := _version(name)) is not None}
    return {
        "machine": platform.node() or "unknown",
        "cpu": _cpu_name(),
        "gpu": _gpu_names(),
        "cores": cores,
        "memory_gb": memory_gb,
        "os": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
    }


# ---------------------------------------------------------------------------------------------
# rows


@dataclass
class Run:
    """One logged (provider, precision) cell of one run."""

    id: int
    batch: str
    created: str
    kind: str
    machine: str
    cpu: str
    gpu: str
    cores: int | None
    memory_gb: float | None
    os: str
    python: str
    versions: dict
    provider: str
    precision: str
    model: str
    text: str | None
    figures: dict = field(default_factory=dict)

    def flat(self) -> dict:
        """The row with its figures as top-level keys (for tables and DataFrames)."""
        row = {k: v for k, v in self.__dict__.items() if k not in ("figures", "versions")}
        row["onnxruntime"] = self.versions.get("onnxruntime-gpu") or self.versions.get(
            "onnxruntime")
        row.update(self.figures)
        return row


class Runs(list):
    """A list of :class:`Run` with table helpers."""

    def to_dataframe(self):
        """One row per logged cell, figures as columns (needs pandas)."""
        import pandas as pd

        return pd.DataFrame.from_records([run.flat() for run in self])

    def compare(self, metric: str = "rtf") -> dict[tuple[str, str, str], dict[str, float]]:
        """``{(machine, provider, precision): {median, min, max, runs}}`` of one figure."""
        groups: dict[tuple[str, str, str], list[float]] = {}
        for run in self:
            value = run.figures.get(metric)
            if isinstance(value, (int, float)):
                groups.setdefault((run.machine, run.provider, run.precision), []).append(value)
        out = {}
        for key, values in sorted(groups.items()):
            values.sort()
            middle = len(values) // 2
            median = values[middle] if len(values) % 2 else (values[middle - 1]
                                                              + values[middle]) / 2
            out[key] = {"median": median, "min": values[0], "max": values[-1],
                        "runs": len(values)}
        return out

    def markdown(self, metric: str = "rtf") -> str:
        lines = [f"| machine | provider | precision | {metric} median | min | max | runs |",
                 "|---|---|---|---:|---:|---:|---:|"]
        for (machine, provider, precision), s in self.compare(metric).items():
            lines.append(f"| {machine} | {provider} | {precision} | {s['median']:.4g} | "
                         f"{s['min']:.4g} | {s['max']:.4g} | {s['runs']} |")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# the database


class RunLog:
    """A run-log file. Opening checks it; nothing is created until the first write."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path) if path else default_path()

    @contextmanager
    def _connect(self, write: bool) -> Iterator[sqlite3.Connection]:
        if write:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        elif not self.path.exists():
            raise FileNotFoundError(f"no run log at {self.path} yet")
        try:
            connection = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000,
                                         isolation_level=None)
        except sqlite3.Error as error:
            raise RunLogError(f"cannot open the run log {self.path}: {error}") from error
        try:
            connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self._check(connection, write)
            yield connection
        except sqlite3.DatabaseError as error:
            if _is_corruption(error):
                raise self._corrupt(error) from error
            raise
        finally:
            connection.close()

    def _corrupt(self, error: Exception) -> RunLogError:
        return RunLogError(
            f"{self.path} is not a readable kokoro-lab run log ({error}). It has been left "
            f"untouched; move it aside (or set {DATA_ENV} to another folder) to start a new log."
        )

    def _check(self, connection: sqlite3.Connection, write: bool) -> None:
        """Verify the file is ours and current; create the schema on first write."""
        version, tables = _schema(connection)
        if version == SCHEMA_VERSION:
            return
        if version > SCHEMA_VERSION:
            raise RunLogError(
                f"{self.path} was written by a newer kokoro-lab (schema {version}, this one "
                f"reads {SCHEMA_VERSION}); upgrade kokoro-lab to read it"
            )
        if version != 0 or tables:
            raise self._foreign(connection, version)  # before anything could write to it
        if not write:
            return  # an empty file: no runs yet
        # WAL lets readers run beside a writer; the mode is stored in the file, set once.
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("BEGIN IMMEDIATE")
        try:
            # re-read inside the lock: another process may have created the schema meanwhile
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            if version == 0 and not _tables(connection):
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    connection.execute(statement)
                connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            elif version != SCHEMA_VERSION:
                raise self._foreign(connection, version)
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise

    def _foreign(self, connection: sqlite3.Connection, version: int) -> RunLogError:
        tables = ", ".join(_tables(connection)) or "none"
        return RunLogError(
            f"{self.path} is an SQLite file but not a kokoro-lab run log (schema version "
            f"{version}, tables: {tables}). It has been left untouched; move it aside or set "
            f"{DATA_ENV} to another folder."
        )

    def record(self, kind: str, provider: str, precision: str, figures: dict, *,
               model: str = "", text: str | None = None, batch: str | None = None,
               machine: dict | None = None) -> int:
        """Append one cell; returns its row id.

        ``machine`` overrides fields of :func:`machine_info` (for importing figures measured
        elsewhere, e.g. by ``benchmarks/gpu_matrix.py`` on a GPU machine).
        """
        if not kind or not provider or not precision:
            raise ValueError("kind, provider and precision must be non-empty")
        if not isinstance(figures, dict):
            raise TypeError(f"figures must be a dict of numbers, got {type(figures).__name__}")
        machine = {**machine_info(), **(machine or {})}
        row = {
            "batch": batch or new_batch(),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "kind": kind, "provider": provider, "precision": precision, "model": model,
            "text": text, "figures": json.dumps(_finite(figures), sort_keys=True),
            "versions": json.dumps(machine["versions"], sort_keys=True),
            **{k: machine[k] for k in ("machine", "cpu", "gpu", "cores", "memory_gb", "os",
                                       "python")},
        }
        names = ", ".join(row)
        marks = ", ".join(f":{name}" for name in row)
        with self._connect(write=True) as connection:
            connection.execute("BEGIN IMMEDIATE")
            try:
                cursor = connection.execute(f"INSERT INTO runs ({names}) VALUES ({marks})", row)
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            return int(cursor.lastrowid)

    def runs(self, *, kind: str | None = None, machine: str | None = None,
             provider: str | None = None, precision: str | None = None,
             batch: str | None = None, limit: int | None = None) -> Runs:
        """Logged cells, newest first, filtered by any of the given fields."""
        if not self.path.exists():
            return Runs()
        filters = {"kind": kind, "machine": machine, "provider": provider,
                   "precision": precision, "batch": batch}
        used = {k: v for k, v in filters.items() if v is not None}
        where = " AND ".join(f"{k} = :{k}" for k in used) or "1"
        query = f"SELECT {', '.join(_COLUMNS)} FROM runs WHERE {where} ORDER BY id DESC"
        if limit is not None:
            query += f" LIMIT {int(limit)}"
        with self._connect(write=False) as connection:
            if not _tables(connection):
                return Runs()
            rows = connection.execute(query, used).fetchall()
        out = Runs()
        for values in rows:
            data = dict(zip(_COLUMNS, values, strict=True))
            data["versions"] = json.loads(data["versions"])
            data["figures"] = json.loads(data["figures"])
            out.append(Run(**data))
        return out


def _schema(connection: sqlite3.Connection) -> tuple[int, list[str]]:
    """The schema version and the tables, read in one transaction.

    Two statements outside a transaction could straddle another process's schema commit and
    read "version 0" from before it and "tables: runs" from after it, refusing a good file as
    foreign; one read transaction sees one snapshot. Reading the version reads page 1, so a
    file that is not SQLite fails right here.
    """
    connection.execute("BEGIN")
    try:
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        tables = _tables(connection)
    except BaseException:
        with suppress(sqlite3.Error):
            connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")
    return version, tables


def _tables(connection: sqlite3.Connection) -> list[str]:
    return [name for (name,) in connection.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]


def _is_corruption(error: sqlite3.DatabaseError) -> bool:
    text = str(error).lower()
    return "not a database" in text or "malformed" in text or "corrupt" in text or (
        type(error) is sqlite3.DatabaseError)


def _finite(figures: dict) -> dict:
    """JSON has no NaN/inf: store them as null rather than as invalid JSON."""
    out = {}
    for key, value in figures.items():
        if isinstance(value, float) and not math.isfinite(value):
            value = None
        out[str(key)] = value
    return out


def new_batch() -> str:
    return uuid.uuid4().hex[:12]


def record(kind: str, provider: str, precision: str, figures: dict, **options) -> int:
    """Append one cell to the default run log (see :meth:`RunLog.record`)."""
    return RunLog().record(kind, provider, precision, figures, **options)


def runs(**filters) -> Runs:
    """Logged runs from the default run log, newest first (see :meth:`RunLog.runs`)."""
    return RunLog(filters.pop("path", None)).runs(**filters)


def compare(metric: str = "rtf", paths: list[str | os.PathLike] | None = None):
    """One figure per (machine, provider, precision) across this log and others' log files."""
    merged = Runs()
    for path in paths or [None]:
        merged.extend(RunLog(path).runs())
    return merged.compare(metric)


__all__ = ["SCHEMA_VERSION", "Run", "RunLog", "RunLogError", "Runs", "compare", "default_path",
           "machine_info", "new_batch", "record", "runs"]
