"""The vocoder's fused kernel, ``kokoro_lab.SnakeQuantize`` (and its time-major form), compiled
on this machine.

The rule: the kernel (``snake_quantize.cc``, what it computes is said there) is an ONNX Runtime
custom-op library, built on first use by the machine's C++ compiler against ONNX Runtime's C API
headers and cached under a hash of everything that went into it (source, headers, compiler,
flags, CPU). Nothing compiled is shipped or committed.

* The headers are not in the ``onnxruntime`` wheel or on npm; Debian's ``libonnxruntime-dev``
  package carries them. Its ``.deb`` is fetched from the Debian archive (sha256 checked, like the
  model parts) and the five headers the kernel includes are kept. The C API is versioned and
  backward compatible: a library built against 1.21's headers asks the runtime for API 21, which
  every later ONNX Runtime serves. ``$KOKORO_LAB_ORT_HEADERS`` names a folder of one's own.
* ``-march=native``: the library is built for, and cached per, the CPU it runs on, as the tuning
  profile that picks it is.
* What cannot be built (no compiler, no network for the headers, a compile error) raises
  :class:`NativeUnavailable` saying why; ``kokoro-lab tune`` lists the variant as not built and
  the engine never uses a graph it cannot run.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import os
import platform
import shutil
import subprocess
import tarfile
import tempfile
import threading
import urllib.request
from pathlib import Path

from ...files import AssetError, atomic_write

SOURCE = Path(__file__).with_name("snake_quantize.cc")
DOMAIN = "kokoro_lab"
OP = "SnakeQuantize"
OP_TIME_MAJOR = "SnakeQuantizeTimeMajor"  # the same, reading x time-major
HEADERS_ENV = "KOKORO_LAB_ORT_HEADERS"
HEADERS_DEB = ("https://deb.debian.org/debian/pool/main/o/onnxruntime/"
               "libonnxruntime-dev_1.21.0+dfsg-1_amd64.deb")
HEADERS_DEB_SHA256 = "14f7d959d5deacbcf1504830d4189f91fc67382b399ed9ae9d3aa9c4050ced08"
HEADERS_FOLDER = "ort-headers-1.21.0"
HEADERS = ("onnxruntime_c_api.h", "onnxruntime_cxx_api.h", "onnxruntime_cxx_inline.h",
           "onnxruntime_float16.h", "onnxruntime_lite_custom_op.h")
# No -ffast-math: the kernel rounds half to even as ONNX does, and fast-math may reassociate it.
FLAGS = ("-O3", "-march=native", "-fno-math-errno", "-std=c++17", "-shared", "-fPIC",
         "-fvisibility=hidden")

_lock = threading.Lock()
KEPT_BUILDS = 4  # compiled libraries kept in the cache, the newest first (see _prune)


class NativeUnavailable(AssetError):
    """The fused kernel cannot be built on this machine (the message says why)."""


def library_path() -> Path:
    """The compiled custom-op library, built and cached on first use."""
    from ...assets import cache_dir

    with _lock:
        headers = _headers(cache_dir() / HEADERS_FOLDER)
        compiler = _compiler()
        target = _target(headers, compiler)
        if not target.is_file():
            _compile(compiler, headers, target)
        with contextlib.suppress(OSError):  # a read-only cache still serves its builds
            os.utime(target)  # used now: _prune keeps the builds last used
        return target


def source_digest() -> str:
    """A hash of the kernel's source: what a by-ear certificate of its variant was judged on."""
    return hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:16]


def describe() -> str:
    """Where the library stands here, building nothing (for ``kokoro-lab doctor``); raises
    :class:`NativeUnavailable` where it could not be built."""
    from ...assets import cache_dir
    from ...files import display_path

    compiler = _compiler()
    own = os.environ.get(HEADERS_ENV)
    headers = Path(own) if own else cache_dir() / HEADERS_FOLDER
    if all((headers / h).is_file() for h in HEADERS):
        target = _target(headers, compiler)
        if target.is_file():
            return f"built: {display_path(target)}"
    return (f"not built yet: built on first use ({Path(compiler).name}; ONNX Runtime's headers "
            "from Debian's libonnxruntime-dev)")


