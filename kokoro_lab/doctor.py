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

Three sections: **onnxruntime** (which distributions install the module and which one wrote its
files, providers compiled in versus usable here, the GPU, the CUDA/cuDNN/TensorRT libraries),
**assets** (the model and voice cache, hash-checked) and **notebook** (kernel, JupyterLab,
widgets, the built player, comms over kernel subshells). Facts are gathered first and judged by
pure functions, so the judgements are unit-tested on made-up facts.

Only the standard library is imported at module level: the engine can import the fix texts
(:data:`GPU_HINT`) without pulling anything in.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import hashlib
import html
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import types
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

OK, INFO, WARN, FAIL = "ok", "info", "warn", "fail"
STATUSES = (OK, INFO, WARN, FAIL)
GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")

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
# Fewer than this many ipykernel/JupyterLab releases: no kernel subshells / no comms over them.
SUBSHELL_IPYKERNEL = (7, 0)
SUBSHELL_JUPYTERLAB = (4, 4)


def gpu_install_command(version: str | None = None, python: str | None = None) -> str:
    """The exact commands that put onnxruntime-gpu (``version``, or the newest) in alone."""
    pip = f"{python} -m pip" if python else "pip"
    pin = f"=={version}" if version else ""
    return (f"{pip} uninstall -y onnxruntime onnxruntime-gpu && "
            f"{pip} install 'onnxruntime-gpu[cuda,cudnn]{pin}'")


# ---------------------------------------------------------------------------------------------
# the report


@dataclass(frozen=True)
class Check:
    """One finding: what was looked at, its status, what was found and the fix."""

    section: str
    name: str
    status: str
    detail: str
    fix: str = ""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {self.status!r}")


@dataclass
class Report:
    """Every check of one doctor run; renders as text, HTML (notebooks) or JSON."""

    checks: list[Check]

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.status == FAIL]

    @property
    def exit_code(self) -> int:
        """0 when nothing failed, 1 otherwise."""
        return 1 if self.failures else 0

    def counts(self) -> dict[str, int]:
        return {s: sum(c.status == s for c in self.checks) for s in STATUSES}

    def summary(self) -> str:
        counts = ", ".join(f"{n} {s}" for s, n in self.counts().items())
        verdict = "consistent" if not self.failures else "NOT consistent: see the fixes"
        return f"kokoro-lab doctor: {verdict} ({counts})"

    def as_dict(self) -> dict:
        return {"ok": not self.failures, "exit_code": self.exit_code, "counts": self.counts(),
                "checks": [asdict(c) for c in self.checks]}

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2)

    def text(self) -> str:
        """A terminal table: one line per check, its fix indented under it."""
        width = max(len(c.name) for c in self.checks) if self.checks else 0
        lines, section = [], None
        for c in self.checks:
            if c.section != section:
                section = c.section
                lines.append(f"\n{section}")
            mark = c.status.upper() if c.status == FAIL else c.status
            lines.append(f"  {mark:<5} {c.name:<{width}}  {c.detail}")
            if c.fix:
                lines.append(f"  {'':<5} {'':<{width}}  fix: {c.fix}")
        return "\n".join(lines).lstrip("\n") + "\n\n" + self.summary()

    __str__ = text

    def __repr__(self) -> str:
        return self.text()

    def _repr_html_(self) -> str:
        colours = {OK: "#1a7f37", INFO: "#57606a", WARN: "#9a6700", FAIL: "#cf222e"}
        rows = []
        for c in self.checks:
            fix = (f"<br><code>{html.escape(c.fix)}</code>" if c.fix else "")
            rows.append(
                f"<tr><td>{html.escape(c.section)}</td><td>{html.escape(c.name)}</td>"
                f"<td style='color:{colours[c.status]};font-weight:bold'>{c.status}</td>"
                f"<td style='text-align:left'>{html.escape(c.detail)}{fix}</td></tr>")
        return ("<table><thead><tr><th>section</th><th>check</th><th>status</th>"
                "<th style='text-align:left'>detail / fix</th></tr></thead><tbody>"
                + "".join(rows) + f"</tbody></table><p>{html.escape(self.summary())}</p>")


# ---------------------------------------------------------------------------------------------
# onnxruntime: facts


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
    import importlib.util

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


def cuda_sonames(cuda_version: str) -> list[str]:
    """Libraries ONNX Runtime's CUDA provider loads for a build targeting ``cuda_version``."""
    major = cuda_version.split(".")[0]
    # cublasLt before cublas (cublas links it); cuDNN 9 for every CUDA 12 and 13 build.
    return [f"libcudart.so.{major}", f"libcublasLt.so.{major}", f"libcublas.so.{major}",
            "libcurand.so.10", "libcudnn.so.9"]


