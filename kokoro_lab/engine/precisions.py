"""Derived precisions: fp32 and fp16 graphs rebuilt from the one released int8 graph.

The rule: only the int8 Kokoro-82M graph is published on the registries, so the other
precisions are *derived* from it, never downloaded, and every derived file says so.

* ``fp32`` undoes the dynamic quantization pattern by pattern
  (:mod:`kokoro_lab.engine.graphs.dequantize`): the weights are exactly the int8 ones, so the
  fp32 graph is "int8 weights, float arithmetic": it removes the *activation* quantization
  error, not the weight rounding.
* ``fp16`` converts that fp32 graph to float16 but keeps numerically fragile islands in fp32
  (:mod:`kokoro_lab.engine.graphs.fp16`); model inputs and outputs stay float32, so callers
  see no difference.

Derived files are cached beside the int8 file, named after the source's sha256, written
atomically, and stamped with their own sha256 so a truncated or corrupted cache file is
detected and rebuilt rather than loaded.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import onnx

from .files import AssetError, atomic_write, file_sha256
from .graphs.common import QUANTIZED_OPS, RewriteError, quantized_op_counts
from .graphs.dequantize import dequantize_model
from .graphs.fp16 import FP16_FP32_ISLANDS, to_mixed_fp16

DERIVED = ("fp32", "fp16")

METADATA_KEY = "kokoro_lab.derivation"
# Bumped whenever the rewrite changes, so caches built by an older rewriter are not reused.
REWRITE_VERSION = "4"

LABELS = {
    "int8": "int8, the released graph (dynamic quantization)",
    "fp32": "fp32, dequantized from the int8 release",
}


# ---------------------------------------------------------------------------------------------
# public API


def expected_path(cache: Path, precision: str, source_sha256: str) -> Path:
    """Where the ``precision`` graph derived from the int8 file with ``source_sha256`` lives."""
    _check_precision(precision)
    return Path(cache) / (
        f"kokoro-v1.0.{precision}-from-int8-{source_sha256[:12]}-r{REWRITE_VERSION}.onnx"
    )


def derived_model(int8: Path, precision: str, cache: Path) -> Path:
    """Path of the ``precision`` graph derived from ``int8``, building and caching it once.

    The cached file is reused only if its recorded sha256 stamp still matches its content;
    otherwise (missing, truncated, corrupted) it is rebuilt.
    """
    _check_precision(precision)
    int8 = Path(int8)
    if not int8.is_file():
        raise AssetError(f"the int8 model to derive {precision} from ({int8}) does not exist")
    # Named by the content hash, so a different int8 file never reuses another's derivation.
    source_sha = file_sha256(int8)
    target = expected_path(cache, precision, source_sha)
    if _cached_ok(target):
        return target
    if precision == "fp32":
        model = dequantize_model(onnx.load(str(int8)))
    else:
        model = to_mixed_fp16(onnx.load(str(derived_model(int8, "fp32", cache))))
    _label(model, precision, source_sha)
    _save(model, target)
    _remove_stale_revisions(target)
    return target


def describe_precision(precision: str) -> str:
    """A human label for a precision, saying where its graph came from."""
    if precision == "fp16":
        return f"fp16 mixed (fp32 islands: {', '.join(FP16_FP32_ISLANDS)}), from the int8 release"
    if precision not in LABELS:
        raise ValueError(f"unknown precision {precision!r}; choose one of int8, fp32, fp16")
    return LABELS[precision]


def derivation_of(path: Path) -> str | None:
    """The derivation label stored in a model file's metadata, or None for a non-derived file."""
    model = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}.get(METADATA_KEY)


def _check_precision(precision: str) -> None:
    if precision not in DERIVED:
        raise ValueError(
            f"precision {precision!r} is not derived; derived precisions are {', '.join(DERIVED)}"
        )


def _stamp(path: Path) -> Path:
    return path.with_suffix(".sha256")


def _cached_ok(path: Path) -> bool:
    stamp = _stamp(path)
    return path.is_file() and stamp.is_file() and stamp.read_text().strip() == file_sha256(path)


def _remove_stale_revisions(target: Path) -> None:
    """Delete the same derivation built by older rewriter revisions (hundreds of MB each)."""
    stem = target.name.rsplit("-r", 1)[0]
    for old in target.parent.glob(f"{stem}-r*.onnx"):
        if old != target:
            old.unlink(missing_ok=True)
            _stamp(old).unlink(missing_ok=True)


def _save(model: onnx.ModelProto, target: Path) -> None:
    data = model.SerializeToString()
    with atomic_write(target) as out:
        out.write(data)
    with atomic_write(_stamp(target)) as out:
        out.write(hashlib.sha256(data).hexdigest().encode())


def _label(model: onnx.ModelProto, precision: str, source_sha: str) -> None:
    # No timestamps or timings: the same source gives byte-identical derived files anywhere.
    text = f"{describe_precision(precision)} (sha256 {source_sha})"
    entries = {
        METADATA_KEY: text,
        "kokoro_lab.precision": precision,
        "kokoro_lab.source_sha256": source_sha,
        "kokoro_lab.rewrite_version": REWRITE_VERSION,
    }
    kept = [p for p in model.metadata_props if p.key not in entries]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in entries.items():
        model.metadata_props.add(key=key, value=value)
    model.producer_name = "kokoro-lab"
    model.doc_string = text


__all__ = ["DERIVED", "LABELS", "METADATA_KEY", "QUANTIZED_OPS", "REWRITE_VERSION", "RewriteError",
           "derivation_of", "derived_model", "describe_precision", "expected_path",
           "quantized_op_counts"]
