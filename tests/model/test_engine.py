"""The real engine on the real int8 model: streaming, cancelling, bad input, odd text."""

from __future__ import annotations

import threading
import time
import wave

import numpy as np
import pytest

from kokoro_lab import ProviderUnavailable, TextError, VoiceError
from kokoro_lab.engine.finish import LEAD_IN_S, sound_onset
from kokoro_lab.engine.metrics import SAMPLE_RATE
from kokoro_lab.engine.stream import QUEUE_CHUNKS

pytestmark = pytest.mark.model

PARAGRAPH = "Hello there, friend. This is a short test of streaming speech. It ends here."


def test_stream_yields_measured_chunks_in_order(synth, tmp_path):
    stream = synth.stream(PARAGRAPH, voice="af_heart")
    chunks = list(stream)
    assert len(chunks) >= 2
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert " ".join(c.text for c in chunks).split() == PARAGRAPH.split()
    assert chunks[0].text == "Hello there,"  # a short first clause: fast first audio
    for chunk in chunks:
        assert chunk.audio.dtype == np.float32 and chunk.audio.ndim == 1
        assert np.isfinite(chunk.audio).all() and np.abs(chunk.audio).max() > 0.05
        assert chunk.queued <= chunk.started < chunk.finished
        assert chunk.synthesis_ms > 0 and chunk.audio_ms > 100 and chunk.rtf > 0
        assert chunk.provider == "cpu" and chunk.precision == "int8"
        assert chunk.phoneme_count == len(chunk.phonemes) > 0
    assert [c.finished for c in chunks] == sorted(c.finished for c in chunks)
    result = stream.result()
    assert result.duration_s == pytest.approx(sum(c.audio_ms for c in chunks) / 1000)
    path = result.save(tmp_path / "out.wav")
    with wave.open(str(path)) as wav:
        assert wav.getframerate() == SAMPLE_RATE
        assert wav.getnframes() == len(result.audio)
    # playback waits the start margin chunk 0 asks for (0 unless this machine is slow now)
    assert all(c.start_margin_ms == 0 for c in chunks[1:])
    assert result.playback.first_audio_ms < chunks[0].ready_ms + chunks[0].start_margin_ms + 200


def test_a_streams_first_chunk_starts_at_its_sound(synth):
    """The model's output for "Most people never think" keeps ~180 ms of silence before "M"
    after kokoro-onnx's trim; the stream's first chunk starts 10 ms before the sound instead,
    and its words are still placed on its audio."""
    first = next(iter(synth.stream("Most people never think about the pause.")))
    alone = synth.render(first.text)  # the same chunk, not opening a stream
    lead, alone_lead = sound_onset(first.audio), sound_onset(alone.audio)
    assert lead == int(LEAD_IN_S * SAMPLE_RATE) < alone_lead
    cut = alone_lead - lead
    np.testing.assert_array_equal(first.audio[200:lead + 4800],
                                  alone.audio[cut + 200:cut + lead + 4800])
    assert first.trim_start == alone.trim_start + cut
    # the words move with the cut: each is heard where it was, ``cut`` samples earlier
    assert [w.text for w in first.words] == [w.text for w in alone.words]
    for word, unmoved in zip(first.words, alone.words, strict=True):
        assert word.start == pytest.approx(max(0.0, unmoved.start - cut / SAMPLE_RATE), abs=2e-3)


def test_joins_are_faded_to_silence(synth):
    chunks = list(synth.stream(PARAGRAPH))
    for chunk in chunks:
        assert abs(chunk.audio[0]) < 1e-3 and abs(chunk.audio[-1]) < 1e-3


