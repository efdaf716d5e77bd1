"""A TTS request's speed and voice as Piper's length scale and speaker."""

from __future__ import annotations

import math

import pytest

from localmodel.backend_server import InvalidInputError
from localmodel_piper.speech import Speakers, Speech, length_scale, speaker_id, speech_settings

ONE = Speakers(count=1, ids={})
SEVERAL = Speakers(count=3, ids={"amy": 0, "bob": 1, "cat": 2})


@pytest.mark.parametrize(
    ("speed", "default", "expected"),
    [
        (0.0, 1.0, 1.0),  # unset: normal speed
        (1.0, 1.0, 1.0),
        (2.0, 1.0, 0.5),  # twice as fast: phonemes half as long
        (0.5, 1.0, 2.0),
        (0.25, 1.0, 4.0),
        (4.0, 1.0, 0.25),
        (2.0, 1.2, 0.6),  # relative to the voice's own scale
        (0.0, 0.9, 0.9),
    ],
)
def test_speed_divides_the_voices_length_scale(speed: float, default: float, expected: float) -> None:
    assert length_scale(speed, default) == pytest.approx(expected)


@pytest.mark.parametrize("speed", [0.2, 4.01, 5.0, -1.0, math.nan, math.inf])
def test_speeds_outside_openais_range_are_refused(speed: float) -> None:
    with pytest.raises(InvalidInputError, match="speed must be between 0.25 and 4"):
        length_scale(speed, 1.0)


@pytest.mark.parametrize("voice", ["", "alloy", "echo", "anything", "3"])
def test_a_one_speaker_voice_speaks_whatever_voice_is_asked(voice: str) -> None:
    assert speaker_id(voice, ONE) is None


def test_a_speaker_is_named_by_its_name_or_number() -> None:
    assert speaker_id("", SEVERAL) is None  # the voice's default speaker
    assert speaker_id("bob", SEVERAL) == 1
    assert speaker_id(" cat ", SEVERAL) == 2
    assert speaker_id("0", SEVERAL) == 0
    assert speaker_id("2", SEVERAL) == 2


def test_an_unknown_speaker_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(
        InvalidInputError, match=r"unknown voice 'alloy'.*amy, bob, cat \(or a number, 0 to 2\)"
    ):
        speaker_id("alloy", SEVERAL)
    with pytest.raises(InvalidInputError, match="speakers 0 to 2"):
        speaker_id("3", SEVERAL)
    with pytest.raises(InvalidInputError, match="numbered 0 to 3"):
        speaker_id("nobody", Speakers(count=4, ids={}))


def test_a_long_speaker_list_is_cut_short() -> None:
    many = Speakers(count=904, ids={f"p{number}": number for number in range(904)})
    with pytest.raises(InvalidInputError) as refused:
        speaker_id("alloy", many)
    message = str(refused.value)
    assert "p0, p1," in message and "p19, ... (904 in all)" in message and "p20" not in message


def test_speech_settings_combine_both() -> None:
    assert speech_settings(2.0, "bob", 1.0, SEVERAL) == Speech(length_scale=0.5, speaker_id=1)
    assert speech_settings(0.0, "alloy", 1.0, ONE) == Speech(length_scale=1.0, speaker_id=None)
