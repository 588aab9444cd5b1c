"""The onnxruntime section: which wheels install the module and which one wrote its files,
providers compiled in versus usable here, the GPU, the CUDA/cuDNN/TensorRT libraries.

Facts are gathered first (:func:`runtime_facts`) and judged by pure functions
(:func:`runtime_checks`), so the judgements are unit-tested on made-up facts.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import hashlib
import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..engine.gpu import load_gpu_libraries
from .fixes import LAST_CUDA12_RELEASE, TENSORRT_INSTALL, gpu_install_command
from .report import FAIL, INFO, OK, WARN, Check

GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")


# -- facts ------------------------------------------------------------------------------------
@dataclass
class GpuFacts:
    """What the machine shows of an NVIDIA GPU."""

    device_files: list[str] = field(default_factory=list)  # /dev/nvidia0, …
    smi: str | None = None  # nvidia-smi's "name, driver, memory" line(s)
    driver_cuda: tuple[int, int] | None = None  # newest CUDA the driver supports
    devices: int | None = None  # cuDeviceGetCount, when libcuda.so.1 loaded and cuInit worked
    driver_error: str | None = None  # why the driver library gave no answer

    @property
    def visible(self) -> bool:
        return bool(self.devices) if self.devices is not None else bool(self.smi)

    def describe(self) -> str:
        if self.visible:
            cuda = (f", driver supports CUDA ≤ {self.driver_cuda[0]}.{self.driver_cuda[1]}"
                    if self.driver_cuda else "")
            return f"{self.smi or f'{self.devices} device(s)'}{cuda}"
        seen = ", ".join(self.device_files) or "no /dev/nvidia*"
        return f"no GPU visible ({seen}; {self.driver_error or 'no nvidia-smi'})"


@dataclass
class RuntimeFacts:
    """Everything the onnxruntime checks judge; gathered by :func:`runtime_facts`."""

    distributions: dict[str, str]  # dists that installed the imported module: name → version
    owner: str | None  # the dist whose RECORD matches the module's files on disk
    owner_detail: str  # how ownership was decided, or what is mixed
    version: str | None = None  # onnxruntime.__version__ (None: the module does not import)
    import_error: str | None = None
    build_package: str | None = None  # build_and_package_info.package_name
    cuda_version: str | None = None  # the CUDA the build targets ("13.0")
    compiled: list[str] = field(default_factory=list)  # get_available_providers()
    gpu: GpuFacts = field(default_factory=GpuFacts)
    cuda_libs: dict[str, str | None] = field(default_factory=dict)  # soname → where or None
    trt_major: int | None = None
    trt_libs: dict[str, str | None] = field(default_factory=dict)
    probes: dict[str, str | None] = field(default_factory=dict)  # provider → error or None
    python: str = sys.executable
    shadowed: list[str] = field(default_factory=list)  # same module in a later path folder

MODULE = "onnxruntime"
# The files that decide which wheel wrote the module: the compiled core and the build label.
OWNER_FILES = ("onnxruntime/capi/build_and_package_info.py", "onnxruntime/__init__.py")
OWNER_GLOB = "onnxruntime/capi/onnxruntime_pybind11_state*"


def module_distributions(root: Path | None) -> tuple[dict[str, str], list[str]]:
    """Distributions that install the ``onnxruntime`` module: ``({name: version}`` of those in
    ``root``, where the module is imported from, ``[name version (folder)]`` of those in other
    folders of the path, which the first one shadows``)``."""
    names = importlib.metadata.packages_distributions().get(MODULE, [])
    here: dict[str, str] = {}
    shadowed: list[str] = []
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name not in names:
            continue
        folder = Path(dist.locate_file("")).resolve()
        if root is None or folder == root.resolve():
            here.setdefault(name, dist.version)
        else:
            shadowed.append(f"{name} {dist.version} ({folder})")
    return here, shadowed


def record_hash(path: Path) -> str:
    """A file's hash as pip's RECORD writes it (urlsafe base64 sha256, no padding)."""
    digest = hashlib.sha256(path.read_bytes()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def module_root() -> Path | None:
    """The folder the ``onnxruntime`` module is imported from (its parent), without importing."""


    spec = importlib.util.find_spec(MODULE)
    return Path(spec.origin).parent.parent if spec and spec.origin else None


def module_owner(names: list[str], root: Path | None) -> tuple[str | None, str]:
    """Which of the distributions ``names`` wrote the module's key files under ``root``.

    A file belongs to the wheels whose RECORD lists it with the hash it has on disk; the
    owner is the one wheel every key file belongs to.
    """
    if root is None:
        return None, "the onnxruntime module is not importable"
    records = {name: {str(f).replace(os.sep, "/"): f.hash.value
                      for f in importlib.metadata.distribution(name).files or ()
                      if f.hash and str(f).startswith(MODULE + "/")}
               for name in names}
    keys = [k for k in OWNER_FILES if (root / k).is_file()]
    keys += [str(p.relative_to(root)).replace(os.sep, "/") for p in root.glob(OWNER_GLOB)]
    if not keys:
        return None, f"no onnxruntime files under {root}"
    owners = {}
    for key in keys:
        actual = record_hash(root / key)
        owners[key] = [n for n, files in records.items() if files.get(key) == actual]
    common = set(names).intersection(*owners.values())
    if common:
        owner = sorted(common)[0]
        return owner, f"its files match {owner}'s RECORD"
    mixed = "; ".join(f"{Path(k).name} from {', '.join(v) or 'no installed wheel'}"
                      for k, v in owners.items())
    return None, f"its files are not one wheel's: {mixed}"


def gpu_facts() -> GpuFacts:
    """Device files, nvidia-smi and the driver library, each read if present."""
    facts = GpuFacts(device_files=sorted(str(p) for p in Path("/dev").glob("nvidia[0-9]*")))
    smi = shutil.which("nvidia-smi")
    if smi:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            done = subprocess.run(
                [smi, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                capture_output=True, text=True, timeout=20)
            if done.returncode == 0 and done.stdout.strip():
                facts.smi = "; ".join(done.stdout.strip().splitlines())
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        facts.driver_error = "no NVIDIA driver library libcuda.so.1"
        return facts
    version, count = ctypes.c_int(0), ctypes.c_int(0)
    if cuda.cuDriverGetVersion(ctypes.byref(version)) == 0:
        facts.driver_cuda = (version.value // 1000, version.value % 1000 // 10)
    status = cuda.cuInit(0)
    if status == 0 and cuda.cuDeviceGetCount(ctypes.byref(count)) == 0:
        facts.devices = count.value
    else:
        facts.driver_error = f"the driver library found no usable device (cuInit error {status})"
    return facts


def probe(provider: str) -> str | None:
    """Start ``provider`` on a one-node graph: None when it ran there, else why not."""
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "x"], ["y"])], "probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = min(model.ir_version, 9)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(model.SerializeToString(), options,
                                       providers=list(dict.fromkeys(
                                           [provider, "CPUExecutionProvider"])))
        session.run(None, {"x": np.ones((1, 4), np.float32)})
    except Exception as error:  # any failure to start is the finding itself
        return f"{type(error).__name__}: {str(error)[:300]}"
    if provider not in session.get_providers():
        return f"ONNX Runtime fell back to {session.get_providers()}"
    return None


def runtime_facts(probe_gpu: bool = True) -> RuntimeFacts:
    """Gather the onnxruntime facts of this Python environment and machine."""
    root = module_root()
    dists, shadowed = module_distributions(root)
    owner, how = module_owner(list(dists), root) if dists else (
        None, "no distribution installs it")
    facts = RuntimeFacts(distributions=dists, owner=owner, owner_detail=how, shadowed=shadowed)
    try:
        import onnxruntime as ort
        from onnxruntime.capi import build_and_package_info as build
    except Exception as error:  # a half-removed module fails in many ways
        facts.import_error = f"{type(error).__name__}: {error}"
        return facts
    facts.version = ort.__version__
    facts.build_package = getattr(build, "package_name", None)
    facts.cuda_version = getattr(build, "cuda_version", None) or None
    facts.compiled = [p for p in ort.get_available_providers() if p != "AzureExecutionProvider"]
    facts.gpu = gpu_facts()
    facts.cuda_libs, facts.trt_major, facts.trt_libs = load_gpu_libraries(ort)
    if probe_gpu and facts.gpu.visible:
        for provider, libs in (("CUDAExecutionProvider", facts.cuda_libs),
                               ("TensorrtExecutionProvider", {**facts.cuda_libs,
                                                              **facts.trt_libs})):
            if provider in facts.compiled and libs and all(libs.values()):
                facts.probes[provider] = probe(provider)
    return facts


# -- judgements -------------------------------------------------------------------------------
def _short(provider: str) -> str:
    return provider.removesuffix("ExecutionProvider").lower()


def _listing(dists: dict[str, str]) -> str:
    return " and ".join(f"{n} {v}" for n, v in dists.items())


def check_distributions(facts: RuntimeFacts) -> Check:
    """One distribution may install the ``onnxruntime`` module; two is the classic GPU trap."""
    dists, python = facts.distributions, facts.python
    name = "wheels"
    if not dists:
        return Check(MODULE, name, FAIL, "no distribution installs the onnxruntime module",
                     f"{python} -m pip install onnxruntime   (GPU: "
                     f"{gpu_install_command(python=python)})")
    if len(dists) == 1:
        others = (f"; shadowed, so harmless: {', '.join(facts.shadowed)}" if facts.shadowed
                  else "")
        return Check(MODULE, name, OK,
                     f"{_listing(dists)} (the only one installing the module here{others})")
    written = (f"the module's files are {facts.owner}'s" if facts.owner
               else f"the module is a mix ({facts.owner_detail})")
    every, others = ("both", "other's") if len(dists) == 2 else ("all", "others'")
    detail = (f"{_listing(dists)} {every} install the onnxruntime module: the last installed "
              f"overwrote the {others} files ({written})")
    if "onnxruntime-gpu" in dists:
        fix = gpu_install_command(dists["onnxruntime-gpu"], python)
    else:
        keep = next((n for n in dists if n != MODULE), MODULE)
        fix = (f"{python} -m pip uninstall -y {' '.join(dists)} && "
               f"{python} -m pip install {keep}")
    return Check(MODULE, name, FAIL, detail, fix)


def check_module(facts: RuntimeFacts) -> Check:
    """The module imports, and its files are those of one installed wheel."""
    name = "module"
    if facts.import_error:
        return Check(MODULE, name, FAIL, f"import onnxruntime fails: {facts.import_error}",
                     _reinstall(facts))
    gpu = "onnxruntime-gpu" in (facts.owner, facts.build_package)
    kind = f"GPU build for CUDA {facts.cuda_version}" if facts.cuda_version else (
        "GPU build" if gpu else "CPU build")
    detail = f"onnxruntime {facts.version}, {kind}; {facts.owner_detail}"
    if not facts.distributions:
        return Check(MODULE, name, INFO, detail)
    if facts.owner is None:
        return Check(MODULE, name, FAIL, detail + ": damaged by another wheel",
                     _reinstall(facts))
    if facts.owner == "onnxruntime-gpu":
        detail += (" (`pip check` says kokoro-onnx requires onnxruntime: expected, it runs on "
                   "this build; do not pip install onnxruntime)")
    return Check(MODULE, name, OK, detail)


def _reinstall(facts: RuntimeFacts) -> str:
    if "onnxruntime-gpu" in facts.distributions:
        return gpu_install_command(facts.distributions["onnxruntime-gpu"], facts.python)
    python = facts.python
    return (f"{python} -m pip uninstall -y onnxruntime && "
            f"{python} -m pip install onnxruntime")


def check_gpu(facts: RuntimeFacts) -> Check:
    """Is a GPU visible, and can its driver run what this build was compiled for?"""
    gpu = facts.gpu
    if not gpu.visible:
        return Check(MODULE, "GPU", INFO, gpu.describe())
    if facts.cuda_version and gpu.driver_cuda:
        build = int(facts.cuda_version.split(".")[0])
        if gpu.driver_cuda[0] < build:
            return Check(
                MODULE, "GPU", FAIL,
                f"{gpu.describe()}, but this onnxruntime is built for CUDA {facts.cuda_version}",
                f"{gpu_install_command(LAST_CUDA12_RELEASE, facts.python)}   (the last CUDA 12 "
                f"build; or make setup GPU=1 ORT_GPU_VERSION={LAST_CUDA12_RELEASE}; or update "
                "the NVIDIA driver)")
    if "CUDAExecutionProvider" not in facts.compiled:
        return Check(MODULE, "GPU", WARN, f"{gpu.describe()}, but this is a CPU-only build",
                     gpu_install_command(python=facts.python))
    return Check(MODULE, "GPU", OK, gpu.describe())


def _libraries_check(name: str, libs: dict[str, str | None], gpu: bool, fix: str) -> Check:
    found = ", ".join(f"{s} ← {where}" for s, where in libs.items() if where)
    missing = [s for s, where in libs.items() if not where]
    if not missing:
        return Check(MODULE, name, OK, found)
    detail = f"missing {', '.join(missing)}" + (f"; found {found}" if found else "")
    if not gpu:
        return Check(MODULE, name, INFO, detail + " (no GPU here, so nothing needs them)", fix)
    return Check(MODULE, name, FAIL if name == "CUDA libraries" else WARN, detail, fix)


def check_cuda_libraries(facts: RuntimeFacts) -> Check | None:
    if not facts.cuda_libs:
        return None
    version = facts.distributions.get("onnxruntime-gpu")
    fix = (f"{facts.python} -m pip install 'onnxruntime-gpu[cuda,cudnn]"
           f"{'==' + version if version else ''}'")
    return _libraries_check("CUDA libraries", facts.cuda_libs, facts.gpu.visible, fix)


def check_tensorrt_libraries(facts: RuntimeFacts) -> Check | None:
    if "TensorrtExecutionProvider" not in facts.compiled or not facts.trt_major:
        return None
    cuda = (facts.cuda_version or "12").split(".")[0]
    fix = TENSORRT_INSTALL.format(cuda=cuda, trt=facts.trt_major)
    return _libraries_check("TensorRT libraries", facts.trt_libs, facts.gpu.visible, fix)


def check_providers(facts: RuntimeFacts) -> Check:
    """Providers compiled in versus usable here, and why each GPU one is not."""
    compiled, why_not = list(facts.compiled), {}
    for provider in (p for p in GPU_PROVIDERS if p in compiled):
        libs = facts.cuda_libs if provider == "CUDAExecutionProvider" else {
            **facts.cuda_libs, **facts.trt_libs}
        if not facts.gpu.visible:
            why_not[provider] = "no GPU"
        elif not libs or not all(libs.values()):
            why_not[provider] = "libraries missing"
        elif facts.probes.get(provider):
            why_not[provider] = f"did not start: {facts.probes[provider]}"
    usable = [p for p in compiled if p not in why_not]
    detail = (f"compiled in: {', '.join(map(_short, compiled)) or 'none'}; usable here: "
              f"{', '.join(map(_short, usable)) or 'none'}")
    if why_not:
        detail += " (" + "; ".join(f"{_short(p)}: {w}" for p, w in why_not.items()) + ")"
    if why_not and not facts.gpu.visible:
        return Check(MODULE, "providers", INFO, detail + ". A GPU build on a machine without a "
                     "GPU is consistent: the same install runs CUDA where there is one.")
    started_badly = [p for p, w in why_not.items() if w.startswith("did not start")]
    if started_badly:
        return Check(MODULE, "providers", FAIL, detail,
                     "check the driver (nvidia-smi) and that the CUDA/cuDNN libraries above "
                     "match the build's CUDA version")
    return Check(MODULE, "providers", OK, detail)


def runtime_checks(facts: RuntimeFacts) -> list[Check]:
    """Judge the onnxruntime facts (pure: unit-tested on made-up facts)."""
    checks = [check_distributions(facts), check_module(facts)]
    if facts.import_error:
        return checks
    checks.append(check_gpu(facts))
    checks += [c for c in (check_cuda_libraries(facts), check_tensorrt_libraries(facts)) if c]
    checks.append(check_providers(facts))
    return checks

