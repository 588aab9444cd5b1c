"""What the Studio's pickers offer: the voices, grouped and labelled, and only the providers
and precisions this machine can run, with the reason each missing one is missing.
"""

from __future__ import annotations

import html
import importlib.metadata
import importlib.util
import os
import sys

import numpy as np

from ...engine import assets
from ...engine.sessions import available_providers
from ...engine.voices import GENDERS, LANGUAGES, Voice, describe_voice

# Providers worth explaining when absent, with the package or platform each needs.
_EXPLAINED_PROVIDERS = ("cuda", "tensorrt", "rocm", "openvino", "coreml", "directml")


def stock_voices() -> list[str]:
    """Names of the stock voices in the voices file, without loading a model."""
    with np.load(assets.voices_path()) as data:
        return sorted(data.files)


def voice_label(name: str) -> str:
    """``"af_heart"`` → ``"American English · female · Heart (af_heart)"``."""
    info = describe_voice(name)
    return f"{info['language']} · {info['gender']} · {info['display']} ({name})"


def blend_label(spec: Voice) -> str:
    parts = " + ".join(f"{describe_voice(n)['display']} {w:.0%}" for n, w in spec.parts)
    return f"Blend · {spec.name or spec.label} ({parts})"


def voice_options(names: list[str], blends: tuple[Voice, ...] | list[Voice] = ()) -> list:
    """Dropdown options grouped by language then gender, each labelled with its display name.

    Named blends come first, their values being the :class:`Voice` objects themselves.
    """
    language_order = {code: i for i, code in enumerate(LANGUAGES)}
    gender_order = {code: i for i, code in enumerate(GENDERS)}

    def key(name: str) -> tuple:
        return (language_order.get(name[:1], 99), gender_order.get(name[1:2], 9),
                describe_voice(name)["display"])

    options: list = [(blend_label(b), b) for b in blends]
    options += [(voice_label(n), n) for n in sorted(names, key=key)]
    return options


def _dist_installed(name: str) -> bool:
    try:
        importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def provider_choices() -> tuple[list[str], dict[str, str]]:
    """(providers that can run here, {absent provider: why}) for the provider picker."""
    available = available_providers()
    gpu_build = _dist_installed("onnxruntime-gpu")
    reasons = {
        # A GPU build always has CUDA compiled in: without it, the CPU wheel's files won.
        "cuda": "the CPU onnxruntime wheel shadows onnxruntime-gpu (run kokoro-lab doctor)"
        if gpu_build else "onnxruntime-gpu not installed (make setup GPU=1; see kokoro-lab doctor)",
        "tensorrt": "TensorRT is not in this onnxruntime build" if gpu_build
        else "onnxruntime-gpu not installed",
        "rocm": "needs an onnxruntime ROCm build",
        "openvino": "needs onnxruntime-openvino",
        "coreml": "macOS only" if sys.platform != "darwin"
        else "not in this onnxruntime build",
        "directml": "Windows only (onnxruntime-directml)" if sys.platform != "win32"
        else "needs onnxruntime-directml",
    }
    missing = {p: reasons[p] for p in _EXPLAINED_PROVIDERS if p not in available}
    return available, missing


def precision_choices() -> tuple[list[str], dict[str, str], dict[str, str]]:
    """(precisions that can run here, {absent: why}, {available: a note, e.g. "built on first
    use"}) for the precision picker.

    int8 is the released graph. fp32 and fp16 are derived from it (see
    :mod:`kokoro_lab.engine.precisions`): available when their graph is cached or given by the
    user, or when the ``onnx`` package is here to derive it.
    """
    available, missing, notes = [], {}, {}
    for precision in assets.PRECISIONS:
        if precision == "int8" or os.environ.get(assets.model_env_var(precision)):
            available.append(precision)
            continue
        if assets.derived_path(precision).is_file():
            available.append(precision)
        elif importlib.util.find_spec("onnx") is not None:
            available.append(precision)
            notes[precision] = "derived from int8 on first use (takes a while once)"
        else:
            missing[precision] = "needs the onnx package to derive it from int8"
    return available, missing, notes


def availability_note(missing_providers: dict[str, str], missing_precisions: dict[str, str],
                      precision_notes: dict[str, str]) -> str:
    """The small HTML note under the pickers: one line naming what is not offered here (or
    what takes a while on first use), the reasons folded under it."""
    missing = list(missing_providers) + list(missing_precisions)
    reasons = [f"<b>{html.escape(name)}</b>: {html.escape(why)}" for name, why in
               (*missing_providers.items(), *missing_precisions.items(), *precision_notes.items())]
    if not reasons:
        return ""
    summary = []
    if missing:
        summary.append("not offered here: " + ", ".join(missing))
    if precision_notes:
        summary.append("built on first use: " + ", ".join(precision_notes))
    return ("<details class='kl-studio-notes' style='font-size:85%;color:#666;"
            "line-height:1.3'><summary style='cursor:pointer'>"
            + html.escape("; ".join(summary)) + " (why)</summary>"
            + "<br>".join(reasons) + "</details>")
