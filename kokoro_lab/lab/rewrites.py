"""Two more vocoder rewrites, measured and rejected as written (the engine does not run them).

Each is a pure rewrite of a generator-stage graph, applied on top of the ``matmul-fused``
variant, where ONNX Runtime's profiler puts the remaining time (``kokoro-lab ops``): ``Sin``
(the Snake activations, ~25 %) and the one ``STFT`` node (~10 %). Both ops run on one thread
whatever ``intra_op_num_threads`` says; ``Sin`` costs ~2 ns per element, a ``Mul`` ~0.2 ns.
``benchmarks/vocoder_rewrites.py`` times and judges them (``benchmarks/results/
vocoder_rewrites.md``):

* :func:`stft_as_conv` computes the harmonic source's ``STFT`` as a strided ``Conv`` with the
  windowed DFT basis (real rows, then imaginary rows): the same transform to ~1e-6, on every
  thread. 1.09x faster, and **rejected by ear** (PESQ-WB 3.64, DNSMOS -0.08): the DC and
  Nyquist bins' imaginary parts are rounding noise, whose sign the export's ``atan2`` turns
  into a phase of +pi or -pi, and the vocoder reads every bin's phase. The engine's
  ``matmul-fused-poly-stft`` variant is this rewrite with those parts exactly zero and the phase
  PyTorch gives them (:mod:`kokoro_lab.engine.graphs.source`): it passes.
* :func:`snake_polynomial` computes the Snake's ``sin(u)^2`` without ``Sin``: ``t = u/pi``
  reduced to ``f = t - round(t)`` in ``[-1/2, 1/2]``, then ``sin^2(pi f)`` as a least-squares
  polynomial in ``f^2``. Degree 2 to 4 pass by ear (PESQ-WB 4.32-4.40). Measured first on a
  busy host (load average 2.3-3.1) they **gained nothing** (0.94-1.00x): the passes need the
  second core that the single-threaded ``Sin`` left idle, and other tenants had it. The
  engine's ``matmul-fused-poly`` variant (:mod:`kokoro_lab.engine.graphs.variants`) is this
  rewrite with ``1/pi`` folded into the instance norm and the Snake's scale into the last
  ``Mul`` (one pass fewer); ``kokoro-lab tune`` decides per machine whether it wins.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from ..engine.graphs.common import Graph, RewriteError, copy_model
from ..engine.graphs.source import read_zero_as_trained, real_bins
from ..engine.graphs.source import stft_as_conv as engine_stft_as_conv
from ..engine.graphs.variants import sin_squared_coefficients, sin_squared_nodes


def stft_as_conv(model: onnx.ModelProto) -> onnx.ModelProto:
    """The source's ``STFT`` as a ``Conv`` *without* the trained phase of the DC and Nyquist
    bins: :func:`kokoro_lab.engine.graphs.source.stft_as_conv` with ``as_trained=False``, the
    form that failed by ear."""
    return engine_stft_as_conv(model, as_trained=False)


def edge_bins_zeroed(model: onnx.ModelProto, as_trained: bool) -> onnx.ModelProto:
    """ORT's own ``STFT`` with the DC and Nyquist bins' imaginary parts (rounding noise) set to
    exactly zero; with ``as_trained`` the ``atan2`` reads zero as ``torch.angle`` does. The
    experiment that says which phase the vocoder expects there."""
    out = copy_model(model)
    g = Graph(out.graph)
    stft = next((n for n in out.graph.node if n.op_type == "STFT"), None)
    if stft is None:
        raise RewriteError("no STFT to rewrite")
    if as_trained:
        read_zero_as_trained(g, stft)
    n = g.array(stft.input[2]).size  # the window's length is the frame's
    mask = np.ones((1, 1, n // 2 + 1, 2), np.float32)
    mask[..., real_bins(n), 1] = 0.0
    noisy = stft.output[0] + "/with_edge_noise"
    kept = onnx.NodeProto()
    kept.CopyFrom(stft)
    kept.output[0] = noisy
    g.rebuild(out, {stft.output[0]: [kept, helper.make_node(
        "Mul", [noisy, g.const(stft.name + "/edge_mask", mask)], [stft.output[0]])]}, set())
    return out


def _squared_sine(g: Graph, sin: onnx.NodeProto) -> onnx.NodeProto | None:
    """The node squaring ``sin``'s output (``Mul(s, s)`` or ``Pow(s, 2)``), if that is its
    only reader."""
    square = g.only(sin.output[0], "Mul")
    if square is not None and list(square.input) == [sin.output[0]] * 2:
        return square
    power = g.only(sin.output[0], "Pow")
    if power is not None and power.input[1] in g.init and float(g.array(power.input[1])) == 2:
        return power
    return None


def snake_polynomial(model: onnx.ModelProto, degree: int = 4) -> onnx.ModelProto:
    """Every ``sin(u)^2`` (a ``Sin`` whose only reader squares it) as range reduction and a
    polynomial: ``degree + 4`` element-wise passes instead of two, none of them ``Sin``."""
    out = copy_model(model)
    g = Graph(out.graph)
    coefficients = sin_squared_coefficients(degree)
    replace: dict[str, list[onnx.NodeProto]] = {}
    drop: set[str] = set()
    for sin in out.graph.node:
        square = _squared_sine(g, sin) if sin.op_type == "Sin" else None
        if square is None:
            continue
        p = sin.name + "/polynomial/"
        scaled = helper.make_node("Mul", [sin.input[0], g.const(p + "inv_pi", np.float32(
            1 / np.pi))], [p + "t"])
        polynomial, sin2 = sin_squared_nodes(g, p, p + "t", coefficients)
        replace[square.output[0]] = [
            scaled, *polynomial, helper.make_node("Identity", [sin2], [square.output[0]])]
        drop.add(sin.output[0])
    if not replace:
        raise RewriteError("no sin(u)^2 (Sin, then Mul(s, s) or Pow(s, 2)) to rewrite")
    g.rebuild(out, replace, drop)
    return out


REWRITES = {"stft-as-conv": stft_as_conv, "snake-polynomial": snake_polynomial}

__all__ = ["REWRITES", "edge_bins_zeroed", "sin_squared_coefficients", "snake_polynomial",
           "stft_as_conv"]
