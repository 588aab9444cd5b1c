"""``kokoro-lab doctor``: consistent installs exit 0, each inconsistency fails with its exact fix.

The onnxruntime judgements are unit-tested on made-up facts (GPU machines, both wheels, old
drivers); the real checks run the CLI on this venv, on this venv with a second (fake, metadata
only) ``onnxruntime-gpu`` distribution on the path, on a front end pointed at an empty folder,
and on a temporary copy of the cache with a corrupted file.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import kokoro_lab
from kokoro_lab.diagnostics import (
    FAIL,
    INFO,
    LAST_CUDA12_RELEASE,
    OK,
    WARN,
    Check,
    GpuFacts,
    Report,
    RuntimeFacts,
    asset_checks,
    diagnose,
    runtime_checks,
)
from kokoro_lab.diagnostics.environment import check_frontend, check_subshells
from kokoro_lab.diagnostics.report import STATUSES
from kokoro_lab.diagnostics.runtime import OWNER_FILES, OWNER_GLOB, probe, record_hash

ROOT = Path(__file__).resolve().parents[2]
PYTHON = "/venv/bin/python"
CUDA13_LIBS = {s: "cu13/lib (pip)" for s in (
    "libcudart.so.13", "libcublasLt.so.13", "libcublas.so.13", "libcurand.so.10",
    "libcudnn.so.9")}
H200 = GpuFacts(device_files=["/dev/nvidia0"], smi="NVIDIA H200, 580.65.06, 143771 MiB",
                driver_cuda=(13, 0), devices=1)


def gpu_build(**changes) -> RuntimeFacts:
    """A clean ``make setup GPU=1`` install, as the facts say it; ``changes`` alter it."""
    facts = RuntimeFacts(
        distributions={"onnxruntime-gpu": "1.31.1"}, owner="onnxruntime-gpu",
        owner_detail="its files match onnxruntime-gpu's RECORD", version="1.31.1",
        build_package="onnxruntime-gpu", cuda_version="13.0",
        compiled=["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
        cuda_libs=dict(CUDA13_LIBS), trt_major=10,
        trt_libs={"libnvinfer.so.10": None, "libnvinfer_plugin.so.10": None,
                  "libnvonnxparser.so.10": None},
        python=PYTHON)
    for name, value in changes.items():
        setattr(facts, name, value)
    return facts


def by_name(checks) -> dict:
    return {c.name: c for c in checks}


def by_name_json(checks) -> dict:
    return {c["name"]: c for c in checks}


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kokoro_lab.cli", "doctor", *args],
                          capture_output=True, text=True, timeout=120, cwd=ROOT,
                          env={**os.environ, **(env or {})})


# ---------------------------------------------------------------------------------------------
# onnxruntime judgements on made-up facts


def test_gpu_build_without_a_gpu_is_consistent_and_says_so():
    checks = by_name(runtime_checks(gpu_build()))
    assert Report(list(checks.values())).exit_code == 0
    providers = checks["providers"]
    assert providers.status == INFO
    assert "compiled in: tensorrt, cuda, cpu" in providers.detail
    assert "usable here: cpu" in providers.detail and "no GPU" in providers.detail
    assert "consistent" in providers.detail
    assert checks["GPU"].status == INFO
    assert checks["TensorRT libraries"].status == INFO  # nothing needs them without a GPU
    assert "pip check" in checks["module"].detail  # the expected complaint is explained


def test_both_wheels_fail_naming_onnxruntime_gpu_and_the_fix():
    facts = gpu_build(distributions={"onnxruntime-gpu": "1.31.1", "onnxruntime": "1.32.0"},
                      owner="onnxruntime", owner_detail="its files match onnxruntime's RECORD",
                      compiled=["CPUExecutionProvider"], cuda_version=None, cuda_libs={},
                      trt_major=None, trt_libs={}, build_package="onnxruntime")
    wheels = by_name(runtime_checks(facts))["wheels"]
    assert wheels.status == FAIL
    assert "onnxruntime-gpu 1.31.1" in wheels.detail and "onnxruntime 1.32.0" in wheels.detail
    assert "module's files are onnxruntime's" in wheels.detail
    assert wheels.fix == (f"{PYTHON} -m pip uninstall -y onnxruntime onnxruntime-gpu && "
                          f"{PYTHON} -m pip install 'onnxruntime-gpu[cuda,cudnn]==1.31.1'")


def test_other_accelerated_wheel_beside_the_cpu_one_keeps_the_accelerated_one():
    facts = gpu_build(distributions={"onnxruntime": "1.32.0", "onnxruntime-openvino": "1.22"},
                      owner=None, owner_detail="mixed")
    wheels = by_name(runtime_checks(facts))["wheels"]
    assert wheels.status == FAIL
    assert wheels.fix.endswith("-m pip install onnxruntime-openvino")


def test_files_of_no_single_wheel_or_no_import_fail_with_a_reinstall():
    mixed = by_name(runtime_checks(gpu_build(owner=None, owner_detail="mixed")))["module"]
    assert mixed.status == FAIL and "onnxruntime-gpu[cuda,cudnn]==1.31.1" in mixed.fix
    broken = runtime_checks(gpu_build(import_error="ImportError: no module capi"))
    assert [c.name for c in broken] == ["wheels", "module"]
    assert broken[1].status == FAIL and "uninstall -y onnxruntime onnxruntime-gpu" in broken[1].fix


def test_no_onnxruntime_at_all_fails():
    wheels = by_name(runtime_checks(gpu_build(distributions={}, owner=None)))["wheels"]
    assert wheels.status == FAIL and "pip install onnxruntime" in wheels.fix


def test_gpu_machine_with_the_cpu_build_warns_with_the_gpu_install():
    facts = gpu_build(distributions={"onnxruntime": "1.32.0"}, owner="onnxruntime",
                      compiled=["CPUExecutionProvider"], cuda_version=None, cuda_libs={},
                      trt_major=None, trt_libs={}, build_package="onnxruntime", gpu=H200)
    checks = by_name(runtime_checks(facts))
    assert checks["GPU"].status == WARN
    assert "onnxruntime-gpu[cuda,cudnn]" in checks["GPU"].fix
    assert Report(list(checks.values())).exit_code == 0


def test_gpu_machine_with_everything_runs_cuda_and_warns_about_tensorrt():
    facts = gpu_build(gpu=H200, probes={"CUDAExecutionProvider": None})
    checks = by_name(runtime_checks(facts))
    assert checks["GPU"].status == OK and "H200" in checks["GPU"].detail
    assert checks["providers"].status == OK
    assert "usable here: cuda, cpu" in checks["providers"].detail
    assert "tensorrt: libraries missing" in checks["providers"].detail
    trt = checks["TensorRT libraries"]
    assert trt.status == WARN and "tensorrt-cu13-libs==10.*" in trt.fix


def test_driver_older_than_the_build_fails_with_the_cuda12_release():
    facts = gpu_build(gpu=GpuFacts(smi="NVIDIA A100, 535.54, 81920 MiB", driver_cuda=(12, 2),
                                   devices=1))
    gpu = by_name(runtime_checks(facts))["GPU"]
    assert gpu.status == FAIL and "built for CUDA 13.0" in gpu.detail
    assert f"onnxruntime-gpu[cuda,cudnn]=={LAST_CUDA12_RELEASE}" in gpu.fix


def test_gpu_machine_missing_cuda_libraries_or_failing_to_start_cuda_fails():
    missing = dict(CUDA13_LIBS, **{"libcudnn.so.9": None})
    libs = by_name(runtime_checks(gpu_build(gpu=H200, cuda_libs=missing)))["CUDA libraries"]
    assert libs.status == FAIL and "libcudnn.so.9" in libs.detail
    assert libs.fix == f"{PYTHON} -m pip install 'onnxruntime-gpu[cuda,cudnn]==1.31.1'"
    failed = gpu_build(gpu=H200, probes={"CUDAExecutionProvider": "CUDA failure 35"})
    providers = by_name(runtime_checks(failed))["providers"]
    assert providers.status == FAIL and "CUDA failure 35" in providers.detail


def test_probe_starts_a_provider_on_a_one_node_graph():
    assert probe("CPUExecutionProvider") is None


def test_subshell_support_follows_the_versions():
    new = check_subshells("7.4.0", "4.6.6")
    assert "kernel subshells supported" in new.detail and "main thread" in new.detail
    old = check_subshells("6.29.5", "4.3.0")
    assert "no kernel subshells" in old.detail and "no comms over subshells" in old.detail


# ---------------------------------------------------------------------------------------------
# real checks


def test_doctor_on_this_venv_exits_0_with_a_status_per_check():
    done = run_cli("--json", "--no-probe")
    report = json.loads(done.stdout)
    assert done.returncode == 0, done.stdout
    assert report["ok"] and report["exit_code"] == 0
    assert all(c["status"] in STATUSES for c in report["checks"])
    names = {c["name"] for c in report["checks"]}
    assert {"wheels", "module", "GPU", "providers", "model int8", "voices", "player front end",
            "comms over subshells"} <= names


def site_with_onnxruntime(folder: Path, *, gpu_owns_files: bool, cpu_info: bool) -> dict:
    """A path folder holding this venv's onnxruntime module (a link) and an onnxruntime-gpu
    .dist-info (metadata only, not its 300 MB of files); ``gpu_owns_files``: its RECORD lists
    the module's files with their real hashes, as if it had written them; ``cpu_info``: the CPU
    wheel's .dist-info is there too. Returns the environment that puts it first on the path."""
    import onnxruntime

    installed = Path(onnxruntime.__file__).parent
    (folder / "onnxruntime").symlink_to(installed, target_is_directory=True)
    if cpu_info:
        info = next(installed.parent.glob("onnxruntime-*.dist-info"))
        shutil.copytree(info, folder / info.name)
    gpu = folder / "onnxruntime_gpu-1.31.1.dist-info"
    gpu.mkdir()
    (gpu / "METADATA").write_text("Metadata-Version: 2.1\nName: onnxruntime-gpu\n"
                                  "Version: 1.31.1\n")
    (gpu / "top_level.txt").write_text("onnxruntime\n")
    files = [folder / k for k in OWNER_FILES] + list(folder.glob(OWNER_GLOB))
    record = [f"{f.relative_to(folder).as_posix()},sha256="
              f"{record_hash(f) if gpu_owns_files else 'A' * 43},{f.stat().st_size}"
              for f in files]
    (gpu / "RECORD").write_text("\n".join(record) + "\n")
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(folder),
                                                       os.environ.get("PYTHONPATH")]))}


