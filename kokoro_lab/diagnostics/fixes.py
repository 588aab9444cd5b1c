"""The fix texts every report and error message quotes (standard library only, so anything
may import them)."""

from __future__ import annotations

# kokoro-onnx requires the CPU `onnxruntime` wheel; `onnxruntime-gpu` writes the same module.
# Installed side by side the last one wins and pip still lists both, so the GPU build goes in
# alone: both removed, then the GPU wheel with the CUDA and cuDNN libraries from PyPI.
GPU_INSTALL = ("pip uninstall -y onnxruntime onnxruntime-gpu && "
               "pip install 'onnxruntime-gpu[cuda,cudnn]'")
GPU_HINT = (f"Install ONNX Runtime's GPU build in place of the CPU one: {GPU_INSTALL} "
            "(in a checkout: make setup GPU=1); `kokoro-lab doctor` checks the result.")
# onnxruntime-gpu up to 1.26.0 is built for CUDA 12, from 1.27.0 on for CUDA 13 (their PyPI
# `cuda` extras name nvidia-*-cu12 and CUDA 13 packages), which needs an NVIDIA driver >= 580.
LAST_CUDA12_RELEASE = "1.26.0"
# TensorRT's libraries are not on PyPI as wheels: tensorrt-cu1x-libs there is a placeholder
# that downloads the real wheel from NVIDIA's own index at install time.
TENSORRT_INSTALL = ("pip install --extra-index-url https://pypi.nvidia.com "
                    "'tensorrt-cu{cuda}-libs=={trt}.*' (or NVIDIA's TensorRT {trt} tarball, "
                    "its lib/ on LD_LIBRARY_PATH)")
FRONTEND_BUILD = "make frontend  (= cd extension && npm ci && npm run build; needs npm)"


def gpu_install_command(version: str | None = None, python: str | None = None) -> str:
    """The exact commands that put onnxruntime-gpu (``version``, or the newest) in alone."""
    pip = f"{python} -m pip" if python else "pip"
    pin = f"=={version}" if version else ""
    return (f"{pip} uninstall -y onnxruntime onnxruntime-gpu && "
            f"{pip} install 'onnxruntime-gpu[cuda,cudnn]{pin}'")
