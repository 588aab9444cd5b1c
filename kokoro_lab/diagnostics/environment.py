"""The assets and notebook sections: the model and voice cache (hash-checked), the kernel and
widget packages, the player's built front end, and comms over kernel subshells."""

from __future__ import annotations

import importlib.metadata
import os
import re
import sys
from pathlib import Path

from .fixes import FRONTEND_BUILD
from .report import FAIL, INFO, OK, WARN, Check

PACKAGE = Path(__file__).resolve().parent.parent  # kokoro_lab/
# Fewer than this many ipykernel/JupyterLab releases: no kernel subshells / no comms over them.
SUBSHELL_IPYKERNEL = (7, 0)
SUBSHELL_JUPYTERLAB = (4, 4)


# -- assets -----------------------------------------------------------------------------------
def _expected_sha256(name: str, path: Path) -> str | None:
    """The hash a cache file must have: int8 a release constant, the others their stamp."""
    if name == "model int8":
        from ..engine.assets import INT8_SHA256

        return INT8_SHA256
    stamp = path.with_suffix(".sha256")
    return stamp.read_text().strip() if stamp.is_file() else None


def asset_checks() -> list[Check]:
    """The model and voice cache, as ``kokoro-lab assets`` reports it, each file hash-checked."""
    from ..engine import assets

    section = "assets"
    try:
        items = assets.describe()
    except Exception as error:  # an unreadable cache is itself the finding
        return [Check(section, "cache", FAIL, f"{type(error).__name__}: {error}",
                      "kokoro-lab assets --build")]
    checks = [Check(section, "cache", INFO, str(assets.cache_dir())
                    + (f" (${assets.CACHE_ENV})" if os.environ.get(assets.CACHE_ENV) else ""))]
    for item in items:
        path = Path(item.path)
        derived = item.name in ("model fp32", "model fp16")
        build = "kokoro-lab assets --build" + ("-derived" if derived else "")
        if not item.present:
            checks.append(Check(section, item.name, INFO if derived else WARN,
                                "not built yet (built on first use)", build))
        elif item.origin.startswith("user file"):
            checks.append(Check(section, item.name, INFO,
                                f"{item.origin}, {item.size / 1e6:.1f} MB, not hash-checked"))
        else:
            checks.append(_hash_check(section, item, _expected_sha256(item.name, path), build))
    return checks


def _hash_check(section: str, item, expected: str | None, build: str) -> Check:
    size = f"{item.size / 1e6:.1f} MB"
    stamp = Path(item.path).with_suffix(".sha256")
    remove = f"rm -f '{item.path}'" + ("" if item.name == "model int8" else f" '{stamp}'")
    if expected is None:
        return Check(section, item.name, WARN,
                     f"{size}, no sha256 stamp beside it: it will be rebuilt on use",
                     f"{remove} && {build}")
    if item.sha256 != expected:
        return Check(section, item.name, FAIL,
                     f"{size}, sha256 {item.sha256[:16]}… does not match the expected "
                     f"{expected[:16]}…: corrupt or half-written", f"{remove} && {build}")
    return Check(section, item.name, OK, f"{size}, sha256 verified ({item.origin})")


def tuning_check() -> Check:
    """Which tuning ``Synthesizer()`` runs here: this machine's profile, or the built-in one
    (and why a saved profile is not used)."""
    import warnings

    from ..engine.graphs.variants import VARIANTS
    from ..engine.tuning import built_in, load_profile, profile_path

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        profile = load_profile(known_variants=tuple(VARIANTS))
    if profile is not None:
        return Check("assets", "tuning", OK, f"{profile.label}: {profile.figures or ''}".rstrip(
            ": "))
    if caught:
        return Check("assets", "tuning", WARN, str(caught[0].message), "kokoro-lab tune")
    return Check("assets", "tuning", INFO, f"{built_in().label}; no profile at {profile_path()}",
                 "kokoro-lab tune  (measures this machine, a few minutes)")


