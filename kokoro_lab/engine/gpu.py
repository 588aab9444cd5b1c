"""GPU runtime libraries: load what ONNX Runtime's CUDA and TensorRT providers need, before a
session asks for them.

The rule: pip's CUDA, cuDNN and TensorRT wheels put their libraries in
``site-packages/nvidia/*/lib`` and ``tensorrt_libs``, which are not on the dynamic loader's
search path, so a GPU build of ONNX Runtime fails to load its provider and falls back to the
CPU (which :mod:`kokoro_lab.engine.sessions` refuses). Loading each library by its full path
first makes the provider's own ``dlopen`` find it already loaded, as
``onnxruntime.preload_dlls()`` does, but searching every folder of ``sys.path``. A CPU build
loads nothing. :mod:`kokoro_lab.diagnostics` reports what was found; the engine only loads.
"""

from __future__ import annotations

import contextlib
import ctypes
import re
import sys
from pathlib import Path


def cuda_sonames(cuda_version: str) -> list[str]:
    """Libraries ONNX Runtime's CUDA provider loads for a build targeting ``cuda_version``."""
    major = cuda_version.split(".")[0]
    # cublasLt before cublas (cublas links it); cuDNN 9 for every CUDA 12 and 13 build.
    return [f"libcudart.so.{major}", f"libcublasLt.so.{major}", f"libcublas.so.{major}",
            "libcurand.so.10", "libcudnn.so.9"]


def library_dirs(cuda_major: str | None = None) -> list[Path]:
    """Where pip puts NVIDIA's libraries: site-packages/nvidia/*/lib, tensorrt_libs.

    CUDA 13's wheels share one ``nvidia/cu13`` folder, CUDA 12's have one per component; both
    ship a ``libcurand.so.10``, so the folders of the build's own CUDA come first.
    """
    def rank(folder: Path) -> int:
        name = folder.parent.name
        if name == f"cu{cuda_major}":
            return 0
        return 2 if re.fullmatch(r"cu\d+", name) else 1

    dirs: list[Path] = []
    for entry in map(Path, sys.path):
        if entry.is_dir():
            dirs += sorted(entry.glob("nvidia/*/lib"), key=rank) + [entry / "tensorrt_libs"]
    return [d for d in dirs if d.is_dir()]


def load_library(soname: str, dirs: list[Path]) -> str | None:
    """Load ``soname`` from pip's NVIDIA folders or the system's search path; say from where.

    Loading it here is what ``onnxruntime.preload_dlls()`` does: the provider library's own
    search path does not include site-packages/nvidia, but finds a library already loaded.
    """
    for folder in dirs:
        candidate = folder / soname
        if candidate.is_file():
            with contextlib.suppress(OSError):
                ctypes.CDLL(str(candidate))
                return f"{folder.parent.name}/{folder.name} (pip)"
    try:
        ctypes.CDLL(soname)
    except OSError:
        return None
    return "system"


def tensorrt_major(capi: Path) -> int | None:
    """The TensorRT major version the build's TensorRT provider library links against."""
    provider = capi / "libonnxruntime_providers_tensorrt.so"
    if not provider.is_file():
        return None
    found = re.search(rb"libnvinfer\.so\.(\d+)", provider.read_bytes())
    return int(found.group(1)) if found else None


def load_gpu_libraries(ort) -> tuple[dict[str, str | None], int | None,
                                       dict[str, str | None]]:
    """(CUDA libraries, TensorRT major, TensorRT libraries) of this build, each loaded."""
    from onnxruntime.capi import build_and_package_info as build

    compiled = ort.get_available_providers()
    cuda_version = getattr(build, "cuda_version", None)
    dirs = library_dirs(cuda_version.split(".")[0] if cuda_version else None)
    cuda, trt_major, trt = {}, None, {}
    if "CUDAExecutionProvider" in compiled and cuda_version:
        cuda = {s: load_library(s, dirs) for s in cuda_sonames(cuda_version)}
    if "TensorrtExecutionProvider" in compiled:
        trt_major = tensorrt_major(Path(ort.__file__).parent / "capi")
        if trt_major:
            trt = {s: load_library(s, dirs) for s in (
                f"libnvinfer.so.{trt_major}", f"libnvinfer_plugin.so.{trt_major}",
                f"libnvonnxparser.so.{trt_major}")}
    return cuda, trt_major, trt


def preload_gpu_libraries() -> dict[str, str | None]:
    """Load the CUDA, cuDNN and TensorRT libraries this onnxruntime build needs: {soname: where
    it came from, or None when not found}.

    Call it before creating a CUDA or TensorRT session. Unlike ``onnxruntime.preload_dlls()``
    it looks in pip's NVIDIA folders in every folder of ``sys.path``, not only beside
    onnxruntime, so libraries installed in another environment on the path (a system image's,
    PYTHONPATH's) are found too. A CPU build loads nothing.
    """
    import onnxruntime as ort

    cuda, _, trt = load_gpu_libraries(ort)
    return {**cuda, **trt}
