"""The research bench: code that measures the engine but is not on its default path.

Fenced here, as lonboard fences ``experimental/``, so the engine's own modules hold only what
``%%speak``, the CLI and the batch renderer run:

* :mod:`.bench` — ``kokoro-lab bench``: kokoro_lab against kokoro-onnx in one process;
* :mod:`.texts` — the texts benchmarks speak (one held back from any tuning);
* :mod:`.raw` — raw model-call timings per token count, no streaming;
* :mod:`.windowed` — windowed vocoder decoding (measured, rejected by ear);
* :mod:`.splice` — the trailing splice of the vocoder's silent tail (measured, rejected);
* :mod:`.rewrites` — the vocoder's ``STFT`` as a ``Conv``, its Snake as a polynomial (measured,
  rejected);
* :mod:`.jupyter` — JupyterLab in Chromium, driven as a user would (browser tests, benchmarks).

Benchmarks reach the engine through its public API (:class:`kokoro_lab.Synthesizer`'s
``request``, ``stream``, ``synthesize`` and ``render``) or through these modules.
"""