def test_a_second_onnxruntime_distribution_fails_the_cli(tmp_path):
    """The CPU wheel's files with onnxruntime-gpu installed over the same folder."""
    env = site_with_onnxruntime(tmp_path, gpu_owns_files=False, cpu_info=True)
    done = run_cli("--json", "--no-probe", env=env)
    assert done.returncode == 1, done.stdout
    checks = by_name_json(json.loads(done.stdout)["checks"])
    wheels = checks["wheels"]
    assert wheels["status"] == FAIL and "onnxruntime-gpu 1.31.1" in wheels["detail"]
    assert "module's files are onnxruntime's" in wheels["detail"]
    assert "pip uninstall -y onnxruntime onnxruntime-gpu" in wheels["fix"]
    assert "'onnxruntime-gpu[cuda,cudnn]==1.31.1'" in wheels["fix"]
    assert checks["module"]["status"] == OK


def test_a_shadowed_copy_in_a_later_path_folder_is_harmless(tmp_path):
    """onnxruntime-gpu first on the path and the CPU wheel in site-packages: the GPU machine's
    layout, where the system image already holds the CPU wheel."""
    env = site_with_onnxruntime(tmp_path, gpu_owns_files=True, cpu_info=False)
    done = run_cli("--json", "--no-probe", env=env)
    checks = by_name_json(json.loads(done.stdout)["checks"])
    assert checks["wheels"]["status"] == OK, checks["wheels"]
    assert "shadowed, so harmless: onnxruntime 1." in checks["wheels"]["detail"]
    assert "match onnxruntime-gpu's RECORD" in checks["module"]["detail"]


