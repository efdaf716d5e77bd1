"""The fake backend that router tests and the overhead benchmark stand on, checked with a real gRPC client."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from localmodel.wire import backend_pb2, backend_pb2_grpc
from tests.support.fake_backend import FakeBackend, start_fake_backend


@dataclass
class Fake:
    """What a test body works with: a client stub, the fake itself, and the channel (for other services)."""

    stub: backend_pb2_grpc.BackendStub
    fake: FakeBackend
    channel: grpc.aio.Channel


CHAT = backend_pb2.PredictOptions(messages=[backend_pb2.Message(role="user", content="hi")])


def run_against_fake(body: Callable[[Fake], Awaitable[None]], **knobs: object) -> None:
    """Run `body` with a stub on a fresh in-process fake (no pytest-asyncio here: one event loop per test)."""

    async def main() -> None:
        server, port, fake = await start_fake_backend(**knobs)
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                await body(Fake(backend_pb2_grpc.BackendStub(channel), fake, channel))
        finally:
            await server.stop(grace=None)

    asyncio.run(main())


def test_stream_pieces_join_to_the_predict_text() -> None:
    async def body(on: Fake) -> None:
        whole = await on.stub.Predict(CHAT)
        replies = [reply async for reply in on.stub.PredictStream(CHAT)]
        assert len(replies) == 12
        assert b"".join(reply.message for reply in replies) == whole.message == on.fake.text.encode()
        assert [reply.tokens for reply in replies] == list(range(1, 13))
        assert [reply.finish_reason for reply in replies] == [""] * 11 + ["stop"]
        assert whole.tokens == 12 and whole.prompt_tokens == 1 and whole.finish_reason == "stop"
        capped = [
            reply async for reply in on.stub.PredictStream(backend_pb2.PredictOptions(prompt="a b", tokens=5))
        ]
        assert len(capped) == 5 and capped[-1].finish_reason == "length" and capped[-1].prompt_tokens == 2
        assert on.fake.last_request is not None and on.fake.last_request.tokens == 5
        assert on.fake.calls == {"Predict": 1, "PredictStream": 2}
        health = health_pb2_grpc.HealthStub(on.channel)
        assert (
            await health.Check(health_pb2.HealthCheckRequest())
        ).status == health_pb2.HealthCheckResponse.SERVING

    run_against_fake(body, pieces=12)


def test_a_backend_dying_mid_stream_aborts_with_unavailable_after_k_pieces() -> None:
    async def body(on: Fake) -> None:
        received = []
        with pytest.raises(grpc.aio.AioRpcError) as error:
            async for reply in on.stub.PredictStream(CHAT):
                received.append(reply)
        assert len(received) == 3
        assert error.value.code() == grpc.StatusCode.UNAVAILABLE

    run_against_fake(body, pieces=10, die_after_pieces=3)


def test_fail_with_aborts_every_generation_call_with_that_code() -> None:
    async def body(on: Fake) -> None:
        with pytest.raises(grpc.aio.AioRpcError) as unary:
            await on.stub.Predict(CHAT)
        assert unary.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        with pytest.raises(grpc.aio.AioRpcError) as streamed:
            async for _ in on.stub.PredictStream(CHAT):
                pass
        assert streamed.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        on.fake.fail_with = None  # knobs are live: the next call succeeds
        assert (await on.stub.Predict(CHAT)).finish_reason == "stop"

    run_against_fake(body, fail_with=grpc.StatusCode.RESOURCE_EXHAUSTED)


def test_a_client_cancelling_a_stream_is_counted() -> None:
    async def body(on: Fake) -> None:
        call = on.stub.PredictStream(CHAT)
        await call.read()
        await call.read()
        call.cancel()
        for _ in range(100):  # the cancel reaches the server asynchronously
            if on.fake.cancelled_streams:
                break
            await asyncio.sleep(0.01)
        assert on.fake.cancelled_streams == 1 and on.fake.running == 0

    run_against_fake(body, pieces=100, delay_per_piece=0.02)


def test_embeddings_are_deterministic_unit_vectors() -> None:
    async def body(on: Fake) -> None:
        first = (await on.stub.Embedding(backend_pb2.PredictOptions(embeddings="a cat"))).embeddings
        again = (await on.stub.Embedding(backend_pb2.PredictOptions(embeddings="a cat"))).embeddings
        other = (await on.stub.Embedding(backend_pb2.PredictOptions(embeddings="a dog"))).embeddings
        assert len(first) == 8 and list(first) == list(again) != list(other)
        assert sum(x * x for x in first) == pytest.approx(1.0, abs=1e-5)

    run_against_fake(body)
