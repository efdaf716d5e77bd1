"""The Backend gRPC service: thin async adapters from the contract to the engine and scheduler."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import grpc
from grpc_health.v1 import health_pb2
from grpc_health.v1.health import aio as health_aio

from localmodel.backend_server import HEALTH_SERVICES
from localmodel.refusals import STARTED_METADATA
from localmodel.wire import backend_pb2, backend_pb2_grpc
from localmodel_llamacpp.batching import BatchingScheduler
from localmodel_llamacpp.engine import (
    BusyError,
    Chunk,
    InvalidRequestError,
    ModelLoadError,
    ModelNotLoadedError,
    Prompt,
    StoppingError,
    TokenLogprob,
)
from localmodel_llamacpp.options import OptionsError, chat_messages, chat_tools, load_config, sampling_config

log = logging.getLogger(__name__)

# The one table from engine errors to gRPC status codes.
_STATUS_CODES: dict[type[Exception], grpc.StatusCode] = {
    OptionsError: grpc.StatusCode.INVALID_ARGUMENT,
    InvalidRequestError: grpc.StatusCode.INVALID_ARGUMENT,
    ModelNotLoadedError: grpc.StatusCode.FAILED_PRECONDITION,
    StoppingError: grpc.StatusCode.UNAVAILABLE,  # a refusal: the router retries it on another replica
    BusyError: grpc.StatusCode.RESOURCE_EXHAUSTED,  # the router answers 429 with Retry-After
}
_State = backend_pb2.StatusResponse.State


class BackendServicer(backend_pb2_grpc.BackendServicer):
    def __init__(
        self, scheduler: BatchingScheduler, health: health_aio.HealthServicer, accepts_load_model: bool = True
    ) -> None:
        self._scheduler = scheduler
        self._engine = scheduler.engine
        self.health = health
        # False for a backend started with its model (a pod, a local-mode process): nobody else who
        # can reach its port may swap the model or make it read another path.
        self._accepts_load_model = accepts_load_model

    @property
    def scheduler(self) -> BatchingScheduler:
        return self._scheduler

    def close(self) -> None:
        self._scheduler.close()

    async def Health(self, request: backend_pb2.HealthMessage, context: Any) -> backend_pb2.Reply:
        return backend_pb2.Reply(message=b"OK")

    async def LoadModel(self, request: backend_pb2.ModelOptions, context: Any) -> backend_pb2.Result:
        if context is not None and not self._accepts_load_model:  # context None: the preload itself
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                "this backend serves the model it was started with; LoadModel is refused "
                "(start it with --allow-load-model to allow it)",
            )
        # Failures are a Result, not a status code: that is what LocalAI's clients read.
        try:
            config = load_config(request)
            await self._scheduler.load(config, config.parallel)
        except (OptionsError, ModelLoadError) as error:
            log.warning("model load failed", extra={"reason": str(error)})
            return backend_pb2.Result(success=False, message=str(error))
        for service in HEALTH_SERVICES:
            await self.health.set(service, health_pb2.HealthCheckResponse.SERVING)
        return backend_pb2.Result(success=True, message=f"loaded {config.model_path}")

    async def Predict(self, request: backend_pb2.PredictOptions, context: Any) -> backend_pb2.Reply:
        if request.n > 1:  # one Reply holds one answer
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "n > 1: call PredictStream, whose replies name their answer"
            )
        parts: list[str] = []
        logprobs: list[TokenLogprob] = []
        prompt: tuple[TokenLogprob, ...] = ()
        async for chunk in self._generate(request, context):
            parts.append(chunk.text)
            logprobs += chunk.logprobs
            prompt = prompt or chunk.prompt_logprobs
        return _reply("".join(parts), replace(chunk, prompt_logprobs=prompt), tuple(logprobs))

    async def PredictStream(
        self, request: backend_pb2.PredictOptions, context: Any
    ) -> AsyncIterator[backend_pb2.Reply]:
        async for chunk in self._generate(request, context):
            yield _reply(chunk.text, chunk)

    async def Embedding(
        self, request: backend_pb2.PredictOptions, context: Any
    ) -> backend_pb2.EmbeddingResult:
        async with _status_codes(context):
            text = request.embeddings
            if not text and request.embedding_tokens:
                text = await self._scheduler.run(self._engine.detokenize, list(request.embedding_tokens))
            vector = await self._scheduler.run(self._engine.embed, text)
        return backend_pb2.EmbeddingResult(embeddings=vector)

    async def TokenizeString(
        self, request: backend_pb2.PredictOptions, context: Any
    ) -> backend_pb2.TokenizationResponse:
        # Chat messages: the prompt that Predict would decode (chat template and BOS included).
        async with _status_codes(context):
            prompt = _prompt(request)
            if prompt.messages is None:
                tokens = await self._scheduler.run(self._engine.tokenize, request.prompt)
            else:
                tokens = await self._scheduler.run(self._engine.prompt_tokens, prompt)
        return backend_pb2.TokenizationResponse(length=len(tokens), tokens=tokens)

    async def Detokenize(self, request: backend_pb2.PredictOptions, context: Any) -> backend_pb2.Reply:
        async with _status_codes(context):
            text = await self._scheduler.run(
                self._engine.detokenize, list(request.embedding_tokens), "tokens"
            )
        return backend_pb2.Reply(message=text.encode("utf-8"))

    async def Status(self, request: backend_pb2.HealthMessage, context: Any) -> backend_pb2.StatusResponse:
        scheduler = self._scheduler
        if self._engine.config is None:
            state = _State.UNINITIALIZED
        else:
            state = _State.BUSY if scheduler.running else _State.READY
        memory = self._engine.memory()
        return backend_pb2.StatusResponse(
            state=state,
            memory=backend_pb2.MemoryUsageData(total=memory["rss"], breakdown=memory),
            scheduler=backend_pb2.SchedulerState(
                running=scheduler.running,
                waiting=scheduler.waiting,
                slots=scheduler.slots,
                mode=scheduler.mode,
            ),
        )

    async def GetMetrics(
        self, request: backend_pb2.MetricsRequest, context: Any
    ) -> backend_pb2.MetricsResponse:
        last = self._engine.last
        speeds = self._scheduler.slot_speeds()
        return backend_pb2.MetricsResponse(
            slot_id=0,
            # With batching: all slots together; sequential: the latest generation.
            tokens_per_second=sum(speeds) if speeds else last.tokens_per_second,
            tokens_generated=last.completion_tokens,
            prompt_tokens_processed=last.prompt_tokens,
        )

    async def Rerank(self, request: backend_pb2.RerankRequest, context: Any) -> backend_pb2.RerankResult:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "this backend does not rerank yet")
        raise AssertionError("unreachable: abort raises")

    async def _generate(self, request: backend_pb2.PredictOptions, context: Any) -> AsyncIterator[Chunk]:
        async with _status_codes(context):
            chunks = self._scheduler.generate(_prompt(request), sampling_config(request))
            async for chunk in chunks:
                yield chunk


@asynccontextmanager
async def _status_codes(context: Any) -> AsyncIterator[None]:
    """Acknowledge the call (localmodel.refusals: a call lost after this is never replayed), then end it
    with the status code that the engine error inside maps to."""
    await context.send_initial_metadata(STARTED_METADATA)
    try:
        yield
    except tuple(_STATUS_CODES) as error:
        await context.abort(_STATUS_CODES[type(error)], str(error))


def _prompt(request: backend_pb2.PredictOptions) -> Prompt:
    # As in LocalAI: messages are rendered here only when the client asks for the model's own template;
    # otherwise the client rendered them into `prompt` itself.
    if request.use_tokenizer_template and request.messages:
        return Prompt(messages=chat_messages(request), tools=chat_tools(request))
    return Prompt(text=request.prompt)


def _reply(text: str, chunk: Chunk, logprobs: tuple[TokenLogprob, ...] | None = None) -> backend_pb2.Reply:
    """`logprobs`: of the tokens in `text` (default: the chunk's own)."""
    given = chunk.logprobs if logprobs is None else logprobs
    return backend_pb2.Reply(
        message=text.encode("utf-8"),
        logprobs=_logprobs_json(given) if given else b"",
        prompt_logprobs=_logprobs_json(chunk.prompt_logprobs) if chunk.prompt_logprobs else b"",
        tokens=chunk.completion_tokens,
        prompt_tokens=chunk.prompt_tokens,
        timing_prompt_processing=chunk.prompt_ms,
        timing_token_generation=chunk.generation_ms,
        finish_reason=chunk.finish_reason or "",
        stop_sequence=chunk.stop_sequence,
        index=chunk.index,
    )


def _logprobs_json(logprobs: tuple[TokenLogprob, ...]) -> bytes:
    """`Reply.logprobs`: OpenAI's chat shape, a JSON list of {token, logprob, bytes, top_logprobs}."""

    def entry(piece: bytes, logprob: float | None) -> dict[str, Any]:
        return {"token": piece.decode("utf-8", "replace"), "logprob": logprob, "bytes": list(piece)}

    return json.dumps(
        [{**entry(t.token, t.logprob), "top_logprobs": [entry(p, lp) for p, lp in t.top]} for t in logprobs]
    ).encode("utf-8")