def kernel_check() -> Check:
    """Whether the fused vocoder kernel (``matmul-fused-kernel``) is built or can be, building
    nothing."""
    from ..engine.graphs import native
    from ..engine.graphs.variants import NATIVE

    try:
        return Check("assets", "fused kernel", INFO, f"{', '.join(NATIVE)}: {native.describe()}")
    except native.NativeUnavailable as error:
        return Check("assets", "fused kernel", WARN,
                     f"{error}: `kokoro-lab tune` cannot measure {', '.join(NATIVE)} here",
                     "apt install g++  (or set CXX)")


# -- notebook -------------------------------------------------------------------------------
def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _release(version: str | None) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", version or "0")[:2])


def default_static_dir() -> Path:
    """Where the package serves the player's built front end from (``make frontend``)."""
    return PACKAGE / "static"


def default_source_dir() -> Path | None:
    """extension/src when running from a checkout, else None."""
    source = PACKAGE.parent / "extension" / "src"
    return source if source.is_dir() else None


def check_frontend(static: Path, source: Path | None) -> Check:
    """The player's built JavaScript is there, and not older than its source in a checkout."""
    name = "player front end"
    built = static / "player.js"
    fix = FRONTEND_BUILD if source else (
        "reinstall kokoro-lab from a wheel built with the front end (make setup builds it)")
    if not built.is_file():
        return Check("notebook", name, FAIL, f"{built} is missing: the player cannot load", fix)
    if source:
        newer = [p.name for p in source.iterdir() if p.stat().st_mtime > built.stat().st_mtime]
        if newer:
            return Check("notebook", name, WARN,
                         f"{built} is older than extension/src ({', '.join(sorted(newer))})",
                         FRONTEND_BUILD)
    return Check("notebook", name, OK, f"{built} ({built.stat().st_size / 1e3:.1f} kB)"
                 + (", built after extension/src" if source else ""))


def check_packages(versions: dict[str, str | None]) -> Check:
    """The kernel and widget packages the notebook layer needs."""
    listed = ", ".join(f"{n} {v or 'missing'}" for n, v in versions.items())
    needed = [n for n in ("ipywidgets", "anywidget") if not versions.get(n)]
    if needed:
        return Check("notebook", "packages", FAIL, listed,
                     f"{sys.executable} -m pip install 'ipywidgets>=8' 'anywidget>=0.9'")
    if not versions.get("ipykernel"):
        return Check("notebook", "packages", WARN, listed + " (no kernel in this environment)",
                     f"{sys.executable} -m pip install ipykernel")
    return Check("notebook", "packages", OK, listed)


def check_subshells(ipykernel: str | None, jupyterlab: str | None) -> Check:
    """Kernel subshells (ipykernel >= 7) and comms over them (JupyterLab >= 4.4)."""
    kernel = ipykernel and _release(ipykernel) >= SUBSHELL_IPYKERNEL
    lab = jupyterlab and _release(jupyterlab) >= SUBSHELL_JUPYTERLAB
    parts = [f"ipykernel {ipykernel or 'missing'}: "
             + ("kernel subshells supported" if kernel else "no kernel subshells (needs 7)"),
             f"JupyterLab {jupyterlab or 'missing'}: "
             + ("sends comms over subshells (setting commsOverSubshells)" if lab
                else "no comms over subshells (needs 4.4)")]
    # ipykernel routes a comm's messages to the shell that last published on it; the player is
    # created and fed from the cell's (main) shell, so nothing moves it off the main thread.
    parts.append("the player's page→kernel messages are still handled on the kernel's main "
                 "thread (late while a cell runs); audio never waits for them")
    return Check("notebook", "comms over subshells", INFO, "; ".join(parts))


def notebook_checks(static: Path | None = None, source: Path | None = None) -> list[Check]:
    """Kernel, JupyterLab, widgets, the built player and comms over subshells."""
    versions = {n: _version(n) for n in ("ipykernel", "jupyterlab", "ipywidgets", "anywidget")}
    checks = [check_packages(versions)]
    # A front end pointed at elsewhere is compared with the source given with it, if any.
    checks.append(check_frontend(static or default_static_dir(),
                                 source if static else default_source_dir()))
    checks.append(check_subshells(versions["ipykernel"], versions["jupyterlab"]))
    return checks

