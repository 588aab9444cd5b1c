"""``kokoro-lab doctor``: is this install consistent, and if not, the exact command that fixes it.

The rule: every check names what it looked at and ends in one status, with the fix when there
is one:

* ``ok``: as it should be;
* ``info``: a fact, nothing to do (a GPU build of ONNX Runtime on a machine without a GPU is
  consistent: CUDA and TensorRT are compiled in and simply not usable here);
* ``warn``: works, but something is missing or stale (no TensorRT libraries, a player built
  before its source last changed);
* ``fail``: inconsistent, something will break: two wheels writing the one ``onnxruntime``
  module, the player's front end not built, a cache file whose sha256 no longer matches.

Only ``fail`` makes the exit status non-zero.

Three sections: **onnxruntime** (:mod:`.runtime`), **assets** and **notebook**
(:mod:`.environment`). The doctor only looks and reports: loading the GPU libraries a session
needs is the engine's job (:mod:`kokoro_lab.engine.gpu`), and the doctor reports what that
loading found. ``kokoro_lab.doctor()`` is :func:`doctor`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from .environment import asset_checks, kernel_check, notebook_checks, tuning_check
from .fixes import GPU_HINT, GPU_INSTALL, LAST_CUDA12_RELEASE, gpu_install_command
from .report import FAIL, INFO, OK, WARN, Check, Report
from .runtime import GpuFacts, RuntimeFacts, runtime_checks, runtime_facts

PACKAGE = Path(__file__).resolve().parent.parent


def diagnose(*, probe_gpu: bool = True, static_dir: Path | None = None,
             source_dir: Path | None = None,
             facts: Callable[[], RuntimeFacts] | None = None) -> Report:
    """Run every check. ``static_dir``/``source_dir`` point the front-end check elsewhere and
    ``facts`` replaces the onnxruntime facts (both for tests)."""
    from .. import __version__

    checkout = (PACKAGE.parent / "pyproject.toml").is_file()
    where = f"checkout {PACKAGE.parent}" if checkout else "installed"
    checks = [Check("kokoro-lab", "install", INFO,
                    f"kokoro-lab {__version__} on Python {sys.version.split()[0]} "
                    f"({sys.executable}); {where}")]
    checks += runtime_checks((facts or (lambda: runtime_facts(probe_gpu)))())
    checks += asset_checks()
    checks.append(tuning_check())
    checks.append(kernel_check())
    checks += notebook_checks(static_dir, source_dir)
    return Report(checks)


def doctor(*, probe_gpu: bool = True) -> Report:
    """Check this install; in a notebook the report renders as a table.

    ``report.exit_code`` is 0 when the install is consistent; each failed check carries the
    exact fix. ``probe_gpu=False`` skips starting CUDA/TensorRT on a tiny graph.
    """
    return diagnose(probe_gpu=probe_gpu)


__all__ = ["FAIL", "GPU_HINT", "GPU_INSTALL", "INFO", "LAST_CUDA12_RELEASE", "OK", "WARN",
           "Check", "GpuFacts", "Report", "RuntimeFacts", "asset_checks", "diagnose", "doctor",
           "gpu_install_command", "notebook_checks", "runtime_checks", "runtime_facts"]
