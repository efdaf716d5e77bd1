"""The Backend gRPC service for Piper: TTS and TTSStream as thin adapters from the contract to the voice.

Health, LoadModel and Status, the work queue and the error mapping are the shared runtime's
(localmodel/backend_server.py).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import aclosing
from pathlib import Path
from typing import Any, TypeVar

from grpc_health.v1.health import aio as health_aio

from localmodel.backend_server import EngineServicer, InvalidInputError, WorkQueue
from localmodel.wire import backend_pb2
from localmodel_piper.engine import Voice, load_voice
from localmodel_piper.speech import Speech, speech_settings
from localmodel_piper.voices import model_source, voice_files, voice_option

log = logging.getLogger(__name__)

T = TypeVar("T")


class PiperServicer(EngineServicer):
    def __init__(self, health: health_aio.HealthServicer, queue: WorkQueue, accepts_load_model: bool) -> None:
        super().__init__(health, queue, accepts_load_model)
        self._voice: Voice | None = None

    def load_model(self, request: backend_pb2.ModelOptions) -> str:
        source = model_source(request.model_file, request.model, request.model_path)
        voice = load_voice(voice_files(source, voice_option(request.options)), request.threads)
        self._voice = voice  # a request already running keeps the voice it started with
        return f"{voice.files.model} ({voice.sample_rate} Hz, {voice.threads} threads)"

    @property
    def loaded(self) -> bool:
        return self._voice is not None

    async def TTSStream(
        self, request: backend_pb2.TTSRequest, context: Any
    ) -> AsyncIterator[backend_pb2.Reply]:
        async with self.call(context):
            voice, speech = self._speech(request)
            chunks = self.queue.stream(voice.synthesize, request.text, speech)
            async with aclosing(chunks):
                async for pcm in chunks:
                    yield backend_pb2.Reply(audio=pcm, sample_rate=voice.sample_rate)

    async def TTS(self, request: backend_pb2.TTSRequest, context: Any) -> backend_pb2.Result:
        """LocalAI's way: the WAV file written to `dst`, on a disk both sides share."""
        async with self.call(context):
            voice, speech = self._speech(request)
            if not request.dst:
                raise InvalidInputError("dst: no path to write the WAV file to (or call TTSStream)")
            samples = 0
            sentences = self.queue.stream(voice.write_wav, request.text, speech, Path(request.dst))
            async with aclosing(sentences):
                async for written in sentences:
                    samples += written
            log.debug("speech written", extra={"dst": request.dst, "seconds": samples / voice.sample_rate})
        return backend_pb2.Result(success=True, message=request.dst)

    def _speech(self, request: backend_pb2.TTSRequest) -> tuple[Voice, Speech]:
        """The voice (the one loaded when the call began) and how it speaks this request. `model` is
        not read: this backend serves one voice. `language` is not either: a Piper voice speaks the
        one language it was trained on, whatever the request says."""
        voice = self._voice
        assert voice is not None, "call() checks a voice is loaded"
        if not request.text.strip():
            raise InvalidInputError("text: empty, nothing to speak")
        return voice, speech_settings(
            request.speed, request.voice, voice.default_length_scale, voice.speakers
        )
