"""The engine table and what the spec refuses by it: each engine serves its own tasks, model shape and
GPUs, and llama.cpp's options are llama.cpp's."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from localmodel.backend_types import BACKENDS, EXTERNAL_ONLY_TASKS, BackendType, Task
from localmodel.spec import LocalModelSpec


def spec(backend_type: str, url: str, **fields: Any) -> LocalModelSpec:
    backend = {"type": backend_type, **fields.pop("backend", {})}
    return LocalModelSpec.model_validate({"model": {"url": url}, "backend": backend, **fields})


def test_every_task_has_an_engine_or_is_said_to_need_one_of_your_own() -> None:
    served = set().union(*(kind.tasks for kind in BACKENDS.values()))
    assert served | EXTERNAL_ONLY_TASKS == set(Task)
    assert EXTERNAL_ONLY_TASKS == {Task.RERANK}


@pytest.mark.parametrize(
    ("backend_type", "url", "tasks"),
    [
        ("llama-cpp", "hf://o/r/m.gguf", [Task.CHAT, Task.COMPLETION]),
        ("faster-whisper", "hf://Systran/faster-whisper-tiny.en", [Task.TRANSCRIPTION]),
        ("piper", "file:///voices/joe/", [Task.SPEECH]),
        ("piper", "file:///voices/joe/en_US-joe-medium.onnx", [Task.SPEECH]),  # a voice file with its .json
    ],
)
def test_tasks_default_to_the_engines(backend_type: str, url: str, tasks: list[Task]) -> None:
    assert spec(backend_type, url).tasks == tasks


@pytest.mark.parametrize(
    ("backend_type", "url", "fields", "message"),
    [
        (
            "piper",
            "file:///v/",
            {"tasks": ["chat"]},
            "backend type piper does not serve chat: it serves speech",
        ),
        (
            "llama-cpp",
            "file:///m.gguf",
            {"tasks": ["transcription"]},
            "llama-cpp does not serve transcription",
        ),
        ("faster-whisper", "file:///w/m.bin", {}, "backend type faster-whisper loads a model directory"),
        ("llama-cpp", "hf://o/r", {}, "backend type llama-cpp serves one model file"),
        ("piper", "file:///v/", {"resources": {"gpu": {"count": 1}}}, "piper has no image for nvidia GPUs"),
        ("faster-whisper", "hf://o/r", {"resources": {"gpu": {"vendor": "amd"}}}, "no image for amd GPUs"),
        (
            "faster-whisper",
            "hf://o/r",
            {"backend": {"engine": {"contextSize": 448}}},
            "backend.engine.contextSize is a llama-cpp option",
        ),
    ],
)
def test_what_an_engine_cannot_serve_is_refused_naming_both(
    backend_type: str, url: str, fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        spec(backend_type, url, **fields)


def test_a_directory_has_no_one_checksum() -> None:
    with pytest.raises(ValidationError, match="model.sha256 checks one file: a directory source takes none"):
        LocalModelSpec.model_validate(
            {"model": {"url": "file:///w/", "sha256": "0" * 64}, "backend": {"type": "faster-whisper"}}
        )


def test_an_external_backend_serves_whatever_it_says() -> None:
    external = LocalModelSpec.model_validate(
        {"backend": {"type": "piper", "address": "tts:50051"}, "tasks": ["speech", "transcription"]}
    )
    assert external.tasks == [Task.SPEECH, Task.TRANSCRIPTION]


def test_an_image_of_your_own_may_bring_its_gpus() -> None:
    own = spec("piper", "file:///v/", backend={"image": "me/piper-gpu:1"}, resources={"gpu": {"count": 1}})
    assert own.resources.gpu is not None


def test_the_table_names_what_each_engine_runs() -> None:
    whisper = BACKENDS[BackendType.FASTER_WHISPER]
    assert whisper.entry_point == ("python", "-m", whisper.module)
    assert {kind.image_suffixes["cpu"] for kind in BACKENDS.values()} == {""}  # every engine has a CPU image
    assert all(kind.default_tasks and set(kind.default_tasks) <= kind.tasks for kind in BACKENDS.values())
