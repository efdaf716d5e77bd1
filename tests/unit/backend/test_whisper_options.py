"""The faster-whisper backend's options: LoadModel's and each transcription request's, validated once."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from localmodel.backend_server import InvalidInputError, ModelLoadError
from localmodel.wire import backend_pb2
from localmodel_whisper.__main__ import build_parser
from localmodel_whisper.options import (
    DEFAULT_BEAM_SIZE,
    AudioSource,
    TranscribeOptions,
    UndecodableAudioError,
    audio_source,
    load_settings,
    model_path,
    resolve_compute_type,
    resolve_device,
    transcribe_options,
)

ENGLISH = ["en"]
MULTILINGUAL = ["en", "de", "fr", "ja"]


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"model_file": "/models/whisper"}, "/models/whisper"),
        ({"model": "whisper", "model_path": "/models"}, "/models/whisper"),  # LocalAI: name + directory
        ({"model_file": "/abs/whisper", "model_path": "/models"}, "/abs/whisper"),
        ({"model": "rel/whisper"}, "rel/whisper"),
    ],
)
def test_model_path_resolution(fields: dict[str, str], expected: str) -> None:
    assert model_path(backend_pb2.ModelOptions(**fields)) == Path(expected)


def test_no_model_named_is_a_load_error() -> None:
    with pytest.raises(ModelLoadError, match="no model directory named"):
        model_path(backend_pb2.ModelOptions())


def test_load_defaults() -> None:
    settings = load_settings(backend_pb2.ModelOptions(model_file="/m"))
    assert settings.cpu_threads == len(os.sched_getaffinity(0))
    assert (settings.device, settings.compute_type, settings.beam_size) == ("auto", "", DEFAULT_BEAM_SIZE)


def test_the_command_line_choice_is_overridden_by_the_requests_options() -> None:
    request = backend_pb2.ModelOptions(
        model_file="/m", threads=3, options=["compute_type:float32", "beam_size:2", "pooling:mean"]
    )
    settings = load_settings(request, device="cpu", compute_type="int8")
    assert (settings.cpu_threads, settings.device, settings.compute_type, settings.beam_size) == (
        3,
        "cpu",
        "float32",
        2,
    )
    assert load_settings(
        backend_pb2.ModelOptions(model_file="/m", options=["device:cuda"]), "cpu"
    ).device == ("cuda")


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"options": ["device:tpu"]}, "device: expected one of auto, cpu, cuda, got 'tpu'"),
        ({"options": ["compute_type:int4"]}, "compute_type: expected one of"),
        ({"options": ["beam_size:zero"]}, "beam_size: expected a whole number"),
        ({"options": ["beam_size:0"]}, "beam_size: must be between 1 and"),
        ({"threads": -1}, "threads: must not be negative"),
    ],
)
def test_bad_load_options_say_what_is_allowed(fields: dict[str, Any], reason: str) -> None:
    with pytest.raises(ModelLoadError, match=reason.replace("(", r"\(")):
        load_settings(backend_pb2.ModelOptions(model_file="/m", **fields))


def test_device_and_compute_type_defaults() -> None:
    assert resolve_device("auto", 0) == "cpu"
    assert resolve_device("auto", 2) == "cuda"
    assert resolve_device("cpu", 2) == "cpu"
    assert resolve_compute_type("", "cpu") == "int8"
    assert resolve_compute_type("", "cuda") == "float16"
    assert resolve_compute_type("default", "cuda") == "default"


def test_the_command_line_adds_device_and_compute_type_to_the_model_options() -> None:
    parser = build_parser()
    args = parser.parse_args(["--model", "/m", "--device", "cuda", "--compute-type", "int8_float16"])
    assert (args.device, args.compute_type, args.parallel, args.threads) == ("cuda", "int8_float16", 1, 0)
    assert parser.parse_args([]).device == "auto"
    with pytest.raises(SystemExit):
        parser.parse_args(["--device", "tpu"])


def test_audio_comes_from_the_bytes_else_the_file() -> None:
    assert audio_source(backend_pb2.TranscriptRequest(audio=b"RIFF", dst="/a.wav")) == AudioSource(
        data=b"RIFF"
    )
    assert audio_source(backend_pb2.TranscriptRequest(dst="/a.wav")) == AudioSource(path="/a.wav")
    with pytest.raises(UndecodableAudioError, match="could not be decoded"):
        audio_source(backend_pb2.TranscriptRequest())


def test_request_defaults() -> None:
    options = transcribe_options(backend_pb2.TranscriptRequest(audio=b"x"), ENGLISH)
    assert options == TranscribeOptions(
        language=None, task="transcribe", initial_prompt=None, temperature=None, word_timestamps=False
    )


def test_request_options_map_to_faster_whisper() -> None:
    request = backend_pb2.TranscriptRequest(
        language=" DE ", translate=True, prompt="Kubernetes, gRPC.", temperature=0.4, word_timestamps=True
    )
    options = transcribe_options(request, MULTILINGUAL, beam_size=3)
    assert options == TranscribeOptions(
        language="de",
        task="translate",
        initial_prompt="Kubernetes, gRPC.",
        temperature=(pytest.approx(0.4),),
        word_timestamps=True,
        beam_size=3,
    )


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"language": "xx"}, "language 'xx' is not one this model transcribes (en, de, fr, ja)"),
        ({"temperature": -0.5}, "temperature: must be 0 or more"),
        ({"temperature": float("nan")}, "temperature: must be 0 or more"),
        ({"diarize": True}, "diarize"),
    ],
)
def test_bad_requests_are_the_clients_error(fields: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        transcribe_options(backend_pb2.TranscriptRequest(audio=b"x", **fields), MULTILINGUAL)
    assert reason in str(caught.value)


def test_a_language_the_model_lacks_is_refused_with_the_ones_it_has() -> None:
    with pytest.raises(InvalidInputError, match=r"'fr' is not one this model transcribes \(en\)"):
        transcribe_options(backend_pb2.TranscriptRequest(language="fr"), ENGLISH)
    many = [f"l{i}" for i in range(99)]
    with pytest.raises(InvalidInputError, match=r"\(l0, l1, .*l11, \.\.\.\)"):
        transcribe_options(backend_pb2.TranscriptRequest(language="fr"), many)
