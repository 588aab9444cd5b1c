// 16-bit PCM WAV encoding of float32 mono samples, for the "full audio" element and download.

/**
 * Encode float32 samples in [-1, 1] as a mono 16-bit PCM WAV file.
 * @param {Float32Array[]} parts  consecutive pieces of audio
 * @param {number} sampleRate
 * @returns {ArrayBuffer}
 */
export function encodeWav(parts, sampleRate) {
  const total = parts.reduce((n, p) => n + p.length, 0);
  const buffer = new ArrayBuffer(44 + total * 2);
  const view = new DataView(buffer);
  const text = (offset, s) => {
    for (let i = 0; i < s.length; i++) view.setUint8(offset + i, s.charCodeAt(i));
  };
  text(0, "RIFF");
  view.setUint32(4, 36 + total * 2, true);
  text(8, "WAVE");
  text(12, "fmt ");
  view.setUint32(16, 16, true); // fmt chunk size
  view.setUint16(20, 1, true); // PCM
  view.setUint16(22, 1, true); // mono
  view.setUint32(24, sampleRate, true);
  view.setUint32(28, sampleRate * 2, true); // byte rate
  view.setUint16(32, 2, true); // block align
  view.setUint16(34, 16, true); // bits per sample
  text(36, "data");
  view.setUint32(40, total * 2, true);
  let offset = 44;
  for (const part of parts) {
    for (let i = 0; i < part.length; i++) {
      const x = Math.max(-1, Math.min(1, part[i]));
      // Same rounding as the Python side (write_wav): scale by 32767 and truncate.
      view.setInt16(offset, Math.trunc(x * 32767), true);
      offset += 2;
    }
  }
  return buffer;
}
