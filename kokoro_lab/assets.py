"""Public face of the offline assets: see :mod:`kokoro_lab.engine.assets` for the rules."""

from .engine.assets import (
    PRECISIONS,
    AssetError,
    cache_dir,
    describe,
    file_sha256,
    model_path,
    voices_path,
)

__all__ = [
    "PRECISIONS", "AssetError", "cache_dir", "describe", "file_sha256", "model_path",
    "voices_path",
]
