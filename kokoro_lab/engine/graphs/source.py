"""The vocoder's harmonic source: its ``STFT`` as a strided ``Conv``, with the phase it was
trained on.

The rule: every ``STFT`` with a constant step and window becomes ``Conv`` (the windowed DFT
basis, real rows then imaginary rows, stride = step) + ``Reshape`` + ``Transpose`` to the
``[batch, frames, bins, 2]`` layout the ``STFT`` gave; with ``as_trained`` the DC and Nyquist
bins' imaginary parts are exactly zero and the exported ``atan2`` reads a zero imaginary part
as ``torch.angle`` does (``+pi`` for a negative real part).

Why (measured with ONNX Runtime's profiler and the by-ear judges, ``kokoro-lab tune``): ORT
computes a 20-point ``STFT`` with a Bluestein transform per frame, on one thread: 43 ms of the
hold-out paragraph's first chunk, the largest single node of the fused vocoder. The ``Conv`` is
the same transform to ~1e-6 on every core. But a real signal's DC and Nyquist bins have no
imaginary part, and Bluestein's leaves rounding noise there; the graph's ``atan2`` (``Atan`` of
a quotient, then ``Where(imag > 0, +pi, -pi)`` for a negative real part) turns the *sign* of
that noise into a phase of ``+pi`` or ``-pi``, and the vocoder reads every bin's phase. With a
different rounding the phases flip (PESQ-WB 3.64 against the released graph, DNSMOS -0.08);
with exact zeros the export's ``imag > 0`` test says ``-pi`` everywhere (3.52, -0.10). PyTorch,
which the model was trained with, gives ``torch.angle(x + 0j) = +pi`` for ``x < 0``: with that
test (``imag >= 0``) on the *released* graph the audio stays what it was (PESQ-WB 4.31,
DNSMOS +0.003), and on the fused vocoder with the ``Conv`` it passes by ear (PESQ-WB 4.24,
DNSMOS +0.02; ``benchmarks/results/vocoder_rewrites.md``). So ``as_trained`` is not a trick to
hide the noise: it is the phase the model learned, which ORT's noise mostly happened to give.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from .common import Graph, RewriteError, attributes, copy_model


def real_bins(n: int) -> list[int]:
    """The bins of an ``n``-point DFT of a real signal that have no imaginary part: DC, and
    Nyquist when ``n`` is even."""
    return [0, n // 2] if n % 2 == 0 else [0]


def dft_basis(window: np.ndarray, onesided: bool = True, as_trained: bool = True) -> np.ndarray:
    """``Conv`` weights ``[2 * bins, 1, n]``: ``window * cos`` rows, then ``-window * sin``
    rows, so output channel ``k`` is bin ``k``'s real part and ``bins + k`` its imaginary part,
    as ONNX's ``STFT`` defines them. With ``as_trained`` the DC and Nyquist sine rows are
    exactly zero (``sin(pi j)`` in floating point is not), as a real FFT gives them."""
    n = window.size
    bins = n // 2 + 1 if onesided else n
    angle = 2 * np.pi * np.arange(bins)[:, None] * np.arange(n)[None] / n
    sine = np.sin(angle)
    if as_trained:
        sine[real_bins(n)] = 0.0
    window = window.astype(np.float64)[None]
    return np.concatenate([window * np.cos(angle), -window * sine])[:, None, :] \
        .astype(np.float32)


def _conv_nodes(g: Graph, node: onnx.NodeProto, as_trained: bool) -> list[onnx.NodeProto]:
    onesided = bool(attributes(node).get("onesided", 1))
    basis = dft_basis(g.array(node.input[2]), onesided, as_trained)
    bins = basis.shape[0] // 2
    p = node.name + "/as_conv/"
    return [
        helper.make_node("Reshape", [node.input[0], g.const(p + "to_channels", np.array(
            [0, 1, -1], np.int64))], [p + "signal"]),
        helper.make_node("Conv", [p + "signal", g.const(p + "basis", basis)], [p + "bins"],
                         strides=[int(g.array(node.input[1]))], name=p + "conv"),
        helper.make_node("Reshape", [p + "bins", g.const(p + "parts_shape", np.array(
            [0, 2, bins, -1], np.int64))], [p + "parts"]),
        helper.make_node("Transpose", [p + "parts"], [node.output[0]], perm=[0, 3, 2, 1],
                         name=p + "to_stft_layout"),
    ]


def _imaginary_sign_tests(g: Graph, spectrum: str) -> list[onnx.NodeProto]:
    """The ``Greater(imag, 0)`` nodes of the ``atan2`` reading ``spectrum``'s imaginary part
    (``Transpose`` then ``Gather`` of index 1 on the last axis, as the export writes it)."""
    tests = []
    for moved in g.consumers.get(spectrum, []):
        if moved.op_type != "Transpose":
            continue
        for part in g.consumers.get(moved.output[0], []):
            if part.op_type != "Gather" or part.input[1] not in g.init \
                    or int(g.array(part.input[1])) != 1:
                continue
            tests += [n for n in g.consumers.get(part.output[0], []) if n.op_type == "Greater"
                      and n.input[0] == part.output[0] and n.input[1] in g.init
                      and float(g.array(n.input[1])) == 0.0]
    return tests


def read_zero_as_trained(g: Graph, stft: onnx.NodeProto) -> None:
    """Make the ``atan2`` reading ``stft``'s imaginary part test ``imag >= 0`` where the export
    tests ``imag > 0``: ``torch.angle(x + 0j) = +pi`` for ``x < 0``."""
    tests = _imaginary_sign_tests(g, stft.output[0])
    if not tests:
        raise RewriteError(f"no atan2 sign test reads the imaginary part of {stft.name}")
    for test in tests:
        test.op_type = "GreaterOrEqual"


def stft_as_conv(model: onnx.ModelProto, as_trained: bool = True) -> onnx.ModelProto:
    """Every ``STFT`` with a constant step and window as a ``Conv`` (see the module docstring);
    with ``as_trained`` its phase's zero test reads ``imag >= 0``."""
    out = copy_model(model)
    g = Graph(out.graph)
    replace: dict[str, list[onnx.NodeProto]] = {}
    for node in out.graph.node:
        if node.op_type != "STFT" or len(node.input) < 3 or not node.input[2]:
            continue
        if as_trained:
            read_zero_as_trained(g, node)
        replace[node.output[0]] = _conv_nodes(g, node, as_trained)
    if not replace:
        raise RewriteError("no STFT with a constant window to rewrite")
    g.rebuild(out, replace, set())
    return out


__all__ = ["dft_basis", "read_zero_as_trained", "real_bins", "stft_as_conv"]
