"""POST /v1/audio/transcriptions, /v1/audio/translations (multipart forms) and /v1/audio/speech (JSON)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, Field

from localmodel_router.protocol.common import OpenAIRequest

# The upload formats OpenAI lists; a file is taken when its name ends in one, or its content type is audio.
AUDIO_FORMATS = ("flac", "mp3", "mp4", "mpeg", "mpga", "m4a", "ogg", "wav", "webm")
TranscriptFormat = Literal["json", "text", "srt", "verbose_json", "vtt"]
Granularity = Literal["segment", "word"]
# What speech is produced as; OpenAI's other formats (mp3, opus, aac, flac) would need an encoder.
SPEECH_FORMATS = ("wav", "pcm")
# OpenAI's built-in voices: each means the model's own default voice (a Piper model has one or a few
# speakers, none of them OpenAI's).
OPENAI_VOICES = frozenset(
    "alloy ash ballad coral echo fable onyx nova sage shimmer verse marin cedar".split()
)


@dataclass(frozen=True)
class TranscriptionRequest:
    """A transcription or translation form, as parsed by its route (FastAPI validated each field)."""

    model: str
    audio: bytes
    filename: str | None
    content_type: str | None
    translate: bool = False
    language: str | None = None
    prompt: str | None = None
    temperature: float = 0.0
    response_format: TranscriptFormat = "json"
    timestamp_granularities: tuple[Granularity, ...] = ()
    stream: bool = False
    # OpenAI's fields this router does not serve, as sent (each answers 400 when given).
    unsupported: dict[str, object] = field(default_factory=dict)


class DurationUsage(BaseModel):
    """Usage of a model billed by audio length (OpenAI's whisper-1 reports it so)."""

    type: Literal["duration"] = "duration"
    seconds: float


class Transcription(BaseModel):
    """response_format json."""

    text: str
    usage: DurationUsage | None = None


class TranscriptionWord(BaseModel):
    word: str
    start: float  # seconds
    end: float


class TranscriptionSegment(BaseModel):
    id: int
    seek: int
    start: float  # seconds
    end: float
    text: str
    tokens: list[int]
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float


class TranscriptionVerbose(BaseModel):
    """response_format verbose_json; `segments` and `words` as timestamp_granularities ask (segments by
    default). Rendered without the absent ones."""

    task: Literal["transcribe", "translate"]
    language: str  # a name, as OpenAI gives it ("english")
    duration: float  # seconds
    text: str
    segments: list[TranscriptionSegment] | None = None
    words: list[TranscriptionWord] | None = None
    usage: DurationUsage | None = None


class TranscriptTextDelta(BaseModel):
    """A streamed transcription's event: the text of the next decoded segment."""

    type: Literal["transcript.text.delta"] = "transcript.text.delta"
    delta: str


class TranscriptTextDone(BaseModel):
    """A streamed transcription's last event: the whole text."""

    type: Literal["transcript.text.done"] = "transcript.text.done"
    text: str


class VoiceId(BaseModel):
    """OpenAI's custom-voice object; its id names a voice (speaker) of the model."""

    id: str


class SpeechRequest(OpenAIRequest):
    model: str
    input: str = Field(min_length=1, max_length=4096)
    voice: str | VoiceId = Field(
        description="a voice (speaker) of the model; OpenAI's voice names (alloy, echo, ...) mean the "
        "model's default voice"
    )
    response_format: str = Field(
        default="wav",
        description="wav (streamed, its sizes unknown) or pcm (raw 16-bit little-endian mono at the voice's "
        "own rate, given in the X-Sample-Rate header); OpenAI's mp3, opus, aac and flac answer 400. "
        "Default wav (OpenAI's default, mp3, is not produced)",
    )
    speed: float = Field(default=1.0, ge=0.25, le=4.0)
    stream_format: Literal["audio", "sse"] = Field(default="audio", description="audio; sse answers 400")
    instructions: str | None = Field(default=None, description="not supported: answers 400 when given")
