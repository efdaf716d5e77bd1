"""A zero-cost Backend for router tests and the router overhead benchmark: no model, canned answers.

Every call answers at once, so whatever time a test or benchmark measures through the router is the router's
(and gRPC's). Knobs on the instance make it fail, die mid-stream or stream slowly, and counters record what
the router did to it (calls made, streams cancelled, the last request received).

In-process (async tests):   server, port, fake = await start_fake_backend(pieces=64)
As a process (benchmarks):  python -m tests.support.fake_backend --addr 127.0.0.1:50051 [--pieces 64]
"""

# gRPC fixes servicer signatures: every method takes (request, context) whether it reads them or not.
# ruff: noqa: ARG002

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
import math
import random
import signal
from collections import Counter
from collections.abc import AsyncIterator

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

from localmodel.wire import backend_pb2, backend_pb2_grpc

log = logging.getLogger(__name__)

DEFAULT_TEXT = "Hello from the fake backend."
# Services a readiness probe may ask about: "" (the whole server, what Kubernetes asks) and ours.
HEALTH_SERVICES = ("", "backend.Backend")


class FakeBackend(backend_pb2_grpc.BackendServicer):
    """The Backend service with canned answers. Knobs and counters are plain attributes: set them any time.

    The reply is `text` as word pieces ("Hello", " from", ...); with `pieces` set, its words are repeated
    (or cut) to exactly that many pieces, so Predict's text is always what the stream's pieces join to.
    """

    def __init__(
        self,
        text: str = DEFAULT_TEXT,
        pieces: int | None = None,
        dimensions: int = 8,
        fail_with: grpc.StatusCode | None = None,
        die_after_pieces: int | None = None,
        delay_per_piece: float = 0.0,
    ) -> None:
        words = text.split()
        if not words or (pieces is not None and pieces < 1):
            raise ValueError("the fake needs a non-empty text and at least one piece")
        if pieces is not None:
            words = [words[i % len(words)] for i in range(pieces)]
        self.pieces: list[str] = [words[0], *(" " + word for word in words[1:])]
        self.text = "".join(self.pieces)
        self._encoded = [piece.encode() for piece in self.pieces]  # encoded once: the fake must cost nothing
        self.dimensions = dimensions
        # Knobs.
        self.fail_with = fail_with  # abort every model call (generation, embedding, ...) with this code
        self.die_after_pieces = die_after_pieces  # a stream aborts with UNAVAILABLE after this many pieces
        self.delay_per_piece = (
            delay_per_piece  # seconds between stream pieces (Predict waits for all of them)
        )
        # Counters.
        self.calls: Counter[str] = Counter()  # method name -> calls received
        self.cancelled_streams = 0  # PredictStream calls the client cancelled before the end
        self.cancelled_predicts = 0  # Predict calls the client cancelled before the answer
        self.running = 0  # generations in progress now (reported by Status)
        self.last_request: backend_pb2.PredictOptions | None = None

    async def Health(
        self, request: backend_pb2.HealthMessage, context: grpc.aio.ServicerContext
    ) -> backend_pb2.Reply:
        self.calls["Health"] += 1
        return backend_pb2.Reply(message=b"OK")

    async def LoadModel(
        self, request: backend_pb2.ModelOptions, context: grpc.aio.ServicerContext
    ) -> backend_pb2.Result:
        self.calls["LoadModel"] += 1
        return backend_pb2.Result(
            success=True, message=f"loaded {request.model or request.model_file} (fake)"
        )

    async def Predict(
        self, request: backend_pb2.PredictOptions, context: grpc.aio.ServicerContext
    ) -> backend_pb2.Reply:
        await self._received("Predict", request, context)
        count, finish = self._plan(request)
        self.running += 1
        try:
            if self.delay_per_piece:  # as long as the stream would take, so a disconnect can cancel it
                await asyncio.sleep(self.delay_per_piece * count)
        except asyncio.CancelledError:
            self.cancelled_predicts += 1
            raise
        finally:
            self.running -= 1
        return backend_pb2.Reply(
            message=b"".join(self._encoded[:count]),
            tokens=count,
            prompt_tokens=_prompt_tokens(request),
            finish_reason=finish,
        )

    async def PredictStream(
        self, request: backend_pb2.PredictOptions, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[backend_pb2.Reply]:
        await self._received("PredictStream", request, context)
        count, finish = self._plan(request)
        prompt_tokens = _prompt_tokens(request)
        self.running += 1
        try:
            for index in range(count):
                if self.die_after_pieces is not None and index >= self.die_after_pieces:
                    await context.abort(grpc.StatusCode.UNAVAILABLE, "the fake backend died mid-stream")
                if self.delay_per_piece and index:
                    await asyncio.sleep(self.delay_per_piece)
                yield backend_pb2.Reply(
                    message=self._encoded[index],
                    tokens=index + 1,  # the running count, as a real backend reports it
                    prompt_tokens=prompt_tokens,
                    finish_reason=finish if index == count - 1 else "",
                )
        # A cancel lands as CancelledError while we sleep, or as GeneratorExit when gRPC drops the
        # generator suspended at a yield; neither happens to a stream that ran to its end or aborted.
        except (asyncio.CancelledError, GeneratorExit):
            self.cancelled_streams += 1
            raise
        finally:
            self.running -= 1

    async def Embedding(
        self, request: backend_pb2.PredictOptions, context: grpc.aio.ServicerContext
    ) -> backend_pb2.EmbeddingResult:
        await self._received("Embedding", request, context)
        text = request.embeddings or " ".join(map(str, request.embedding_tokens))
        return backend_pb2.EmbeddingResult(embeddings=_unit_vector(text, self.dimensions))

    async def TokenizeString(
        self, request: backend_pb2.PredictOptions, context: grpc.aio.ServicerContext
    ) -> backend_pb2.TokenizationResponse:
        await self._received("TokenizeString", request, context)
        tokens = list(range(len(request.prompt.split())))  # one "token" per word
        return backend_pb2.TokenizationResponse(length=len(tokens), tokens=tokens)

    async def Status(
        self, request: backend_pb2.HealthMessage, context: grpc.aio.ServicerContext
    ) -> backend_pb2.StatusResponse:
        self.calls["Status"] += 1
        return backend_pb2.StatusResponse(
            state=backend_pb2.StatusResponse.READY,
            memory=backend_pb2.MemoryUsageData(total=0),
            scheduler=backend_pb2.SchedulerState(running=self.running, waiting=0, slots=1, mode="fake"),
        )

    async def GetMetrics(
        self, request: backend_pb2.MetricsRequest, context: grpc.aio.ServicerContext
    ) -> backend_pb2.MetricsResponse:
        self.calls["GetMetrics"] += 1
        return backend_pb2.MetricsResponse()

    async def Rerank(
        self, request: backend_pb2.RerankRequest, context: grpc.aio.ServicerContext
    ) -> backend_pb2.RerankResult:
        self.calls["Rerank"] += 1
        await self._fail_if_asked(context)
        query = set(request.query.lower().split())
        scored = [
            backend_pb2.DocumentResult(
                index=index,
                text=document,
                relevance_score=len(query & set(document.lower().split())) / max(len(query), 1),
            )
            for index, document in enumerate(request.documents)
        ]
        scored.sort(key=lambda result: result.relevance_score, reverse=True)  # stable: ties keep their order
        if request.top_n > 0:
            scored = scored[: request.top_n]
        tokens = len(request.query.split()) + sum(len(document.split()) for document in request.documents)
        return backend_pb2.RerankResult(
            usage=backend_pb2.Usage(total_tokens=tokens, prompt_tokens=tokens), results=scored
        )

    async def _received(
        self, method: str, request: backend_pb2.PredictOptions, context: grpc.aio.ServicerContext
    ) -> None:
        self.calls[method] += 1
        self.last_request = request
        await self._fail_if_asked(context)

    async def _fail_if_asked(self, context: grpc.aio.ServicerContext) -> None:
        if self.fail_with is not None:
            await context.abort(self.fail_with, f"the fake backend fails with {self.fail_with.name}")

    def _plan(self, request: backend_pb2.PredictOptions) -> tuple[int, str]:
        """Pieces to send and why generation ends: a cap reached before the text's end cuts it ("length")."""
        if 0 < request.tokens <= len(self.pieces):
            return request.tokens, "length"
        return len(self.pieces), "stop"


def _prompt_tokens(request: backend_pb2.PredictOptions) -> int:
    return len(request.prompt.split()) or len(request.messages)


def _unit_vector(text: str, dimensions: int) -> list[float]:
    """The same text gives the same vector in every process (unlike hash(), which is salted per process)."""
    rng = random.Random(hashlib.sha256(text.encode()).digest())
    vector = [rng.gauss(0.0, 1.0) for _ in range(dimensions)]
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [x / norm for x in vector]


async def start_fake_backend(
    address: str = "127.0.0.1:0", **knobs: object
) -> tuple[grpc.aio.Server, int, FakeBackend]:
    """A started server with a FakeBackend (built from `knobs`) and grpc.health.v1 reporting SERVING,
    the port it got ("host:0" picks a free one), and the fake itself to steer and inspect."""
    fake = FakeBackend(**knobs)  # type: ignore[arg-type]
    health = health_aio.HealthServicer()
    for service in HEALTH_SERVICES:
        await health.set(service, health_pb2.HealthCheckResponse.SERVING)
    server = grpc.aio.server()
    backend_pb2_grpc.add_BackendServicer_to_server(fake, server)  # type: ignore[no-untyped-call]
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    port = server.add_insecure_port(address)
    await server.start()
    return server, port, fake


async def _serve(address: str, **knobs: object) -> None:
    server, port, _ = await start_fake_backend(address, **knobs)
    log.info("fake backend listening on port %d", port)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    await stopping.wait()
    await server.stop(grace=1.0)  # nothing here is worth waiting for long


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve the fake Backend until SIGTERM or SIGINT.")
    parser.add_argument("--addr", default="127.0.0.1:0", help="host:port to listen on")
    parser.add_argument("--pieces", type=int, default=None, help="stream pieces per answer (default: words)")
    parser.add_argument("--text", default=DEFAULT_TEXT, help="the canned answer")
    parser.add_argument("--dimensions", type=int, default=8, help="embedding size")
    parser.add_argument("--delay-per-piece", type=float, default=0.0, help="seconds between stream pieces")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    knobs = {"pieces": args.pieces, "text": args.text, "dimensions": args.dimensions}
    asyncio.run(_serve(args.addr, **knobs, delay_per_piece=args.delay_per_piece))


if __name__ == "__main__":
    main()
