"""Graph rewrites the engine derives its runnable graphs with, each a pure
``onnx.ModelProto -> onnx.ModelProto`` function: the derived precisions (:mod:`.dequantize`,
:mod:`.fp16`) on the shared graph view (:mod:`.common`). The split before the vocoder and the
phase input live in :mod:`kokoro_lab.engine.split` and :mod:`kokoro_lab.engine.phase`.
"""