def _target(headers: Path, compiler: str) -> Path:
    """The cache file for this source, these headers, compiler, flags and CPU."""
    from ...assets import cache_dir

    key = hashlib.sha256()
    for part in (SOURCE.read_bytes(), *(Path(headers, h).read_bytes() for h in HEADERS),
                 _version(compiler).encode(), " ".join(FLAGS).encode(), _cpu().encode()):
        key.update(hashlib.sha256(part).digest())
    return cache_dir() / "native" / f"snake_quantize-{key.hexdigest()[:16]}.so"


def _compiler() -> str:
    compiler = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if not compiler:
        raise NativeUnavailable("no C++ compiler (set CXX, or install g++) to build the fused "
                                "vocoder kernel")
    return compiler


@functools.cache  # a subprocess: asked again by every profile check and session made
def _version(compiler: str) -> str:
    return subprocess.run([compiler, "--version"], capture_output=True, text=True).stdout


def _cpu() -> str:
    """What -march=native compiles for: the CPU's model and feature flags."""
    try:
        lines = Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines()
    except OSError:
        return platform.machine() + platform.processor()
    wanted = ("model name", "flags", "Features", "CPU part")
    return repr(sorted({line for line in lines if line.split(":", 1)[0].strip() in wanted}))


def _compile(compiler: str, headers: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        built = Path(scratch) / target.name
        done = subprocess.run([compiler, *FLAGS, f"-I{headers}", str(SOURCE), "-o", str(built)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise NativeUnavailable(f"compiling the fused vocoder kernel failed "
                                    f"({compiler}):\n{done.stderr[-2000:]}")
        os.replace(built, target)
    _prune(target.parent, keep=target)


def _prune(folder: Path, keep: Path) -> None:
    """Delete all but the :data:`KEPT_BUILDS` builds last used in ``folder`` (always ``keep``):
    each source, header, compiler or CPU change makes a new one. A few stay for caches shared
    by machines or checkouts that differ; a build another process has loaded stays mapped, and
    one another process deletes first, or a cache we may not write, is left alone."""
    builds = []
    for path in folder.glob("snake_quantize-*.so"):
        with contextlib.suppress(OSError):
            if path != keep:
                builds.append((path.stat().st_mtime, path))
    for _, stale in sorted(builds, reverse=True)[KEPT_BUILDS - 1:]:
        with contextlib.suppress(OSError):
            stale.unlink()


def _headers(folder: Path) -> Path:
    """ONNX Runtime's C/C++ API headers: ``$KOKORO_LAB_ORT_HEADERS``, or Debian's package."""
    own = os.environ.get(HEADERS_ENV)
    if own:
        missing = [h for h in HEADERS if not Path(own, h).is_file()]
        if missing:
            raise NativeUnavailable(f"${HEADERS_ENV}={own} lacks {', '.join(missing)}")
        return Path(own)
    if all((folder / h).is_file() for h in HEADERS):
        return folder
    package = _download(HEADERS_DEB)
    if hashlib.sha256(package).hexdigest() != HEADERS_DEB_SHA256:
        raise NativeUnavailable(f"{HEADERS_DEB} does not have the expected sha256")
    with tarfile.open(fileobj=io.BytesIO(_deb_member(package, "data.tar.xz"))) as data:
        for name in HEADERS:
            member = data.extractfile(f"./usr/include/onnxruntime/{name}")
            with atomic_write(folder / name) as out:
                out.write(member.read())
    return folder


def _download(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return response.read()
    except OSError as error:
        raise NativeUnavailable(f"could not fetch ONNX Runtime's C API headers from {url} "
                                f"({error}); set ${HEADERS_ENV} to a folder holding "
                                f"{', '.join(HEADERS)}") from error


def _deb_member(package: bytes, name: str) -> bytes:
    """One member of a ``.deb`` (an ``ar`` archive: 8-byte magic, then 60-byte headers)."""
    if not package.startswith(b"!<arch>\n"):
        raise NativeUnavailable("the headers package is not a Debian archive")
    offset = 8
    while offset + 60 <= len(package):
        header = package[offset:offset + 60]
        member, size = header[:16].decode().strip().rstrip("/"), int(header[48:58])
        if member == name:
            return package[offset + 60:offset + 60 + size]
        offset += 60 + size + size % 2  # members are padded to an even length
    raise NativeUnavailable(f"the headers package has no {name}")


__all__ = ["DOMAIN", "HEADERS_ENV", "NativeUnavailable", "OP", "describe", "library_path"]
