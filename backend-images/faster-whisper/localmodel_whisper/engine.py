"""faster-whisper (CTranslate2) behind a small blocking interface: load a model, transcribe audio.

Every method blocks; the servicer runs them in the runtime's worker threads (WorkQueue). A transcription
is a lazy generator, as faster-whisper's own: each segment as it is decoded, so a stream shows it at once
and a cancelled call stops at the next segment.
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import ctranslate2
from faster_whisper import WhisperModel, decode_audio
from faster_whisper.transcribe import Segment

from localmodel.backend_server import EngineError, ModelLoadError, ModelNotLoadedError
from localmodel_whisper.options import (
    AudioSource,
    LoadSettings,
    TranscribeOptions,
    UndecodableAudioError,
    resolve_compute_type,
    resolve_device,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Piece:
    """One step of a transcription: a decoded segment, or (segment None) the end."""

    language: str  # detected, or the one asked for
    duration: float  # seconds of audio
    segment: Segment | None


@dataclass(frozen=True)
class Loaded:
    model: Any  # faster_whisper.WhisperModel
    settings: LoadSettings
    device: str
    compute_type: str


class WhisperEngine:
    def __init__(self, workers: int = 1) -> None:
        self._workers = workers  # transcriptions CTranslate2 runs at once (the queue's slots)
        self._loaded: Loaded | None = None
        self._lock = threading.Lock()  # one load at a time

    @property
    def loaded(self) -> bool:
        return self._loaded is not None

    @property
    def languages(self) -> list[str]:
        """The language codes the loaded model transcribes."""
        return list(self._require().model.supported_languages)

    @property
    def beam_size(self) -> int:
        return self._require().settings.beam_size

    def load(self, settings: LoadSettings) -> str:
        """Load the model directory in `settings` (replacing any loaded one once it has loaded); what was
        loaded, for the log. Raises ModelLoadError with the reason."""
        path = settings.model_path
        if not path.exists():
            raise ModelLoadError(f"no model directory at {path}")
        if not path.is_dir():
            raise ModelLoadError(
                f"{path} is a file; faster-whisper loads a CTranslate2 model directory "
                "(model.bin, config.json, tokenizer.json)"
            )
        if not (path / "model.bin").is_file():
            raise ModelLoadError(f"{path} is not a CTranslate2 Whisper model: it has no model.bin")
        device = resolve_device(settings.device, ctranslate2.get_cuda_device_count())
        compute_type = resolve_compute_type(settings.compute_type, device)
        with self._lock:
            try:
                model = WhisperModel(
                    str(path),
                    device=device,
                    compute_type=compute_type,
                    cpu_threads=settings.cpu_threads,
                    num_workers=self._workers,
                    local_files_only=True,  # a directory, never a download
                )
            except Exception as error:  # CTranslate2's reasons: a bad model.bin, no CUDA, a compute type
                raise ModelLoadError(
                    f"could not load {path} on {device} ({compute_type}): {error}"
                ) from error
            self._loaded = Loaded(model, settings, device, compute_type)
        log.info(
            "whisper model ready",
            extra={
                "model": str(path),
                "device": device,
                "device_asked": settings.device,
                "compute_type": compute_type,
                "cpu_threads": settings.cpu_threads,
                "workers": self._workers,
                "multilingual": bool(model.model.is_multilingual),
                "beam_size": settings.beam_size,
            },
        )
        return str(path)

    def transcribe(self, source: AudioSource, options: TranscribeOptions) -> Iterator[Piece]:
        """Each segment as it is decoded, then the end; raises UndecodableAudioError for audio it cannot
        read and EngineError (INTERNAL) if CTranslate2 fails."""
        loaded = self._require()
        audio = decode(source, loaded.model.feature_extractor.sampling_rate)
        keywords: dict[str, Any] = {
            "language": options.language,
            "task": options.task,
            "beam_size": options.beam_size,
            "initial_prompt": options.initial_prompt,
            "word_timestamps": options.word_timestamps,
        }
        if options.temperature is not None:  # else faster-whisper's fallback temperatures
            keywords["temperature"] = list(options.temperature)
        try:
            segments, info = loaded.model.transcribe(audio, **keywords)
            for segment in segments:
                yield Piece(info.language, info.duration, segment)
        except Exception as error:
            log.exception("transcription failed")
            raise EngineError(f"transcription failed: {error}") from error
        yield Piece(info.language, info.duration, None)

    def _require(self) -> Loaded:
        loaded = self._loaded
        if loaded is None:
            raise ModelNotLoadedError("no model is loaded; call LoadModel first")
        return loaded


def decode(source: AudioSource, sampling_rate: int) -> Any:
    """The audio as mono float32 samples at `sampling_rate` (a numpy array), decoded by FFmpeg (PyAV):
    WAV, MP3, FLAC, OGG, WebM, M4A and whatever else it reads."""
    if not source.path and not source.data:
        raise UndecodableAudioError("the audio could not be decoded: it is empty")
    try:
        return decode_audio(source.path or io.BytesIO(source.data), sampling_rate=sampling_rate)
    except Exception as error:  # PyAV's errors, and IndexError for a file with no audio stream
        raise UndecodableAudioError(
            f"the audio could not be decoded ({source.describe()}; WAV, MP3, FLAC, OGG, WebM or any other "
            f"format FFmpeg reads): {error}"
        ) from error
