"""Pure mapping between OpenAI's audio bodies and the backend contract (TranscriptRequest and
TranscriptResult; TTSRequest). The contract's times are nanoseconds, OpenAI's are seconds."""

from __future__ import annotations

from localmodel.wire import backend_pb2
from localmodel_router.languages import language_name
from localmodel_router.protocol.audio import (
    OPENAI_VOICES,
    DurationUsage,
    SpeechRequest,
    TranscriptionRequest,
    TranscriptionSegment,
    TranscriptionVerbose,
    TranscriptionWord,
    VoiceId,
)

_NANOSECONDS = 1e9


def transcript_request(request: TranscriptionRequest) -> backend_pb2.TranscriptRequest:
    return backend_pb2.TranscriptRequest(
        audio=request.audio,
        language=request.language or "",
        prompt=request.prompt or "",
        translate=request.translate,
        temperature=request.temperature,
        word_timestamps="word" in request.timestamp_granularities,
    )


def segment(piece: backend_pb2.TranscriptSegment) -> TranscriptionSegment:
    return TranscriptionSegment(
        id=piece.id,
        seek=piece.seek,
        start=piece.start / _NANOSECONDS,
        end=piece.end / _NANOSECONDS,
        text=piece.text,
        tokens=list(piece.tokens),
        temperature=piece.temperature,
        avg_logprob=piece.avg_logprob,
        compression_ratio=piece.compression_ratio,
        no_speech_prob=piece.no_speech_prob,
    )


def transcript(result: backend_pb2.TranscriptResult, request: TranscriptionRequest) -> TranscriptionVerbose:
    """Everything the backend said, in verbose_json's shape: segments unless only word timestamps were
    asked for, words when they were (OpenAI's timestamp_granularities)."""
    granularities = request.timestamp_granularities or ("segment",)
    words = [
        TranscriptionWord(word=word.word, start=word.start / _NANOSECONDS, end=word.end / _NANOSECONDS)
        for piece in result.segments
        for word in piece.words
    ]
    return TranscriptionVerbose(
        task="translate" if request.translate else "transcribe",
        # A translation is English whatever was spoken (OpenAI says so too).
        language="english" if request.translate else language_name(result.language),
        duration=result.duration,
        text=result.text.strip(),
        segments=[segment(piece) for piece in result.segments] if "segment" in granularities else None,
        words=words if "word" in granularities else None,
        usage=DurationUsage(seconds=result.duration),
    )


def tts_request(request: SpeechRequest) -> backend_pb2.TTSRequest:
    return backend_pb2.TTSRequest(text=request.input, voice=voice(request.voice), speed=request.speed)


def voice(asked: str | VoiceId) -> str:
    """The model's voice for what the client asked: OpenAI's voice names (and an empty name) mean the
    model's default voice (""), any other name is a voice of the model (the backend refuses unknown
    ones)."""
    name = asked.id if isinstance(asked, VoiceId) else asked
    return "" if name.lower() in OPENAI_VOICES else name
