"""Pure: the WAV header that goes before streamed 16-bit mono PCM whose length is not known yet."""

from __future__ import annotations

import io
import struct
import wave

# RIFF's "size unknown": a stream's sizes are not known when its header is sent, so both size fields
# say the largest value, as streaming WAV servers write them; readers (ffmpeg, browsers, Python's
# `wave`) then read the samples to the end of the body.
UNKNOWN_SIZE = 0xFFFFFFFF
_RIFF_SIZE_AT, _DATA_SIZE_AT = 4, 40  # offsets of the two size fields in the 44-byte PCM header


def streaming_wav_header(sample_rate: int, channels: int = 1, sample_width: int = 2) -> bytes:
    """The 44-byte header of a PCM WAV stream (`sample_width` bytes per sample, little-endian), written by
    the stdlib `wave` module, with its sizes set to UNKNOWN_SIZE."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(channels)
        writer.setsampwidth(sample_width)
        writer.setframerate(sample_rate)
        writer.writeframesraw(b"")  # writes the header, sizes 0
        header = bytearray(buffer.getvalue())
    struct.pack_into("<I", header, _RIFF_SIZE_AT, UNKNOWN_SIZE)
    struct.pack_into("<I", header, _DATA_SIZE_AT, UNKNOWN_SIZE)
    return bytes(header)