def test_cancel_stops_within_one_chunk(synth):
    text = " ".join(["The quick brown fox jumps over the lazy dog."] * 40)
    stream = synth.stream(text)
    first = next(stream)
    cancelled_at = time.perf_counter()
    stream.cancel()
    assert stream.join(timeout=60), "worker still running 60 s after cancel"
    # The inference in flight is aborted (see test_decoding's cancel test): nothing starts
    # after the cancel, and the chunk in flight never comes out.
    assert first.index == 0
    produced = [c for c in stream.chunks if c.started > cancelled_at]
    assert produced == []
    assert not any(t.name == "kokoro-lab-stream" and t.is_alive() for t in threading.enumerate()
                   if t is stream._worker)


def test_closing_the_iterator_stops_the_worker(synth):
    with synth.stream(" ".join(["Another sentence to speak, slowly."] * 30)) as stream:
        next(stream)
    assert stream.cancelled and stream.join(timeout=30)


def test_huge_text_streams_with_bounded_memory(synth):
    text = ("A long document, read aloud for testing purposes. " * 2000)[:100_000]
    assert len(text) == 100_000
    stream = synth.stream(text)
    next(stream)
    time.sleep(1.0)
    assert stream._queue.qsize() <= QUEUE_CHUNKS  # the worker waits instead of running ahead
    stream.cancel()
    assert stream.join(timeout=30)


@pytest.mark.parametrize(
    "text",
    [
        "Tab\tand\x00null\x07 bell characters.",
        "Hello 🙂 world 🚀!",
        "Hello, 世界. Bonjour, Ünïcödé.",
    ],
)
def test_odd_characters_still_speak(synth, text):
    result = synth.synthesize(text)
    assert result.duration_s > 0.3 and np.isfinite(result.audio).all()


def test_blend_and_speed_change_the_audio(synth):
    text = "Speed changes the length."
    slow = synth.synthesize(text, speed=0.7).duration_s
    fast = synth.synthesize(text, speed=1.5).duration_s
    assert slow > fast * 1.5
    blend = synth.synthesize(text, voice="af_heart:0.5,am_adam:0.5").audio
    plain = synth.synthesize(text, voice="af_heart").audio
    assert blend.shape != plain.shape or not np.allclose(blend, plain)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"text": ""}, TextError, "empty"),
        ({"text": "   \n\t "}, TextError, "empty"),
        ({"text": "🙂🙂 🚀 …"}, TextError, "nothing speakable"),
        ({"text": "Hi.", "voice": "xx_nobody"}, VoiceError, "unknown voice 'xx_nobody'"),
        ({"text": "Hi.", "voice": "af_heart:0.5,,"}, VoiceError, "cannot read"),
        ({"text": "Hi.", "speed": 2.5}, ValueError, "between 0.5 and 2.0"),
        ({"text": "Hi.", "speed": 0.2}, ValueError, "between 0.5 and 2.0"),
        ({"text": "Hi.", "provider": "cuda"}, ProviderUnavailable, "available: cpu"),
        ({"text": "Hi.", "provider": "warp-drive"}, ProviderUnavailable, "unknown provider"),
        ({"text": "Hi.", "precision": "int4"}, ValueError, "unknown precision 'int4'"),
        ({"text": 42}, TextError, "must be a str"),
    ],
)
def test_bad_input_is_a_clear_error_before_any_work(synth, kwargs, error, message):
    threads_before = threading.active_count()
    with pytest.raises(error, match=message):
        synth.stream(**kwargs)
    assert threading.active_count() == threads_before  # no worker was started


def test_provider_unavailable_at_construction():
    from kokoro_lab import Synthesizer

    with pytest.raises(ProviderUnavailable, match="not available.*available: cpu") as raised:
        Synthesizer(provider="cuda", warm_up=False)
    assert "`kokoro-lab doctor` says why" in str(raised.value)
    assert "make setup GPU=1" in str(raised.value)


def test_session_is_loaded_once_and_reports_active_providers(synth):
    from kokoro_lab.engine.sessions import SESSIONS

    before = len(SESSIONS)
    synth.synthesize("Once more.")
    assert len(SESSIONS) == before
    assert synth.active_providers == ["CPUExecutionProvider"]
    assert synth.load_ms > 0
