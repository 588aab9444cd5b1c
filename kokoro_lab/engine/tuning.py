"""This machine's tuning: which vocoder graph and session settings the engine runs.

The rules:

* A :class:`Tuning` names a generator graph variant (:mod:`kokoro_lab.engine.graphs.variants`)
  and the session settings that go with it (intra-op threads, spinning, lanes). Every variant
  other than ``"released"`` carries a certificate: it is used only after passing the by-ear
  judges on texts and voices it was not built on (``kokoro-lab tune`` measures and judges).
* ``Synthesizer(tuning="auto")`` (the default) runs this machine's saved profile when there is
  one, else :func:`built_in`, a safe choice that needs no measurement. ``tuning="off"`` runs
  the released graph with the engine's plain settings (:data:`OFF`), so anyone can compare the
  two in one process. A :class:`Tuning` may also be passed as is.
* A profile is a small JSON file in the user config dir (``$KOKORO_LAB_CONFIG`` overrides) with
  the CPU it was measured on. It is used only on the same CPU (model name, core count and the
  instruction sets the kernels use); a profile from another CPU is ignored with a warning,
  never used silently. A corrupt or stale file (bad JSON, another format version, an unknown
  variant, a by-ear variant judged on another version of its graph) is ignored the same way,
  and the next ``kokoro-lab tune`` replaces it; so is one whose variant needs the compiled
  kernel where that cannot be built (no compiler, say).
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import platformdirs

from .files import atomic_write, display_path

PROFILE_VERSION = 1
CONFIG_ENV = "KOKORO_LAB_CONFIG"
PROFILE_FILE = "tuning.json"
# CPU features the integer and bf16 kernels of ONNX Runtime dispatch on.
CPU_FEATURES = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8",
                "amx_bf16", "amx_tile", "asimddp", "i8mm", "bf16")


class TuningWarning(UserWarning):
    """A saved tuning profile was not used (another CPU, corrupt, or stale)."""


@dataclass(frozen=True)
class Tuning:
    """How the engine runs here: the generator graph variant and its session settings.

    ``threads``/``lanes`` of None keep the engine's defaults (every core; two lanes on a
    multi-core CPU). ``spinning=False`` lets idle intra-op threads sleep at once instead of
    spinning, which leaves the CPU to the browser sharing it. ``figures`` are what ``tune``
    measured (for reports); ``source`` says where the tuning came from.
    """

    variant: str = "released"
    threads: int | None = None
    lanes: int | None = None
    spinning: bool = True
    name: str = ""
    source: str = "built-in"
    figures: dict = field(default_factory=dict, compare=False)

    @property
    def label(self) -> str:
        """One line for the chart title and ``kokoro-lab doctor``."""
        settings = [self.variant]
        if self.threads:
            settings.append(f"{self.threads} threads")
        if self.lanes:
            settings.append(f"{self.lanes} lanes")
        if not self.spinning:
            settings.append("no spinning")
        return f"{self.name or 'tuning'} ({', '.join(settings)}; {self.source})"


OFF = Tuning(name="off", source="tuning='off': the released graph, plain settings")


def built_in() -> Tuning:
    """The safe choice with no measurement: the bit-identical GEMM rewrite on a CPU with AMX
    (where it was measured 1.96x faster), else the released graph; idle threads do not spin
    (the browser and the kernel share the cores: under load that was worth 1.5x)."""
    from .graphs.variants import has_amx

    variant = "matmul-exact" if has_amx() else "released"
    return Tuning(variant=variant, spinning=False, name="built-in",
                  source="built-in (no profile measured here)")


def cpu_fingerprint() -> dict:
    """What decides which kernels run fastest here: CPU model, cores, instruction sets."""
    model, flags = "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            key, _, value = line.partition(":")
            key = key.strip().lower()
            if key == "model name" and model == "unknown":
                model = value.strip()
            elif key in ("flags", "features") and not flags:
                flags = set(value.split())
    except OSError:
        import platform

        model = platform.processor() or platform.machine()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"model": model, "cores": cores,
            "features": sorted(f for f in CPU_FEATURES if f in flags)}


def config_dir() -> Path:
    override = os.environ.get(CONFIG_ENV)
    return Path(override) if override else Path(platformdirs.user_config_dir("kokoro-lab"))


def profile_path() -> Path:
    return config_dir() / PROFILE_FILE


def save_profile(tuning: Tuning, path: Path | None = None) -> Path:
    """Save ``tuning`` as this machine's profile (atomically), stamped with this CPU."""
    target = path or profile_path()
    data = {"version": PROFILE_VERSION, "cpu": cpu_fingerprint(), **_judged_on(tuning.variant),
            "tuning": {**asdict(tuning), "source": ""}}
    with atomic_write(target) as out:
        out.write(json.dumps(data, indent=1, sort_keys=True).encode())
    return target


