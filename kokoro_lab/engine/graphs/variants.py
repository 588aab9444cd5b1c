"""Generator graph variants: the vocoder rewritten to run faster on some machines.

The rule: a variant is a pure rewrite of the generator stage (the graph with the phase-offset
input, :mod:`kokoro_lab.engine.phase`), built once per source graph and cached under its hash
and :data:`VARIANTS_VERSION`, like the derived precisions. No variant is used by default until
it has passed the by-ear judges on this machine (``kokoro-lab tune``); ``"released"`` is the
generator exactly as released.
"""

from __future__ import annotations

from collections.abc import Callable

import onnx

VARIANTS_VERSION = 1  # bump when a rewrite changes, so cached variant graphs are rebuilt


def released(model: onnx.ModelProto) -> onnx.ModelProto:
    """The generator as released (no rewrite)."""
    return model


VARIANTS: dict[str, Callable[[onnx.ModelProto], onnx.ModelProto]] = {"released": released}


def build(name: str, model: onnx.ModelProto) -> onnx.ModelProto:
    """The ``name`` variant of a generator-stage graph."""
    if name not in VARIANTS:
        raise ValueError(f"unknown graph variant {name!r}; choose one of {', '.join(VARIANTS)}")
    return VARIANTS[name](model)


__all__ = ["VARIANTS", "VARIANTS_VERSION", "build", "released"]
