"""The Backend service's transcription calls: thin async adapters from the contract to the engine.

Health, LoadModel and Status are the runtime's (localmodel/backend_server.py). Both calls run one lazy
transcription in a worker thread through the runtime's WorkQueue; the unary call gathers its segments,
the stream sends each as it is decoded.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from grpc_health.v1.health import aio as health_aio
from prometheus_client import Counter

from localmodel.backend_server import EngineServicer, WorkQueue
from localmodel.wire import backend_pb2
from localmodel_whisper.engine import Piece, WhisperEngine
from localmodel_whisper.options import audio_source, load_settings, transcribe_options

# Served on --metrics-port with the runtime's queue gauges.
AUDIO_SECONDS = Counter("localmodel_backend_audio_seconds", "Seconds of audio transcribed, by call", ["call"])
NANOSECONDS = 1_000_000_000


class WhisperServicer(EngineServicer):
    def __init__(
        self,
        health: health_aio.HealthServicer,
        queue: WorkQueue,
        accepts_load_model: bool,
        device: str = "auto",
        compute_type: str = "",
    ) -> None:
        super().__init__(health, queue, accepts_load_model)
        self._engine = WhisperEngine(workers=queue.slots)
        # The command line's choices; a LoadModel's `device:` / `compute_type:` options override them.
        self._device = device
        self._compute_type = compute_type

    def load_model(self, request: backend_pb2.ModelOptions) -> str:
        return self._engine.load(load_settings(request, self._device, self._compute_type))

    @property
    def loaded(self) -> bool:
        return self._engine.loaded

    async def AudioTranscription(
        self, request: backend_pb2.TranscriptRequest, context: Any
    ) -> backend_pb2.TranscriptResult:
        segments: list[backend_pb2.TranscriptSegment] = []
        end: Piece | None = None
        async with self.call(context):
            # Through the stream, not one blocking call: a cancelled call stops at the next segment.
            async for piece in self._transcribe(request):
                if piece.segment is None:
                    end = piece
                else:
                    segments.append(segment_proto(piece.segment, len(segments)))
        assert end is not None, "a transcription ends with its end"
        AUDIO_SECONDS.labels("AudioTranscription").inc(end.duration)
        return backend_pb2.TranscriptResult(
            segments=segments, text=joined(segments), language=end.language, duration=end.duration
        )

    async def AudioTranscriptionStream(
        self, request: backend_pb2.TranscriptRequest, context: Any
    ) -> AsyncIterator[backend_pb2.TranscriptResult]:
        segments: list[backend_pb2.TranscriptSegment] = []
        async with self.call(context):
            async for piece in self._transcribe(request):
                if piece.segment is None:  # the last: the whole text, no segment
                    AUDIO_SECONDS.labels("AudioTranscriptionStream").inc(piece.duration)
                    yield backend_pb2.TranscriptResult(
                        text=joined(segments), language=piece.language, duration=piece.duration
                    )
                    continue
                segment = segment_proto(piece.segment, len(segments))
                segments.append(segment)
                yield backend_pb2.TranscriptResult(
                    segments=[segment], text=segment.text, language=piece.language, duration=piece.duration
                )

    async def _transcribe(self, request: backend_pb2.TranscriptRequest) -> AsyncIterator[Piece]:
        source = audio_source(request)
        options = transcribe_options(request, self._engine.languages, self._engine.beam_size)
        async for piece in self.queue.stream(self._engine.transcribe, source, options):
            yield piece


def nanoseconds(seconds: float) -> int:
    return round(float(seconds) * NANOSECONDS)


def segment_proto(segment: Any, index: int) -> backend_pb2.TranscriptSegment:
    """A faster-whisper Segment as the contract's, `index` its position (from 0, as OpenAI's ids)."""
    return backend_pb2.TranscriptSegment(
        id=index,
        start=nanoseconds(segment.start),
        end=nanoseconds(segment.end),
        text=segment.text,
        tokens=[int(token) for token in segment.tokens],
        seek=int(segment.seek),
        temperature=float(segment.temperature or 0.0),
        avg_logprob=float(segment.avg_logprob),
        compression_ratio=float(segment.compression_ratio),
        no_speech_prob=float(segment.no_speech_prob),
        words=[
            backend_pb2.TranscriptWord(
                word=word.word,
                start=nanoseconds(word.start),
                end=nanoseconds(word.end),
                probability=float(word.probability),
            )
            for word in segment.words or ()
        ],
    )


def joined(segments: Sequence[backend_pb2.TranscriptSegment]) -> str:
    """The whole text, as OpenAI's `text`: the segments' texts joined, without the leading space each
    segment's text starts with."""
    return "".join(segment.text for segment in segments).strip()
