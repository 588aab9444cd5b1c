"""Helpers the unit and model tests of precisions share."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

TEXT = "The quick brown fox jumps over the lazy dog."


SENTENCES = [TEXT, "Please call Stella and ask her to bring these things from the store."]


def run(serialized: bytes, feeds: dict) -> np.ndarray:
    session = ort.InferenceSession(serialized, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))
