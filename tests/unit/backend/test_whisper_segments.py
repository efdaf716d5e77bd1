"""faster-whisper's segments and words as the contract's messages, and the audio it cannot decode."""

from __future__ import annotations

import io
import wave
from pathlib import Path

import pytest
from faster_whisper.transcribe import Segment, Word

from localmodel.backend_server import ModelLoadError, ModelNotLoadedError
from localmodel.wire import backend_pb2
from localmodel_whisper.engine import WhisperEngine, decode
from localmodel_whisper.options import AudioSource, LoadSettings, UndecodableAudioError
from localmodel_whisper.servicer import joined, nanoseconds, segment_proto


def segment(text: str, start: float, end: float, words: list[Word] | None = None) -> Segment:
    return Segment(
        id=7,
        seek=300,
        start=start,
        end=end,
        text=text,
        tokens=[50363, 383, 2068],
        avg_logprob=-0.25,
        compression_ratio=1.2,
        no_speech_prob=0.01,
        words=words,
        temperature=None,
    )


def test_times_are_nanoseconds() -> None:
    assert nanoseconds(0.0) == 0
    assert nanoseconds(1.5) == 1_500_000_000
    assert nanoseconds(2.36) == 2_360_000_000  # rounded, not truncated (2.36 * 1e9 = 2359999999.99...)


def test_a_segment_as_the_contracts() -> None:
    words = [Word(start=0.0, end=0.28, word=" The", probability=0.67), Word(0.28, 0.56, " quick", 0.77)]
    converted = segment_proto(segment(" The quick", 0.0, 0.56, words), 0)
    assert converted == backend_pb2.TranscriptSegment(
        id=0,
        start=0,
        end=560_000_000,
        text=" The quick",
        tokens=[50363, 383, 2068],
        seek=300,
        temperature=0.0,
        avg_logprob=-0.25,
        compression_ratio=1.2,
        no_speech_prob=0.01,
        words=[
            backend_pb2.TranscriptWord(word=" The", start=0, end=280_000_000, probability=0.67),
            backend_pb2.TranscriptWord(word=" quick", start=280_000_000, end=560_000_000, probability=0.77),
        ],
    )


def test_segment_ids_are_positions_and_words_only_when_asked() -> None:
    converted = segment_proto(segment(" fox.", 1.0, 2.0), 3)
    assert converted.id == 3 and not converted.words


def test_the_whole_text_has_no_leading_space() -> None:
    segments = [segment_proto(segment(text, 0, 1), i) for i, text in enumerate([" One.", " Two."])]
    assert joined(segments) == "One. Two."
    assert joined([]) == ""


@pytest.mark.parametrize(
    "data", [b"\x00\x01garbage" * 100, b"plain text, not audio\n" * 40], ids=["random", "text"]
)
def test_undecodable_audio_says_so(data: bytes) -> None:
    with pytest.raises(UndecodableAudioError, match="could not be decoded"):
        decode(AudioSource(data=data), 16_000)


def test_a_missing_file_names_itself(tmp_path: Path) -> None:
    with pytest.raises(UndecodableAudioError, match="missing.wav"):
        decode(AudioSource(path=str(tmp_path / "missing.wav")), 16_000)


def test_a_wav_is_resampled_to_the_models_rate() -> None:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(22_050)
        out.writeframes(b"\x00\x10" * 2 * 22_050)  # one second
    samples = decode(AudioSource(data=buffer.getvalue()), 16_000)
    assert samples.ndim == 1 and abs(len(samples) - 16_000) < 200


def test_load_failures_name_the_directory_and_why(tmp_path: Path) -> None:
    engine = WhisperEngine()
    (tmp_path / "file.bin").write_bytes(b"x")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "model.bin").write_bytes(b"not CTranslate2")
    cases = {
        tmp_path / "missing": "no model directory at",
        tmp_path / "file.bin": "is a file",
        tmp_path: "has no model.bin",
        tmp_path / "broken": "could not load",
    }
    for path, reason in cases.items():
        with pytest.raises(ModelLoadError, match=reason) as caught:
            engine.load(LoadSettings(model_path=path, cpu_threads=1, device="cpu"))
        assert str(path) in str(caught.value)
    assert not engine.loaded
    with pytest.raises(ModelNotLoadedError):
        list(engine.transcribe(AudioSource(data=b"x"), None))  # type: ignore[arg-type]
