"""Voice names and blends: parsing, errors, and blend arithmetic against the real style vectors."""

from __future__ import annotations

import numpy as np
import pytest

from kokoro_lab import assets, voice
from kokoro_lab.engine.voices import VoiceBank, VoiceError, describe_voice, parse


@pytest.fixture(scope="module")
def bank():
    return VoiceBank(assets.voices_path())


def test_all_54_stock_voices_with_the_v1_shape(bank):
    assert len(bank.names) == 54
    assert bank.table("af_heart").shape == (510, 1, 256)
    assert {"af_heart", "bf_emma", "jf_alpha", "zm_yunxi"} <= set(bank.names)


def test_blend_is_the_normalised_weighted_mean(bank):
    blended = bank.table("af_heart:0.7,bf_emma:0.3")
    expected = 0.7 * bank.table("af_heart") + 0.3 * bank.table("bf_emma")
    np.testing.assert_allclose(blended, expected, rtol=1e-6)
    # weights are normalised: 7:3 is the same blend as 0.7:0.3
    np.testing.assert_allclose(bank.table("af_heart:7,bf_emma:3"), expected, rtol=1e-6)
    named = voice("af_heart", "bf_emma", weights=(0.7, 0.3), name="warm")
    np.testing.assert_allclose(bank.table(named), expected, rtol=1e-6)
    assert named.label == "warm" and named.lang == "en-us"


def test_style_row_follows_the_token_count(bank):
    np.testing.assert_array_equal(bank.style("af_heart", 10), bank.table("af_heart")[9])
    np.testing.assert_array_equal(bank.style("af_heart", 9999), bank.table("af_heart")[-1])


@pytest.mark.parametrize(
    "spec, message",
    [
        ("", "non-empty"),
        ("af_heart:0.5,", "cannot read"),
        ("af_heart:abc", "cannot read"),
        ("af_heart:0,bf_emma:0", "positive"),
        ("af_heart:-1,bf_emma:2", "not negative"),
    ],
)
def test_bad_blend_syntax_says_what_is_wrong(spec, message):
    with pytest.raises(VoiceError, match=message):
        parse(spec)


def test_unknown_voice_suggests_close_names_and_where_to_list_them_all(bank):
    with pytest.raises(VoiceError, match="unknown voice 'af_hart'; did you mean af_heart") as info:
        bank.table("af_hart")
    message = str(info.value)
    assert "All 54 names: `kokoro-lab voices`" in message and "…" not in message
    with pytest.raises(VoiceError, match="unknown voice 'qq_zz'; All 54 names"):
        bank.table("qq_zz")  # nothing close: still says where the names are


def test_language_and_gender_come_from_the_name():
    assert describe_voice("bf_emma") == {
        "name": "bf_emma", "lang": "en-gb", "language": "British English",
        "gender": "female", "display": "Emma",
    }
    assert parse("jm_kumo").lang == "ja"


def test_voice_accepts_a_blend_spelled_as_one_string(bank):
    named = voice("af_heart:0.7,bf_emma:0.3", name="mix")
    assert named.label == "mix" and named.parts == (("af_heart", 0.7), ("bf_emma", 0.3))
    np.testing.assert_allclose(bank.table(named), bank.table("af_heart:0.7,bf_emma:0.3"))


def test_the_voices_command_lists_every_name_by_language_and_gender(capsys):
    from kokoro_lab.cli import main

    assert main(["voices"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "American English, female (11): af_alloy," in out[0]
    listed = [name for line in out[:-1] for name in line.split(": ", 1)[1].split(", ")]
    assert sorted(listed) == sorted(VoiceBank(assets.voices_path()).names)
    assert out[-1].startswith("54 voices")
    assert main(["voices", "--json"]) == 0
    import json

    records = json.loads(capsys.readouterr().out)
    assert {r["gender"] for r in records} == {"female", "male"} and len(records) == 54