def test_missing_front_end_fails_with_the_npm_build(tmp_path):
    report = diagnose(probe_gpu=False, static_dir=tmp_path,
                      source_dir=ROOT / "extension" / "src")
    frontend = by_name(report.checks)["player front end"]
    assert frontend.status == FAIL and "player.js is missing" in frontend.detail
    assert "npm ci" in frontend.fix and "npm run build" in frontend.fix
    assert report.exit_code == 1


def test_front_end_older_than_its_source_warns(tmp_path):
    static, source = tmp_path / "static", tmp_path / "src"
    static.mkdir()
    source.mkdir()
    (static / "player.js").write_text("built")
    (source / "audio.js").write_text("edited after the build")
    os.utime(static / "player.js", (1_000_000, 1_000_000))
    stale = check_frontend(static, source)
    assert stale.status == WARN and "audio.js" in stale.detail and "make frontend" in stale.fix
    assert check_frontend(static, None).status == OK


def test_corrupt_cache_file_fails_with_its_removal_and_rebuild(tmp_path, monkeypatch):
    from kokoro_lab import assets

    voices = assets.voices_path()  # the real cache (built by make setup)
    cache = tmp_path / "cache"
    cache.mkdir()
    copy = cache / voices.name
    shutil.copyfile(voices, copy)
    shutil.copyfile(voices.with_suffix(".sha256"), copy.with_suffix(".sha256"))
    monkeypatch.setenv("KOKORO_LAB_CACHE", str(cache))
    monkeypatch.delenv("KOKORO_LAB_VOICES", raising=False)
    assert by_name(asset_checks())["voices"].status == OK

    with open(copy, "r+b") as damaged:  # one byte flipped in the middle
        damaged.seek(copy.stat().st_size // 2)
        byte = damaged.read(1)
        damaged.seek(-1, os.SEEK_CUR)
        damaged.write(bytes([byte[0] ^ 0xFF]))
    checks = by_name(asset_checks())
    assert checks["voices"].status == FAIL and "does not match" in checks["voices"].detail
    assert checks["voices"].fix == (f"rm -f '{copy}' '{copy.with_suffix('.sha256')}' && "
                                    "kokoro-lab assets --build")
    assert checks["model int8"].status == WARN  # not in this cache: built on first use
    assert Report(list(checks.values())).exit_code == 1


def test_kokoro_lab_doctor_is_callable_and_renders_a_table():
    report = kokoro_lab.doctor(probe_gpu=False)
    assert isinstance(report, Report)
    assert report.checks
    page = report._repr_html_()
    assert page.startswith("<table>") and "providers" in page
    assert "kokoro-lab doctor:" in report.text()


def test_a_check_refuses_an_unknown_status():
    with pytest.raises(ValueError, match="status must be one of"):
        Check("x", "y", "great", "detail")
    assert OK in STATUSES and INFO in STATUSES


# ---------------------------------------------------------------------------------------------
# the GPU measurement script (benchmarks/gpu_matrix.py)


def load_gpu_matrix():
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_matrix", ROOT / "benchmarks" /
                                                  "gpu_matrix.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="a GPU machine")
def test_gpu_matrix_without_a_gpu_exits_2_before_installing_anything():
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_matrix.py")],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 2
    assert "no NVIDIA GPU visible" in done.stderr and "--allow-cpu" in done.stderr
    assert "Traceback" not in done.stderr


def test_gpu_matrix_judges_the_targets_on_the_best_gpu_cells():
    gpu_matrix = load_gpu_matrix()
    matrix = [{"provider": "cuda", "precision": "fp32", "first_audio_ms": 41.0, "rtf": 0.03},
              {"provider": "cuda", "precision": "fp16", "first_audio_ms": 35.0, "rtf": 0.018},
              {"provider": "cpu", "precision": "int8", "first_audio_ms": 9.0, "rtf": 0.3}]
    placement = [{"cell": "cuda/fp16", "vocoder_nodes_on_cpu": 1},
                 {"cell": "cuda/int8", "vocoder_nodes_on_cpu": 40}]  # int8: by design
    targets = gpu_matrix.judge_targets({"matrix": matrix, "placement": placement})
    assert targets["first_audible_ms<=50"] == {"value": 35.0, "cell": "cuda/fp16", "met": True}
    assert targets["rtf<=0.02"]["met"] is True
    assert targets["fp16>=1.5x_fp32"]["value"] == pytest.approx(0.03 / 0.018)
    assert targets["fp16>=1.5x_fp32"]["met"] is True
    assert targets["no_vocoder_node_on_cpu"] == {"value": 1, "cell": None, "met": False}
    nothing = gpu_matrix.judge_targets({"matrix": matrix[2:]})
    assert all(row["met"] is None for row in nothing.values())  # CPU only: not measured


def test_gpu_matrix_bundle_parts_are_even_and_carry_no_machine_paths(tmp_path, monkeypatch):
    gpu_matrix = load_gpu_matrix()
    import gpu_bundle  # beside gpu_matrix, which put its folder on the path

    monkeypatch.setattr(gpu_bundle, "CARRY", tmp_path)
    bundle = tmp_path / "bundle.tar"
    bundle.write_bytes(bytes(range(256)) * 1000)  # 256 000 bytes
    parts = gpu_bundle._split(bundle, 100_000)
    assert [p["bytes"] for p in parts] == [85_334, 85_334, 85_332]
    assert b"".join((tmp_path / p["name"]).read_bytes() for p in parts) == \
        bytes(range(256)) * 1000
    assert gpu_matrix._portable({"x": ["lib in /opt/torch/.venv/lib/site-packages now"]}) == \
        {"x": ["lib in …/site-packages now"]}
