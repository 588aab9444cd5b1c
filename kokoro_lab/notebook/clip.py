"""A finished clip in a notebook: the browser's own audio controls and a "Download WAV" link.

For audio that is complete before it is shown (a card of :func:`kokoro_lab.compare_voices`),
where a streaming player's Stop and progress bar would only be noise. The WAV travels once, as
a binary buffer in widget state (so a page that connects later, or Voila, gets it too); the
page turns it into one object URL shared by the ``<audio>`` element and the link.
"""

from __future__ import annotations

import io
import wave

import anywidget
import numpy as np
import traitlets

from ..engine.metrics import SAMPLE_RATE

_ESM = """
function render({ model, el }) {
  const root = document.createElement("div");
  root.className = "kokoro-clip";
  const audio = document.createElement("audio");
  audio.controls = true;
  audio.preload = "metadata";
  const link = document.createElement("a");
  link.className = "kl-clip-download";
  link.textContent = "Download WAV";
  root.append(audio, link);
  el.append(root);
  let url = null;
  const show = () => {
    if (url) URL.revokeObjectURL(url);
    const data = model.get("wav");
    const bytes = data instanceof DataView ? data.buffer.slice(
      data.byteOffset, data.byteOffset + data.byteLength) : data;
    url = URL.createObjectURL(new Blob([bytes], { type: "audio/wav" }));
    audio.src = url;
    link.href = url;
    link.download = model.get("filename");
  };
  model.on("change:wav", show);
  show();
  return () => {
    model.off("change:wav", show);
    if (url) URL.revokeObjectURL(url);
  };
}
export default { render };
"""

_CSS = """
.kokoro-clip { display: flex; flex-direction: column; gap: 2px; width: 100%; }
.kokoro-clip audio { width: 100%; min-width: 0; }
.kokoro-clip .kl-clip-download { white-space: nowrap; font-size: 85%; align-self: flex-end; }
"""


def wav_bytes(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> bytes:
    """Mono float audio as a 16-bit PCM WAV file's bytes."""
    samples = np.asarray(audio, dtype=np.float32)
    if samples.ndim != 1:
        raise ValueError(f"audio must be mono (1-D), got shape {samples.shape}")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes((np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes())
    return buffer.getvalue()


class Clip(anywidget.AnyWidget):
    """A finished clip: ``Clip(audio, filename="af_heart.wav")``; ``.wav`` holds the file."""

    _esm = _ESM
    _css = _CSS
    wav = traitlets.Bytes().tag(sync=True)
    filename = traitlets.Unicode("kokoro.wav").tag(sync=True)

    def __init__(self, audio: np.ndarray, *, sample_rate: int = SAMPLE_RATE,
                 filename: str = "kokoro.wav", **kwargs) -> None:
        super().__init__(wav=wav_bytes(audio, sample_rate), filename=filename, **kwargs)


__all__ = ["Clip", "wav_bytes"]
