"""Speech to text (transcriptions, translations into English) and text to speech, over the backends'
AudioTranscription, AudioTranscriptionStream and TTSStream calls."""

from __future__ import annotations

import mimetypes
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from localmodel_router import translate_audio
from localmodel_router.discovery import Discovery
from localmodel_router.dispatch import Dispatcher
from localmodel_router.errors import BackendError, BadRequestError, RequestTooLargeError
from localmodel_router.languages import WHISPER_LANGUAGES
from localmodel_router.protocol.audio import (
    AUDIO_FORMATS,
    SPEECH_FORMATS,
    SpeechRequest,
    TranscriptionRequest,
    TranscriptionVerbose,
    TranscriptTextDelta,
    TranscriptTextDone,
)
from localmodel_router.serving import Service
from localmodel_router.streaming import event

if TYPE_CHECKING:
    from localmodel.wire import backend_pb2

TRANSCRIPTION = "transcription"  # the task of transcriptions and translations alike
SPEECH = "speech"
# Content types of audio that do not start with audio/: containers OpenAI takes (mp4, webm, ogg).
_AUDIO_CONTAINERS = frozenset({"video/mp4", "video/mpeg", "video/webm", "video/ogg", "application/ogg"})
_STREAMED_FORMATS = ("json", "text")  # a stream's events carry text only


@dataclass(frozen=True)
class Speech:
    """Synthesised speech as it comes: 16-bit little-endian mono PCM at `sample_rate`."""

    sample_rate: int
    pcm: AsyncIterator[bytes]


class AudioService(Service):
    def __init__(self, discovery: Discovery, dispatcher: Dispatcher, max_audio_bytes: int) -> None:
        super().__init__(discovery, dispatcher)
        self._max_audio_bytes = max_audio_bytes

    async def transcribe(self, request: TranscriptionRequest) -> TranscriptionVerbose:
        """The whole transcript (or translation), with everything verbose_json can say."""
        route = self._discovery.table().resolve(request.model, TRANSCRIPTION)
        self._check(request)
        options = translate_audio.transcript_request(request)
        result: backend_pb2.TranscriptResult = await self._dispatcher.unary(
            route, lambda stub, timeout: stub.AudioTranscription(options, timeout=timeout)
        )
        return translate_audio.transcript(result, request)

    async def transcribe_stream(self, request: TranscriptionRequest) -> AsyncIterator[str]:
        """OpenAI's transcription events, opened (the first segment decoded): a `transcript.text.delta`
        per segment as the backend decodes it, then `transcript.text.done` with the whole text."""
        route = self._discovery.table().resolve(request.model, TRANSCRIPTION)
        self._check(request)
        if request.response_format not in _STREAMED_FORMATS:
            raise BadRequestError(
                f"stream: only with response_format {' or '.join(_STREAMED_FORMATS)}, "
                f"not {request.response_format}",
                param="stream",
            )
        options = translate_audio.transcript_request(request)
        results: AsyncIterator[backend_pb2.TranscriptResult] = await self._dispatcher.open_stream(
            route, lambda stub, timeout: stub.AudioTranscriptionStream(options, timeout=timeout)
        )
        return _transcript_events(results)

    async def speak(self, request: SpeechRequest) -> Speech:
        """The speech of `request.input`, its first audio synthesised (errors until then are raised here,
        before the response starts)."""
        route = self._discovery.table().resolve(request.model, SPEECH)
        _check_speech(request)
        options = translate_audio.tts_request(request)
        replies: AsyncIterator[backend_pb2.Reply] = await self._dispatcher.open_stream(
            route, lambda stub, timeout: stub.TTSStream(options, timeout=timeout)
        )
        first = await anext(replies)
        if first.sample_rate <= 0:
            await _close(replies)
            raise BackendError(f"model '{route.name}': the backend's speech has no sample rate")
        return Speech(first.sample_rate, _audio(first, replies))

    def _check(self, request: TranscriptionRequest) -> None:
        """The upload is audio of an allowed size, and the options go together (OpenAI's rules)."""
        if not request.audio:
            raise BadRequestError("file: the file is empty", param="file")
        if len(request.audio) > self._max_audio_bytes:
            raise RequestTooLargeError(
                f"file: {len(request.audio)} bytes; at most {self._max_audio_bytes} bytes are accepted",
                param="file",
            )
        if not is_audio(request.filename, request.content_type):
            raise BadRequestError(
                f"file: {request.filename or 'the file'} ({request.content_type or 'no content type'}) is "
                f"not audio; the formats accepted are {', '.join(AUDIO_FORMATS)}",
                param="file",
            )
        if request.language is not None and request.language.lower() not in WHISPER_LANGUAGES:
            raise BadRequestError(
                f"language: '{request.language}' is not an ISO-639-1 code of a language Whisper knows "
                "(such as en, de, fr, zh)",
                param="language",
            )
        if request.timestamp_granularities and request.response_format != "verbose_json":
            raise BadRequestError(
                "timestamp_granularities[]: only with response_format verbose_json",
                param="timestamp_granularities[]",
            )
        for name in request.unsupported:
            raise BadRequestError(f"{name}: not supported", param=name)


def is_audio(filename: str | None, content_type: str | None) -> bool:
    """Whether an upload is one of the audio formats: by its name's extension, or else its content type
    (audio/*, or a container OpenAI takes: mp4, webm, ogg)."""
    extension = filename.rpartition(".")[2].lower() if filename and "." in filename else ""
    if extension in AUDIO_FORMATS:
        return True
    media = (content_type or "").split(";")[0].strip().lower()
    if media in ("", "application/octet-stream") and filename:
        media = mimetypes.guess_type(filename)[0] or ""
    return media.startswith("audio/") or media in _AUDIO_CONTAINERS


def _check_speech(request: SpeechRequest) -> None:
    if request.response_format not in SPEECH_FORMATS:
        raise BadRequestError(
            f"response_format: '{request.response_format}' is not produced here; the formats are "
            f"{' and '.join(SPEECH_FORMATS)}",
            param="response_format",
        )
    if request.stream_format != "audio":
        raise BadRequestError(
            "stream_format: only 'audio' (the audio itself, streamed as it is synthesised)",
            param="stream_format",
        )
    if request.instructions:
        raise BadRequestError(
            "instructions: not supported; the voice speaks as the model was trained", param="instructions"
        )


async def _transcript_events(results: AsyncIterator[backend_pb2.TranscriptResult]) -> AsyncIterator[str]:
    try:
        first = True
        async for result in results:
            for piece in result.segments:
                text = piece.text.lstrip() if first else piece.text
                first = first and not text
                if text:
                    yield event(TranscriptTextDelta(delta=text))
            if not result.segments:  # the last result: the whole text
                yield event(TranscriptTextDone(text=result.text.strip()))
    finally:
        await _close(results)


async def _audio(first: backend_pb2.Reply, rest: AsyncIterator[backend_pb2.Reply]) -> AsyncIterator[bytes]:
    try:
        if first.audio:
            yield first.audio
        async for reply in rest:
            if reply.audio:
                yield reply.audio
    finally:
        await _close(rest)


async def _close(replies: AsyncIterator[object]) -> None:
    """Ends the backend call at once (not at garbage collection), which frees its replica."""
    close = getattr(replies, "aclose", None)
    if close is not None:
        await close()
