"""A TTS request's `speed` and `voice` as Piper's synthesis settings."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from localmodel.backend_server import InvalidInputError

# OpenAI's range for `speed`; 0 (the field unset) means 1.
MIN_SPEED = 0.25
MAX_SPEED = 4.0
# How many speaker names an error lists (a LibriTTS voice has 904).
LISTED_SPEAKERS = 20


@dataclass(frozen=True)
class Speakers:
    """A voice's speakers, from its config: `count` of them, some with names."""

    count: int
    ids: Mapping[str, int]


@dataclass(frozen=True)
class Speech:
    """How one request is spoken: Piper's SynthesisConfig fields that it sets."""

    length_scale: float
    speaker_id: int | None  # None: the voice's only (or default) speaker


def length_scale(speed: float, default_length_scale: float) -> float:
    """Piper's phoneme length scale for a speaking rate: the voice's own scale, divided by `speed`."""
    if speed == 0:
        speed = 1.0
    if not (math.isfinite(speed) and MIN_SPEED <= speed <= MAX_SPEED):
        raise InvalidInputError(f"speed must be between {MIN_SPEED} and {MAX_SPEED:g}, got {speed:g}")
    return default_length_scale / speed


def speaker_id(voice: str, speakers: Speakers) -> int | None:
    """The speaker `voice` names: a name from the config's speaker_id_map, or a number; "" the default.

    A one-speaker voice speaks whatever voice is asked for: OpenAI's clients always name one of
    theirs (alloy, echo, ...), and there is no other to give them.
    """
    voice = voice.strip()
    if speakers.count <= 1 or not voice:
        return None
    if voice in speakers.ids:
        return speakers.ids[voice]
    if voice.isdigit():
        number = int(voice)
        if number < speakers.count:
            return number
        raise InvalidInputError(f"voice {voice}: this model has speakers 0 to {speakers.count - 1}")
    raise InvalidInputError(f"unknown voice {voice!r}: this model's speakers are {_listed(speakers)}")


def _listed(speakers: Speakers) -> str:
    names = sorted(speakers.ids, key=lambda name: speakers.ids[name])
    if not names:
        return f"numbered 0 to {speakers.count - 1}"
    shown = ", ".join(names[:LISTED_SPEAKERS])
    more = f", ... ({len(names)} in all)" if len(names) > LISTED_SPEAKERS else ""
    return f"{shown}{more} (or a number, 0 to {speakers.count - 1})"


def speech_settings(speed: float, voice: str, default_length_scale: float, speakers: Speakers) -> Speech:
    return Speech(length_scale(speed, default_length_scale), speaker_id(voice, speakers))
