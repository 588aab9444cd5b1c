"""Decoder modes on the real int8 model: what the chunks say about their audio, and that
skipping the lead silence before the vocoder is not heard.

One warm session-scoped synthesizer (``synth``, skip_pads) and the ``"full"`` decoder on the
same sessions cache; a handful of short chunks.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from kokoro_lab import Synthesizer
from kokoro_lab.engine.decoding import (
    DURATION_UNIT_SAMPLES,
    LEAD_MARGIN_FRAMES,
    Decoder,
    DecoderError,
    first_decoded_frame,
)
from kokoro_lab.engine.metrics import AUDIBLE
from kokoro_lab.engine.sessions import SESSIONS
from kokoro_lab.engine.split import FRAME_SAMPLES

pytestmark = pytest.mark.model

TEXT = "She laughed. The old lighthouse stood at the edge of the cliff."


def raw_full_output(synth: Synthesizer, chunk, voice: str = "af_heart",
                    speed: float = 1.0) -> np.ndarray:
    """The unsplit model's whole raw output for one chunk's text and phonemes."""
    return synth.render(chunk.text, voice, speed, phonemes=chunk.phonemes, decoder="full",
                        raw=True).audio


@pytest.mark.parametrize("speed", [1.0, 1.4])
def test_token_durations_add_up_to_the_full_model_output(synth, speed):
    chunks = list(synth.stream(TEXT, speed=speed))
    for chunk in chunks:
        durations = chunk.token_durations
        assert durations is not None and durations.dtype.kind == "i"
        tokens = synth.tokenizer.tokenize(chunk.phonemes)
        assert len(durations) == len(tokens) + 2  # both pad tokens included
        full = raw_full_output(synth, chunk, speed=speed)
        assert durations.sum() * DURATION_UNIT_SAMPLES == len(full)
        assert chunk.decoder == "skip_pads"


def test_trim_start_places_the_audio_in_the_full_model_output(synth):
    for decoder in ("full", "skip_pads"):
        chunk = next(iter(synth.stream("Streaming changes that.", decoder=decoder)))
        full = raw_full_output(synth, chunk)
        speech = chunk.audio[: chunk.speech_samples]
        assert 0 < chunk.speech_samples < len(chunk.audio)  # the pause follows the speech
        assert not np.any(chunk.audio[chunk.speech_samples:])
        same = full[chunk.trim_start: chunk.trim_start + chunk.speech_samples]
        if decoder == "full":  # the very samples, apart from the 4 ms fades
            fade = 96
            np.testing.assert_array_equal(speech[fade:-fade], same[fade:-fade])
        else:  # another rendering: best aligned at the same place, within a frame
            window = full[max(0, chunk.trim_start - FRAME_SAMPLES):
                          chunk.trim_start + chunk.speech_samples + FRAME_SAMPLES]
            lags = np.correlate(window, speech, mode="valid")
            assert abs(int(np.argmax(lags)) - FRAME_SAMPLES) <= FRAME_SAMPLES // 2


def test_the_full_decoder_gives_the_same_durations_and_words(synth):
    """One run of the timed graph: the durations the split front stage gives, so words too."""
    full = next(iter(synth.stream("Hello there.", decoder="full")))
    split = next(iter(synth.stream("Hello there.", decoder="skip_pads")))
    assert full.decoder == "full" and full.phonemes == split.phonemes
    assert full.token_durations.dtype.kind == "i"
    np.testing.assert_array_equal(full.token_durations, split.token_durations)
    assert full.trim_start > 0  # the lead pad the trim removed
    assert [w.text for w in full.words] == ["Hello", "there."]
    assert full.words[0].start < full.words[1].start < full.words[1].end


def test_no_audible_sample_falls_outside_the_kept_frames(synth):
    """Short texts whose onsets differ (a vowel, a stop, a quote, no final stop), each in one
    of three voices (American male and female, British female), so every voice meets two."""
    texts = ("She laughed.", "Yes!", "Well, then.", '"Quoted," she said.',
             "It was all so still", "Fish.")
    for text, voice in zip(texts, ["am_adam", "af_heart", "bf_emma"] * 2, strict=True):
        spec = synth.resolve_voice(voice)
        skipped = synth.render(text, spec, raw=True)  # the default decoder: skip_pads
        tokens, _ = synth.model_inputs(skipped.phonemes, spec)
        begin = first_decoded_frame(tokens, skipped.token_durations,
                                    synth.decoder_for().silent)
        assert skipped.trim_start == begin * FRAME_SAMPLES > 0
        full = raw_full_output(synth, skipped, voice=voice)
        total = len(full) // FRAME_SAMPLES
        assert len(skipped.audio) == (total - begin) * FRAME_SAMPLES  # decoded to the end
        # what is not decoded is silence: the lead before the onset's run-up
        assert np.abs(full[: skipped.trim_start]).max() < AUDIBLE, (text, voice)
        assert begin + LEAD_MARGIN_FRAMES <= total


@pytest.mark.asr
def test_skipping_the_lead_silence_is_not_heard(synth):
    """PESQ-WB against the unsplit rendering of the same chunk, short and long chunks."""
    from kokoro_lab.engine.finish import finish_chunk
    from kokoro_lab.quality import pesq_wb

    scores = []
    for text, voice in (("She laughed.", "af_heart"), ("The old lighthouse stood", "am_adam"),
                        ("Nobody in the village remembered when the light had last failed.",
                         "bf_emma")):
        skip = next(iter(synth.stream(text, voice=voice, adaptive=False)))
        full = finish_chunk(raw_full_output(synth, skip, voice=voice), "word", 1.0)
        scores.append(pesq_wb(full.audio[: full.speech_samples],
                              skip.audio[: skip.speech_samples]))
    assert np.mean(scores) >= 4.0, scores


def test_each_stage_has_one_warm_session_and_the_option_is_checked(synth):
    stages = {s.stage for s in SESSIONS.loaded() if s.precision == "int8"}
    assert {"front", "generator"} <= stages
    before = len(SESSIONS)
    synth.synthesize("Once more, with the same sessions.")
    assert len(SESSIONS) == before
    with pytest.raises(DecoderError, match="unknown decoder 'fast'.*skip_pads, full"):
        Synthesizer(decoder="fast", warm_up=False)
    threads_before = threading.active_count()
    with pytest.raises(DecoderError, match="unknown decoder"):
        synth.stream("Hi.", decoder="windowed")
    assert threading.active_count() == threads_before


def test_cancel_aborts_a_long_chunk_in_flight(synth, monkeypatch):
    """One 220-phoneme chunk: cancelled while its inference runs, the run is aborted (ONNX
    Runtime raises out of it) and no chunk comes out, whatever the machine's speed."""
    text = ("The keeper climbed the spiral stairs and trimmed the wick and watched the beam "
            "sweep across the dark water toward ships he would never meet, night after night, "
            "year after year, while the village slept below the cliff.")
    running, aborted = threading.Event(), []
    render = Decoder.render

    def watched(self, tokens, style, speed, options=None):
        running.set()
        try:
            return render(self, tokens, style, speed, options)
        except Exception as error:  # the terminated run
            aborted.append(error)
            raise

    monkeypatch.setattr(Decoder, "render", watched)
    stream = synth.stream(text, adaptive=False)
    assert running.wait(30)
    stream.cancel()
    assert stream.join(timeout=60)
    assert stream.chunks == [] and stream.cancelled
    assert aborted and "terminate" in str(aborted[0]).lower(), aborted


def test_observe_playback_from_another_thread_steers_the_stream(synth):
    stream = synth.stream("Hello there. This sentence follows the first one. And a third.")
    first = next(stream)
    assert first.start_margin_ms >= 0.0
    reporter = threading.Thread(target=stream.observe_playback, args=(0.25,))
    reporter.start()
    reporter.join()
    assert stream.scheduler.measured(time.perf_counter())
    rest = list(stream)
    assert all(chunk.start_margin_ms == 0.0 for chunk in rest)