def _library_dirs(cuda_major: str | None = None) -> list[Path]:
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


def _load_gpu_libraries(ort) -> tuple[dict[str, str | None], int | None,
                                       dict[str, str | None]]:
    """(CUDA libraries, TensorRT major, TensorRT libraries) of this build, each loaded."""
    from onnxruntime.capi import build_and_package_info as build

    compiled = ort.get_available_providers()
    cuda_version = getattr(build, "cuda_version", None)
    dirs = _library_dirs(cuda_version.split(".")[0] if cuda_version else None)
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

    cuda, _, trt = _load_gpu_libraries(ort)
    return {**cuda, **trt}


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
    facts.cuda_libs, facts.trt_major, facts.trt_libs = _load_gpu_libraries(ort)
    if probe_gpu and facts.gpu.visible:
        for provider, libs in (("CUDAExecutionProvider", facts.cuda_libs),
                               ("TensorrtExecutionProvider", {**facts.cuda_libs,
                                                              **facts.trt_libs})):
            if provider in facts.compiled and libs and all(libs.values()):
                facts.probes[provider] = probe(provider)
    return facts


# ---------------------------------------------------------------------------------------------
# onnxruntime: judgements


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


# ---------------------------------------------------------------------------------------------
# assets


def _expected_sha256(name: str, path: Path) -> str | None:
    """The hash a cache file must have: int8 a release constant, the others their stamp."""
    if name == "model int8":
        from .engine.assets import INT8_SHA256

        return INT8_SHA256
    stamp = path.with_suffix(".sha256")
    return stamp.read_text().strip() if stamp.is_file() else None


def asset_checks() -> list[Check]:
    """The model and voice cache, as ``kokoro-lab assets`` reports it, each file hash-checked."""
    from .engine import assets

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


# ---------------------------------------------------------------------------------------------
# notebook


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _release(version: str | None) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", version or "0")[:2])


def default_static_dir() -> Path:
    """Where the package serves the player's built front end from."""
    from .notebook.player import STATIC

    return STATIC


def default_source_dir() -> Path | None:
    """extension/src when running from a checkout, else None."""
    source = Path(__file__).resolve().parent.parent / "extension" / "src"
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
    try:
        built = static or default_static_dir()
    except ImportError as error:
        checks.append(Check("notebook", "player front end", FAIL,
                            f"the player does not import: {error}", checks[0].fix))
    else:
        # A front end pointed at elsewhere is compared with the source given with it, if any.
        checks.append(check_frontend(built, source if static else default_source_dir()))
    checks.append(check_subshells(versions["ipykernel"], versions["jupyterlab"]))
    return checks


# ---------------------------------------------------------------------------------------------
# entry points


def diagnose(*, probe_gpu: bool = True, static_dir: Path | None = None,
             source_dir: Path | None = None,
             facts: Callable[[], RuntimeFacts] | None = None) -> Report:
    """Run every check. ``static_dir``/``source_dir`` point the front-end check elsewhere and
    ``facts`` replaces the onnxruntime facts (both for tests)."""
    from . import __version__

    where = Path(__file__).resolve().parent.parent
    checkout = (where / "pyproject.toml").is_file()
    checks = [Check("kokoro-lab", "install", INFO,
                    f"kokoro-lab {__version__} on Python {sys.version.split()[0]} "
                    f"({sys.executable}); {'checkout ' + str(where) if checkout else 'installed'}")]
    checks += runtime_checks((facts or (lambda: runtime_facts(probe_gpu)))())
    checks += asset_checks()
    checks += notebook_checks(static_dir, source_dir)
    return Report(checks)


def doctor(*, probe_gpu: bool = True) -> Report:
    """Check this install; in a notebook the report renders as a table.

    ``report.exit_code`` is 0 when the install is consistent; each failed check carries the
    exact fix. ``probe_gpu=False`` skips starting CUDA/TensorRT on a tiny graph.
    """
    return diagnose(probe_gpu=probe_gpu)


class _CallableModule(types.ModuleType):
    """``kokoro_lab.doctor()`` works even after ``import kokoro_lab.doctor`` has made the
    package attribute this module rather than the function."""

    def __call__(self, *, probe_gpu: bool = True) -> Report:
        return doctor(probe_gpu=probe_gpu)


sys.modules[__name__].__class__ = _CallableModule


__all__ = ["FAIL", "GPU_HINT", "GPU_INSTALL", "INFO", "LAST_CUDA12_RELEASE", "OK", "WARN",
           "Check", "GpuFacts", "Report", "RuntimeFacts", "diagnose", "doctor",
           "gpu_install_command", "preload_gpu_libraries", "runtime_checks"]
