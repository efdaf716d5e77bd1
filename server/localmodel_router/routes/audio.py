"""OpenAI's audio API: transcriptions and translations (multipart forms), speech (JSON)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, Response, UploadFile
from fastapi.responses import PlainTextResponse, StreamingResponse
from starlette.types import Send

from localmodel_router import subtitles
from localmodel_router.deps import ServicesDep
from localmodel_router.disconnect import unless_disconnected
from localmodel_router.errors import RouterError
from localmodel_router.protocol.audio import (
    Granularity,
    SpeechRequest,
    TranscriptFormat,
    Transcription,
    TranscriptionRequest,
    TranscriptionVerbose,
)
from localmodel_router.routes.responses import json_body
from localmodel_router.settings import RouterSettings
from localmodel_router.streaming import open_sse
from localmodel_router.wav import streaming_wav_header

log = logging.getLogger(__name__)

router = APIRouter()

TRANSCRIPTIONS, TRANSLATIONS, SPEECH = (
    "/v1/audio/transcriptions",
    "/v1/audio/translations",
    "/v1/audio/speech",
)
FORM_ROOM = 1024 * 1024  # bytes of an upload's fields besides the file (Starlette's limit per field)

_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"description": "Unknown model"},
    413: {"description": "The file (or the whole body) is over the router's limit (max_audio_bytes)"},
}
_TRANSCRIPT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The transcript as response_format asks: json, verbose_json, text, srt or vtt; "
        "with stream, server-sent events",
        "content": {
            "application/json": {},
            "text/plain": {"schema": {"type": "string"}},
            "text/vtt": {"schema": {"type": "string"}},
            "text/event-stream": {"schema": {"type": "string"}},
        },
    },
    **_ERRORS,
}
_SPEECH_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The speech, streamed as it is synthesised; X-Sample-Rate gives its rate",
        "content": {
            "audio/wav": {"schema": {"type": "string", "format": "binary"}},
            "audio/pcm": {"schema": {"type": "string", "format": "binary"}},
        },
    },
    404: _ERRORS[404],
}

AudioFile = Annotated[
    UploadFile, File(description="the audio: flac, mp3, mp4, mpeg, mpga, m4a, ogg, wav or webm")
]
Model = Annotated[str, Form()]
Prompt = Annotated[str | None, Form(description="text the audio continues (names, spelling, style)")]
Temperature = Annotated[float, Form(ge=0, le=1, description="0: greedy, with fallbacks on failure")]
Format = Annotated[TranscriptFormat, Form()]


@router.post(TRANSCRIPTIONS, response_model=None, responses=_TRANSCRIPT_RESPONSES)
async def create_transcription(
    request: Request,
    services: ServicesDep,
    file: AudioFile,
    model: Model,
    language: Annotated[str | None, Form(description="ISO-639-1 code; without it, detected")] = None,
    prompt: Prompt = None,
    temperature: Temperature = 0.0,
    response_format: Format = "json",
    timestamp_granularities: Annotated[
        list[Granularity] | None, Form(alias="timestamp_granularities[]", description="verbose_json only")
    ] = None,
    stream: Annotated[bool, Form(description="server-sent events; json and text formats only")] = False,
    include: Annotated[list[str] | None, Form(alias="include[]", description="not supported")] = None,
    chunking_strategy: Annotated[str | None, Form(description="not supported")] = None,
) -> Response:
    """Speech to text in the spoken language."""
    request.state.model = model
    unsupported = {"include[]": include, "chunking_strategy": chunking_strategy}
    body = TranscriptionRequest(
        model=model,
        audio=await file.read(),
        filename=file.filename,
        content_type=file.content_type,
        language=language,
        prompt=prompt,
        temperature=temperature,
        response_format=response_format,
        timestamp_granularities=tuple(dict.fromkeys(timestamp_granularities or ())),
        stream=stream,
        unsupported={name: value for name, value in unsupported.items() if value},
    )
    if body.stream:
        keepalive = services.settings.stream_keepalive_seconds
        return await open_sse(request, services.audio.transcribe_stream(body), keepalive)
    return _rendered(await unless_disconnected(request, services.audio.transcribe(body)), response_format)


@router.post(TRANSLATIONS, response_model=None, responses=_TRANSCRIPT_RESPONSES)
async def create_translation(
    request: Request,
    services: ServicesDep,
    file: AudioFile,
    model: Model,
    prompt: Annotated[str | None, Form(description="English text the audio continues")] = None,
    temperature: Temperature = 0.0,
    response_format: Format = "json",
) -> Response:
    """Speech in any language Whisper knows to English text."""
    request.state.model = model
    body = TranscriptionRequest(
        model=model,
        audio=await file.read(),
        filename=file.filename,
        content_type=file.content_type,
        translate=True,
        prompt=prompt,
        temperature=temperature,
        response_format=response_format,
    )
    return _rendered(await unless_disconnected(request, services.audio.transcribe(body)), response_format)


@router.post(SPEECH, response_model=None, response_class=StreamingResponse, responses=_SPEECH_RESPONSES)
async def create_speech(body: SpeechRequest, request: Request, services: ServicesDep) -> Response:
    """Text to speech, streamed as it is synthesised: wav (a header with unknown sizes, then the samples)
    or pcm (raw 16-bit little-endian mono samples). Unlike OpenAI's pcm (24 kHz), ours is at the voice's
    own rate, which the X-Sample-Rate header gives."""
    request.state.model = body.model
    speech = await unless_disconnected(request, services.audio.speak(body))
    headers = {"X-Sample-Rate": str(speech.sample_rate)}
    if body.response_format == "pcm":
        return AudioStream(speech.pcm, media_type="audio/pcm", headers=headers)
    return AudioStream(
        _after(streaming_wav_header(speech.sample_rate), speech.pcm), media_type="audio/wav", headers=headers
    )


def body_limits(settings: RouterSettings) -> dict[str, int]:
    """The body limits of the upload paths (app.py's BodyLimit): the audio file and room for the form's
    other fields. The file itself is then held to `max_audio_bytes`, for a 413 naming it."""
    limit = max(settings.max_request_bytes, settings.max_audio_bytes + FORM_ROOM)
    return {TRANSCRIPTIONS: limit, TRANSLATIONS: limit}


def _rendered(transcript: TranscriptionVerbose, response_format: TranscriptFormat) -> Response:
    if response_format == "verbose_json":
        return Response(transcript.model_dump_json(exclude_none=True), media_type="application/json")
    if response_format == "text":
        return PlainTextResponse(transcript.text)
    if response_format == "srt":
        return PlainTextResponse(subtitles.srt(transcript.segments or ()))
    if response_format == "vtt":
        return PlainTextResponse(subtitles.vtt(transcript.segments or ()), media_type="text/vtt")
    return json_body(Transcription(text=transcript.text, usage=transcript.usage))


async def _after(header: bytes, pcm: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    yield header
    async for chunk in pcm:
        yield chunk


class AudioStream(StreamingResponse):
    """Streamed audio that a failure after the first byte cuts off: the body's last chunk is never sent,
    so the server closes the connection and the client gets an incomplete body (an error in every HTTP
    client) rather than a shorter file that looks whole. Binary audio has no error event to send."""

    async def stream_response(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        try:
            async for chunk in self.body_iterator:
                data = chunk.encode() if isinstance(chunk, str) else bytes(chunk)
                await send({"type": "http.response.body", "body": data, "more_body": True})
        except RouterError as error:
            log.warning("speech failed after its first bytes; cut off", extra={"error": error.message})
            return
        await send({"type": "http.response.body", "body": b"", "more_body": False})
