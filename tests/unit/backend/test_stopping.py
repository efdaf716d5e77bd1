from __future__ import annotations

import pytest

from localmodel_llamacpp.stopping import StopMatcher


def run(stops: tuple[str, ...], pieces: list[str]) -> tuple[str, bool]:
    matcher = StopMatcher(stops)
    sent = []
    for piece in pieces:
        text, stopped = matcher.feed(piece)
        sent.append(text)
        if stopped:
            return "".join(sent), True
    return "".join(sent) + matcher.flush(), False


@pytest.mark.parametrize(
    ("stops", "pieces", "expected"),
    [
        ((), ["Hello", " world"], ("Hello world", False)),
        (("\n\n",), ["one\n", "\ntwo"], ("one", True)),  # stop string split across pieces
        (("END",), ["abc E", "N", "D more"], ("abc ", True)),
        (("END",), ["abc E", "N", "x"], ("abc ENx", False)),  # a false start is sent after all
        (("END",), ["abc EN"], ("abc EN", False)),  # held text is flushed when generation ends
        (("xyz", "b"), ["aaxyb"], ("aaxy", True)),  # the earliest stop wins
        (("ab", "b"), ["cab"], ("c", True)),
    ],
)
def test_stop_strings(stops: tuple[str, ...], pieces: list[str], expected: tuple[str, bool]) -> None:
    assert run(stops, pieces) == expected


def test_text_that_may_start_a_stop_string_is_held_back() -> None:
    matcher = StopMatcher(("STOP",))
    assert matcher.feed("go ST") == ("go ", False)
    assert matcher.feed("O") == ("", False)
    assert matcher.feed("RM") == ("STORM", False)


@pytest.mark.parametrize(
    ("stops", "pieces", "matched"),
    [
        (("END",), ["abc E", "N", "D more"], "END"),
        (("xyz", "b"), ["aaxyb"], "b"),  # the earliest in the text
        (("ab", "abc"), ["xabc"], "ab"),  # two starting at one place: the one listed first
        (("END",), ["abc EN"], ""),  # none reached
    ],
)
def test_the_stop_string_reached_is_remembered(
    stops: tuple[str, ...], pieces: list[str], matched: str
) -> None:
    matcher = StopMatcher(stops)
    for piece in pieces:
        if matcher.feed(piece)[1]:
            break
    assert matcher.matched == matched
