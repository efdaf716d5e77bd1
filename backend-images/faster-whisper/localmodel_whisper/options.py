"""From the contract's messages to the engine's settings: pure functions, validated once here.

LoadModel's ModelOptions become a `LoadSettings`; each TranscriptRequest becomes an `AudioSource` and
`TranscribeOptions`. What cannot work is refused with the reason: ModelLoadError for a load, the
runtime's InvalidInputError (INVALID_ARGUMENT) for a request.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from localmodel.backend_server import InvalidInputError, ModelLoadError
from localmodel.cpus import available_cpus
from localmodel.wire import backend_pb2

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda")
# CTranslate2's compute types ("default": the model's own, converted to what the device runs well).
COMPUTE_TYPES = (
    "default",
    "auto",
    "int8",
    "int8_float32",
    "int8_float16",
    "int8_bfloat16",
    "int16",
    "float16",
    "bfloat16",
    "float32",
)
# Chosen when none is given: int8 is the fastest on CPUs at a negligible loss of accuracy for Whisper;
# GPUs run float16 natively.
DEFAULT_COMPUTE_TYPES = {"cpu": "int8", "cuda": "float16"}
DEFAULT_BEAM_SIZE = 5  # faster-whisper's and OpenAI's whisper's default
MAX_BEAM_SIZE = 16


@dataclass(frozen=True)
class LoadSettings:
    model_path: Path
    cpu_threads: int
    device: str = "auto"  # auto: cuda where CTranslate2 sees a GPU, else cpu
    compute_type: str = ""  # "": DEFAULT_COMPUTE_TYPES for the device chosen
    beam_size: int = DEFAULT_BEAM_SIZE


def load_settings(
    request: backend_pb2.ModelOptions, device: str = "auto", compute_type: str = ""
) -> LoadSettings:
    """LoadModel's request as LoadSettings; `device` and `compute_type` are the command line's, which
    the request's `device:` and `compute_type:` options override."""
    if request.threads < 0:
        raise ModelLoadError(f"threads: must not be negative, got {request.threads}")
    options = parse_options(request.options)
    device = options.get("device", device)
    compute_type = options.get("compute_type", compute_type)
    if device not in DEVICES:
        raise ModelLoadError(f"device: expected one of {', '.join(DEVICES)}, got {device!r}")
    if compute_type and compute_type not in COMPUTE_TYPES:
        raise ModelLoadError(
            f"compute_type: expected one of {', '.join(COMPUTE_TYPES)}, got {compute_type!r}"
        )
    beam_size = DEFAULT_BEAM_SIZE
    if "beam_size" in options:
        beam_size = _parse_int("beam_size", options["beam_size"], 1, MAX_BEAM_SIZE)
    return LoadSettings(
        model_path=model_path(request),
        cpu_threads=request.threads or available_cpus(),
        device=device,
        compute_type=compute_type,
        beam_size=beam_size,
    )


def model_path(request: backend_pb2.ModelOptions) -> Path:
    """The model directory, named the ways LocalAI names it: the full path in `model_file`, or the name
    in `model` inside the models directory `model_path`."""
    name = request.model_file or request.model
    if not name:
        raise ModelLoadError("model_file / model: no model directory named")
    path = Path(name)
    if not path.is_absolute() and request.model_path:
        path = Path(request.model_path) / path
    return path


def parse_options(options: Iterable[str]) -> dict[str, str]:
    """The "key:value" options this backend knows. LocalAI passes options meant for many backends:
    unknown keys are logged and ignored, not fatal."""
    known: dict[str, str] = {}
    for option in options:
        key, _, value = option.partition(":")
        if key in ("device", "compute_type", "beam_size"):
            known[key] = value.strip()
        else:
            log.warning("ignoring backend option this backend does not know", extra={"option": option})
    return known


def resolve_device(device: str, cuda_devices: int) -> str:
    """`auto` as the device it means on this machine."""
    if device == "auto":
        return "cuda" if cuda_devices > 0 else "cpu"
    return device


def resolve_compute_type(compute_type: str, device: str) -> str:
    return compute_type or DEFAULT_COMPUTE_TYPES[device]


@dataclass(frozen=True)
class AudioSource:
    """The audio to transcribe: the request's bytes, else a file the backend reads."""

    data: bytes = b""
    path: str = ""

    def describe(self) -> str:
        return f"file {self.path}" if self.path else f"{len(self.data)} bytes of audio"


@dataclass(frozen=True)
class TranscribeOptions:
    language: str | None  # None: detect
    task: str  # "transcribe" or "translate" (into English)
    initial_prompt: str | None
    temperature: tuple[float, ...] | None  # None: faster-whisper's fallback temperatures
    word_timestamps: bool
    beam_size: int = DEFAULT_BEAM_SIZE


class UndecodableAudioError(InvalidInputError):
    """The request's audio is missing or in no format the backend decodes."""


def audio_source(request: backend_pb2.TranscriptRequest) -> AudioSource:
    if request.audio:
        return AudioSource(data=request.audio)
    if request.dst:
        return AudioSource(path=request.dst)
    raise UndecodableAudioError(
        "the audio could not be decoded: the request has none (audio and dst are empty)"
    )


def transcribe_options(
    request: backend_pb2.TranscriptRequest, languages: Sequence[str], beam_size: int = DEFAULT_BEAM_SIZE
) -> TranscribeOptions:
    """The request's options; `languages`: the codes the loaded model transcribes."""
    if request.diarize:
        raise InvalidInputError("diarize: this backend does not tell speakers apart")
    language = request.language.strip().lower() or None
    if language is not None and language not in languages:
        shown = ", ".join(languages) if len(languages) <= 12 else ", ".join(languages[:12]) + ", ..."
        raise InvalidInputError(f"language {request.language!r} is not one this model transcribes ({shown})")
    temperature = request.temperature
    if not math.isfinite(temperature) or temperature < 0:
        raise InvalidInputError(f"temperature: must be 0 or more, got {temperature}")
    return TranscribeOptions(
        language=language,
        task="translate" if request.translate else "transcribe",
        initial_prompt=request.prompt or None,
        temperature=(temperature,) if temperature > 0 else None,
        word_timestamps=request.word_timestamps,
        beam_size=beam_size,
    )


def _parse_int(name: str, value: str, low: int, high: int) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ModelLoadError(f"{name}: expected a whole number, got {value!r}") from None
    if not low <= number <= high:
        raise ModelLoadError(f"{name}: must be between {low} and {high}, got {number}")
    return number
