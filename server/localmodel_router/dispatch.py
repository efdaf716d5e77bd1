"""Send a request to one of a model's backends: hold, admission, replica choice, retries, accounting.

A request that provably did no work on a backend (the backend never acknowledged it, or refused it
before starting: `localmodel.refusals`) moves to another replica, at most `tries` replicas in all. One whose
backend was lost while serving it is never replayed — the request may be what crashed it — and neither
is a stream that has produced a reply: a failure after that ends the stream with an error.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import grpc

from localmodel.spec import BalancingStrategy
from localmodel.wire import backend_pb2, backend_pb2_grpc
from localmodel_router import metrics
from localmodel_router.admission import Admission
from localmodel_router.affinity import prefix_key
from localmodel_router.backends import BackendPool, BackendUnreachableError, never_started, router_error
from localmodel_router.balancer import Balancer, Lease
from localmodel_router.discovery import ModelRoute
from localmodel_router.errors import BackendError, OverloadedError, RouterError
from localmodel_router.hold import Hold
from localmodel_router.load import ModelLoad

T = TypeVar("T")
Call = Callable[[backend_pb2_grpc.BackendStub, float], Awaitable[T]]
# A server-streaming call started on a stub with a timeout: a grpc.aio.UnaryStreamCall (untyped in grpc).
StreamCall = Callable[[backend_pb2_grpc.BackendStub, float], Any]


class Dispatcher:
    def __init__(
        self,
        pool: BackendPool,
        balancer: Balancer,
        hold: Hold,
        admission: Admission,
        load: ModelLoad,
        tries: int,
        timeout: float,
        unreachable_grace: float,
    ) -> None:
        self._pool = pool
        self._balancer = balancer
        self._hold = hold
        self._admission = admission
        self._load = load
        self._tries = tries
        self._unreachable_grace = unreachable_grace
        self._timeout = timeout

    async def unary(self, route: ModelRoute, call: Call[T], key: str | None = None) -> T:
        """Run a unary backend call (`call(stub, timeout)`) on a replica, retrying unreachable ones;
        `key`: the request's prefix key (prefix-hash balancing)."""
        async with self._admitted(route) as route:
            timeout = self._timeout
            result, lease = await self._on_reachable_replica(route, lambda stub: call(stub, timeout), key)
            lease.release()
            return result

    async def predict(self, route: ModelRoute, request: backend_pb2.PredictOptions) -> backend_pb2.Reply:
        """A whole generation (Predict), its tokens counted."""
        reply: backend_pb2.Reply = await self.unary(
            route, lambda stub, timeout: stub.Predict(request, timeout=timeout), self._key(route, request)
        )
        self._count_tokens(route, reply)
        return reply

    async def stream(
        self, route: ModelRoute, request: backend_pb2.PredictOptions
    ) -> AsyncIterator[backend_pb2.Reply]:
        """An open PredictStream whose first reply has arrived: errors until then are raised here, as HTTP
        errors before any byte is sent. Leaving the loop early cancels the backend call."""
        replies: AsyncIterator[backend_pb2.Reply] = await self.open_stream(
            route,
            lambda stub, timeout: stub.PredictStream(request, timeout=timeout),
            self._key(route, request),
            generation=True,
        )
        return replies

    async def open_stream(
        self, route: ModelRoute, call: StreamCall, key: str | None = None, *, generation: bool = False
    ) -> AsyncIterator[Any]:
        """Any server-streaming backend call (`call(stub, timeout)`, e.g. AudioTranscriptionStream,
        TTSStream), opened as `stream` opens PredictStream: its first reply has arrived. `generation`:
        the replies are PredictStream's, so time to first token and tokens are counted."""
        replies = self._stream(route, call, key, generation)
        first = await anext(replies)
        return _starting_with(first, replies)

    async def _stream(
        self, route: ModelRoute, start: StreamCall, key: str | None, generation: bool
    ) -> AsyncGenerator[Any, None]:

        async def open_stream(stub: backend_pb2_grpc.BackendStub) -> tuple[Any, Any]:
            # Wait for the first reply here, so that nothing sent to the client can ever need replaying.
            call = start(stub, self._timeout)
            try:
                first = await call.read()
            except BaseException:  # also when cancelled: the client left while we waited
                call.cancel()
                raise
            if first is grpc.aio.EOF:
                raise BackendError(f"model '{route.name}': the backend ended the stream without a reply")
            return call, first

        async with self._admitted(route) as route:
            started = time.perf_counter()
            (call, first), lease = await self._on_reachable_replica(route, open_stream, key)
            try:
                if generation:
                    metrics.TIME_TO_FIRST_TOKEN_SECONDS.labels(route.name).observe(
                        time.perf_counter() - started
                    )
                latest: dict[int, backend_pb2.Reply] = {}  # a generation's, of each answer (PredictOptions.n)
                reply = first
                while reply is not grpc.aio.EOF:
                    if generation:
                        latest[reply.index] = reply
                    yield reply
                    reply = await call.read()
                if generation:
                    self._count_tokens(route, *latest.values())
            except grpc.aio.AioRpcError as error:
                if error.code() == grpc.StatusCode.UNAVAILABLE:  # the backend went mid-stream
                    metrics.LOST_DURING_REQUEST.labels(route.name).inc()
                raise self._failed(route, error) from error
            finally:
                call.cancel()  # a no-op when the stream ended; stops generation when the client left
                lease.release()

    @asynccontextmanager
    async def _admitted(self, route: ModelRoute) -> AsyncIterator[ModelRoute]:
        """The guard around every backend call, yielding the ready route: the request counts as the
        model's load from arrival (held or waiting, the model is not idle), waits for the model to be
        ready, is admitted, then counts as in flight."""
        with self._load.track(route.name):
            route = await self._hold.ready(route)
            async with self._admission.admit(route.name):
                with metrics.IN_FLIGHT.labels(route.name).track_inprogress():
                    yield route

    async def _on_reachable_replica(
        self,
        route: ModelRoute,
        attempt: Callable[[backend_pb2_grpc.BackendStub], Awaitable[T]],
        key: str | None,
    ) -> tuple[T, Lease]:
        """`attempt` on the best replica, moving on while replicas cannot be reached; the caller releases
        the returned lease."""
        tried: set[str] = set()
        last_error: grpc.aio.AioRpcError | None = None
        while True:
            lease = self._balancer.acquire(route.endpoints, route.load_balancing, key, exclude=tried)
            if lease is None:
                route = await self._route_after_unreachable(route, tried, last_error)
                continue
            try:
                return await attempt(await self._pool.stub(lease.address)), lease
            except BackendUnreachableError:
                lease.release()
                self._note_unreachable(route, tried, lease, None)
            except grpc.aio.AioRpcError as error:
                lease.release()
                if not never_started(error):
                    if error.code() == grpc.StatusCode.UNAVAILABLE:
                        metrics.LOST_DURING_REQUEST.labels(route.name).inc()
                    raise self._failed(route, error) from error
                last_error = error
                self._note_unreachable(route, tried, lease, error)
            except BaseException:
                lease.release()
                raise

    async def _route_after_unreachable(
        self, route: ModelRoute, tried: set[str], error: grpc.aio.AioRpcError | None
    ) -> ModelRoute:
        """No endpoint left to try: a fresher route from discovery (a crashed backend replaced), or fail."""
        if not tried:
            raise OverloadedError(f"model '{route.name}': no backend is ready; retry later", retry_after=5)
        replacement = await self._hold.after_unreachable(route, tried, self._unreachable_grace)
        if replacement is not None:
            return replacement
        raise self._unreachable(route, error) from error

    def _note_unreachable(
        self, route: ModelRoute, tried: set[str], lease: Lease, error: grpc.aio.AioRpcError | None
    ) -> None:
        tried.add(lease.address)
        metrics.BACKEND_ERRORS.labels(route.name, "UNAVAILABLE").inc()
        if len(tried) >= self._tries:
            raise self._unreachable(route, error) from error
        metrics.RETRIES.labels(route.name).inc()

    def _unreachable(self, route: ModelRoute, error: grpc.aio.AioRpcError | None) -> RouterError:
        """The error for a request no replica could take, saying why where discovery knows (a crash)."""
        if error is None:
            failed: RouterError = BackendError(
                f"model '{route.name}': no backend could be reached", retry_after=1
            )
        else:
            failed = router_error(error, route.name)
        why = self._hold.why(route.name)
        return (
            type(failed)(failed.message + why, param=failed.param, retry_after=failed.retry_after)
            if why
            else failed
        )

    @staticmethod
    def _key(route: ModelRoute, request: backend_pb2.PredictOptions) -> str | None:
        if route.load_balancing.strategy != BalancingStrategy.PREFIX_HASH:
            return None  # not worth computing
        return prefix_key(request, route.load_balancing.prefix_hash.prefix_char_length)

    def _failed(self, route: ModelRoute, error: grpc.aio.AioRpcError) -> Exception:
        metrics.BACKEND_ERRORS.labels(route.name, error.code().name).inc()
        return router_error(error, route.name)

    @staticmethod
    def _count_tokens(route: ModelRoute, *answers: backend_pb2.Reply) -> None:
        """Every answer's tokens; their one prompt once."""
        metrics.PROMPT_TOKENS.labels(route.name).inc(max(reply.prompt_tokens for reply in answers))
        metrics.GENERATED_TOKENS.labels(route.name).inc(sum(reply.tokens for reply in answers))


async def _starting_with(first: T, rest: AsyncGenerator[T, None]) -> AsyncIterator[T]:
    try:
        yield first
        async for reply in rest:
            yield reply
    finally:
        await rest.aclose()  # at once, not at garbage collection: it cancels the call and frees the replica
