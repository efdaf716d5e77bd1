"""The backends localmodel runs: one table from `spec.backend.type` to everything that differs per engine.

Each engine is a gRPC backend package of its own under backend-images/ (a folder: its package, its
Dockerfiles), speaking the one contract in proto/backend.proto. Adding one is a folder and a row here:
the spec's validation, the CRD's rules, local mode's process, the operator's image and the router's
routing all read this table.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

ModelShape = Literal["file", "directory", "either"]


class Task(StrEnum):
    """What the model is served for; decides how the backend loads it and which API paths reach it."""

    CHAT = "chat"
    COMPLETION = "completion"
    EMBEDDING = "embedding"
    RERANK = "rerank"
    TRANSCRIPTION = "transcription"  # /v1/audio/transcriptions and /v1/audio/translations
    SPEECH = "speech"  # /v1/audio/speech


class BackendType(StrEnum):
    LLAMA_CPP = "llama-cpp"
    FASTER_WHISPER = "faster-whisper"
    PIPER = "piper"


@dataclass(frozen=True)
class BackendKind:
    """One engine: what runs it, where its images come from, and what it serves."""

    type: BackendType
    # The Python package under backend-images/<folder>/ that serves it: `python -m <module>` (local mode).
    module: str
    folder: str
    # The container's command; its arguments are backend_command's.
    entry_point: tuple[str, ...]
    # Default image `<repository>:<version><suffix>` per accelerator profile it has an image for
    # (`cpu` always); a model asking for another vendor's GPUs is refused.
    image_repository: str
    image_suffixes: dict[str, str]
    tasks: frozenset[Task]
    default_tasks: tuple[Task, ...]
    # The gRPC calls of proto/backend.proto it implements, besides Health, LoadModel and Status.
    calls: frozenset[str]
    # What its model source must be: one file, a directory (several files), or either.
    model_source: ModelShape
    # The `pip install 'localmodel[<extra>]'` that brings its engine.
    extra: str

    @property
    def accelerators(self) -> frozenset[str]:
        return frozenset(self.image_suffixes)


BACKENDS: dict[BackendType, BackendKind] = {
    kind.type: kind
    for kind in (
        BackendKind(
            type=BackendType.LLAMA_CPP,
            module="localmodel_llamacpp",
            folder="llama-cpp",
            entry_point=("localmodel", "backend"),
            image_repository="localmodel/backend-llama-cpp",
            image_suffixes={"cpu": "", "nvidia": "-cuda", "amd": "-rocm", "intel": "-sycl"},
            tasks=frozenset({Task.CHAT, Task.COMPLETION, Task.EMBEDDING}),
            default_tasks=(Task.CHAT, Task.COMPLETION),
            calls=frozenset(
                {"Predict", "PredictStream", "Embedding", "TokenizeString", "Detokenize", "GetMetrics"}
            ),
            model_source="file",
            extra="backend",
        ),
        BackendKind(
            type=BackendType.FASTER_WHISPER,
            module="localmodel_whisper",
            folder="faster-whisper",
            entry_point=("python", "-m", "localmodel_whisper"),
            image_repository="localmodel/backend-faster-whisper",
            image_suffixes={"cpu": "", "nvidia": "-cuda"},
            tasks=frozenset({Task.TRANSCRIPTION}),
            default_tasks=(Task.TRANSCRIPTION,),
            calls=frozenset({"AudioTranscription", "AudioTranscriptionStream"}),
            model_source="directory",
            extra="whisper",
        ),
        BackendKind(
            type=BackendType.PIPER,
            module="localmodel_piper",
            folder="piper",
            entry_point=("python", "-m", "localmodel_piper"),
            image_repository="localmodel/backend-piper",
            image_suffixes={"cpu": ""},
            tasks=frozenset({Task.SPEECH}),
            default_tasks=(Task.SPEECH,),
            calls=frozenset({"TTS", "TTSStream"}),
            # A voice is `<name>.onnx` with `<name>.onnx.json` beside it: their directory, or the .onnx file.
            model_source="either",
            extra="piper",
        ),
    )
}

# A task no engine of ours serves: only a backend brought by address or image can (a LocalAI reranker).
EXTERNAL_ONLY_TASKS = frozenset(Task) - frozenset().union(*(kind.tasks for kind in BACKENDS.values()))


def backend_kind(backend_type: BackendType | str) -> BackendKind:
    return BACKENDS[BackendType(backend_type)]


def unservable_tasks(backend_type: BackendType, tasks: list[Task]) -> list[Task]:
    """The tasks of `tasks` that an engine of `backend_type` cannot serve, in the order given."""
    served = BACKENDS[backend_type].tasks
    return [task for task in tasks if task not in served and task not in EXTERNAL_ONLY_TASKS]