def load_profile(path: Path | None = None, known_variants: tuple[str, ...] = ()) -> Tuning | None:
    """This machine's saved tuning, or None (no file; or a file that must not be trusted, with
    a :class:`TuningWarning` saying why)."""
    source = path or profile_path()
    if not source.is_file():
        return None
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
        fields = data["tuning"]
        tuning = Tuning(**{k: v for k, v in fields.items() if k != "source"},
                        source=f"profile {display_path(source)}")
    except (ValueError, KeyError, TypeError, OSError) as error:
        return _refuse(source, f"it is corrupt ({type(error).__name__}: {error})")
    if data.get("version") != PROFILE_VERSION:
        return _refuse(source, f"it has format version {data.get('version')!r}, this "
                               f"kokoro-lab reads {PROFILE_VERSION}")
    if data.get("cpu") != cpu_fingerprint():
        return _refuse(source, f"it was measured on another CPU ({data.get('cpu')}); this is "
                               f"{cpu_fingerprint()}")
    if known_variants and tuning.variant not in known_variants:
        return _refuse(source, f"its variant {tuning.variant!r} is not one this kokoro-lab "
                               f"builds ({', '.join(known_variants)})")
    judged_on = _judged_on(tuning.variant)
    stale = [key for key, value in judged_on.items() if data.get(key) != value]
    if stale:
        was = ", ".join(f"{key} {data.get(key)}" for key in stale)
        now = ", ".join(f"{key} {judged_on[key]}" for key in stale)
        return _refuse(source, f"its variant {tuning.variant!r} passed by ear on another version "
                               f"({was}) than this kokoro-lab builds ({now})")
    return tuning


def _judged_on(variant: str) -> dict:
    """What a variant's by-ear certificate holds for: the graph version, and the compiled
    kernel's source where it runs one (nothing for the bit-identical variants)."""
    from .graphs import native, variants

    if variant in variants.EXACT:
        return {}
    judged = {"graphs": variants.VARIANTS_VERSION}
    if variant in variants.NATIVE:
        judged["kernel"] = native.source_digest()
    return judged


def _runnable(tuning: Tuning) -> bool:
    """Whether a profile's variant can run here: one that needs the compiled kernel
    (:mod:`.graphs.native`) is refused, with a warning, where that cannot be built."""
    from .graphs import native, variants

    if tuning.variant not in variants.NATIVE:
        return True
    try:
        native.library_path()
    except native.NativeUnavailable as error:
        _refuse(Path(tuning.source.removeprefix("profile ")),
                f"its variant {tuning.variant!r} needs the fused kernel: {error}")
        return False
    return True


def _refuse(source: Path, why: str) -> None:
    warnings.warn(f"tuning profile {source} not used: {why}. Run `kokoro-lab tune` to measure "
                  "this machine again (the built-in tuning runs meanwhile).", TuningWarning,
                  stacklevel=3)
    return None


def resolve(tuning: str | Tuning | None, known_variants: tuple[str, ...] = ()) -> Tuning:
    """``"auto"``/None: the saved profile or :func:`built_in`; ``"off"``: :data:`OFF`; a
    :class:`Tuning` as given (its variant checked)."""
    if isinstance(tuning, Tuning):
        if known_variants and tuning.variant not in known_variants:
            raise ValueError(f"unknown graph variant {tuning.variant!r}; choose one of "
                             f"{', '.join(known_variants)}")
        return tuning
    if tuning == "off":
        return OFF
    if tuning in (None, "auto"):
        profile = load_profile(known_variants=known_variants)
        return profile if profile is not None and _runnable(profile) else built_in()
    raise ValueError(f"tuning must be 'auto', 'off' or a Tuning, got {tuning!r}")


__all__ = ["OFF", "PROFILE_VERSION", "Tuning", "TuningWarning", "config_dir",
           "built_in", "cpu_fingerprint", "load_profile", "profile_path", "resolve", "save_profile"]
