"""Pure: timed segments → SubRip (srt) and WebVTT (vtt) subtitles, as OpenAI's transcriptions give them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol


class Timed(Protocol):
    """A piece of the transcript: seconds from the audio's start, and its text."""

    @property
    def start(self) -> float: ...

    @property
    def end(self) -> float: ...

    @property
    def text(self) -> str: ...


def timestamp(seconds: float, decimal_mark: str) -> str:
    """`HH:MM:SS,mmm` (srt: `,`) or `HH:MM:SS.mmm` (vtt: `.`), rounded to the millisecond; hours
    grow past two digits rather than wrap."""
    millis = max(0, round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal_mark}{millis:03d}"


def srt(segments: Iterable[Timed]) -> str:
    """Numbered cues from 1: `1\\n00:00:00,000 --> 00:00:01,500\\ntext\\n\\n`."""
    return "".join(
        f"{number}\n{timestamp(s.start, ',')} --> {timestamp(s.end, ',')}\n{s.text.strip()}\n\n"
        for number, s in enumerate(segments, start=1)
    )


def vtt(segments: Iterable[Timed]) -> str:
    """`WEBVTT` and unnumbered cues: `WEBVTT\\n\\n00:00:00.000 --> 00:00:01.500\\ntext\\n\\n`."""
    cues = "".join(
        f"{timestamp(s.start, '.')} --> {timestamp(s.end, '.')}\n{s.text.strip()}\n\n" for s in segments
    )
    return f"WEBVTT\n\n{cues}"
