"""The audio endpoints' pure parts: subtitles, the streaming WAV header, upload and voice checks."""

from __future__ import annotations

import io
import struct
import wave
from dataclasses import dataclass

import pytest

from localmodel_router.languages import WHISPER_LANGUAGES, language_name
from localmodel_router.protocol.audio import VoiceId
from localmodel_router.serving.audio import is_audio
from localmodel_router.subtitles import srt, timestamp, vtt
from localmodel_router.translate_audio import voice
from localmodel_router.wav import UNKNOWN_SIZE, streaming_wav_header


@dataclass
class Piece:
    start: float
    end: float
    text: str


PIECES = [Piece(0.0, 1.5, " The quick brown fox"), Piece(1.5, 3.2554, " jumps over the lazy dog.")]


def test_srt_numbers_cues_from_one_with_comma_milliseconds() -> None:
    assert srt(PIECES) == (
        "1\n00:00:00,000 --> 00:00:01,500\nThe quick brown fox\n\n"
        "2\n00:00:01,500 --> 00:00:03,255\njumps over the lazy dog.\n\n"
    )


def test_vtt_starts_with_its_signature_and_uses_dot_milliseconds() -> None:
    assert vtt(PIECES) == (
        "WEBVTT\n\n"
        "00:00:00.000 --> 00:00:01.500\nThe quick brown fox\n\n"
        "00:00:01.500 --> 00:00:03.255\njumps over the lazy dog.\n\n"
    )


def test_no_segments_make_empty_subtitles() -> None:
    assert srt([]) == ""
    assert vtt([]) == "WEBVTT\n\n"


@pytest.mark.parametrize(
    ("seconds", "srt_time"),
    [
        (0, "00:00:00,000"),
        (0.0004, "00:00:00,000"),
        (0.0006, "00:00:00,001"),
        (59.9996, "00:01:00,000"),  # rounding carries into the minutes
        (3661.25, "01:01:01,250"),
        (360000.0, "100:00:00,000"),  # hours grow, never wrap
        (-0.2, "00:00:00,000"),
    ],
)
def test_timestamps(seconds: float, srt_time: str) -> None:
    assert timestamp(seconds, ",") == srt_time
    assert timestamp(seconds, ".") == srt_time.replace(",", ".")


def test_streaming_wav_header_is_a_pcm_header_with_unknown_sizes() -> None:
    header = streaming_wav_header(22050)
    assert len(header) == 44
    assert header[:4] == b"RIFF" and header[8:16] == b"WAVEfmt " and header[36:40] == b"data"
    assert struct.unpack_from("<I", header, 4)[0] == UNKNOWN_SIZE
    assert struct.unpack_from("<I", header, 40)[0] == UNKNOWN_SIZE
    fmt, channels, rate, byte_rate, block, bits = struct.unpack_from("<HHIIHH", header, 20)
    assert (fmt, channels, rate, byte_rate, block, bits) == (1, 1, 22050, 44100, 2, 16)


def test_a_wav_reader_reads_the_streamed_samples_to_the_end() -> None:
    samples = struct.pack("<5h", 0, 1000, -1000, 32767, -32768)
    reader = wave.open(io.BytesIO(streaming_wav_header(16000) + samples))
    assert (reader.getnchannels(), reader.getsampwidth(), reader.getframerate()) == (1, 2, 16000)
    assert reader.readframes(1 << 20) == samples


@pytest.mark.parametrize(
    ("filename", "content_type", "audio"),
    [
        ("speech.wav", "audio/x-wav", True),
        ("speech.wav", "application/octet-stream", True),
        ("speech.WEBM", None, True),
        ("recording", "audio/ogg", True),
        ("clip", "video/mp4", True),
        ("upload", "application/octet-stream", False),
        ("notes.txt", "text/plain", False),
        ("notes.txt", "application/octet-stream", False),
        (None, None, False),
    ],
)
def test_uploads_are_audio_by_name_or_content_type(
    filename: str | None, content_type: str | None, audio: bool
) -> None:
    assert is_audio(filename, content_type) is audio


def test_openai_voice_names_mean_the_models_default_voice() -> None:
    assert voice("alloy") == voice("Nova") == voice("") == ""
    assert voice(VoiceId(id="shimmer")) == ""
    assert voice("joe") == "joe"
    assert voice(VoiceId(id="speaker_3")) == "speaker_3"


def test_language_names_as_openai_gives_them() -> None:
    assert language_name("en") == "english" and language_name("DE") == "german"
    assert language_name("yue") == "cantonese"
    assert language_name("xx") == "xx"
    assert len(WHISPER_LANGUAGES) == 100
