"""gRPC channels to backends, and the one table from gRPC status codes to router errors."""

from __future__ import annotations

import asyncio
import logging
import time

import grpc
from grpc import StatusCode

from localmodel import refusals
from localmodel.wire import backend_pb2_grpc
from localmodel_router.errors import (
    BackendError,
    BackendTimeoutError,
    BadRequestError,
    NotSupportedError,
    OverloadedError,
    RateLimitError,
    RouterError,
)

log = logging.getLogger(__name__)

_CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    # A restarted backend should be reachable again within a fraction of a second, not after gRPC's
    # default reconnect backoff of up to two minutes.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
]


class BackendUnreachableError(Exception):
    """No connection to the backend could be made; the request never reached it (safe to retry)."""

    def __init__(self, address: str, reason: str) -> None:
        super().__init__(f"backend {address} unreachable: {reason}")
        self.address = address


class BackendPool:
    """One long-lived channel per backend address, opened on first use."""

    def __init__(self, connect_timeout: float) -> None:
        self._connect_timeout = connect_timeout
        self._stubs: dict[str, tuple[grpc.aio.Channel, backend_pb2_grpc.BackendStub]] = {}

    async def stub(self, address: str) -> backend_pb2_grpc.BackendStub:
        """A stub whose channel is connected; BackendUnreachableError if it cannot connect in time."""
        if address not in self._stubs:
            channel = grpc.aio.insecure_channel(address, options=_CHANNEL_OPTIONS)
            self._stubs[address] = (channel, backend_pb2_grpc.BackendStub(channel))  # type: ignore[no-untyped-call]
        channel, stub = self._stubs[address]
        await self._connected(address, channel)
        return stub

    async def _connected(self, address: str, channel: grpc.aio.Channel) -> None:
        # Fail fast on a refused connection, wait (bounded) while one is being made.
        deadline = time.monotonic() + self._connect_timeout
        state = channel.get_state(try_to_connect=True)
        while state != grpc.ChannelConnectivity.READY:
            if state in (grpc.ChannelConnectivity.TRANSIENT_FAILURE, grpc.ChannelConnectivity.SHUTDOWN):
                raise BackendUnreachableError(address, state.name.lower())
            remaining = deadline - time.monotonic()
            try:
                await asyncio.wait_for(channel.wait_for_state_change(state), remaining)
            except TimeoutError:
                raise BackendUnreachableError(
                    address, f"no connection after {self._connect_timeout}s"
                ) from None
            state = channel.get_state(try_to_connect=True)

    async def close(self) -> None:
        channels = [channel for channel, _ in self._stubs.values()]
        self._stubs.clear()
        await asyncio.gather(*(channel.close() for channel in channels))


def never_started(error: grpc.aio.AioRpcError) -> bool:
    """Whether the call provably did no work on the backend, so another replica may be tried (see
    localmodel.refusals). A connection lost during an acknowledged call is not: the request may have
    crashed the backend, and replayed it would crash the next one."""
    return error.code() == StatusCode.UNAVAILABLE and refusals.never_started(
        error.details() or "", error.initial_metadata() or ()
    )


def router_error(error: grpc.aio.AioRpcError, model: str) -> RouterError:
    """The router error for a backend's gRPC status (the one table)."""
    code, details = error.code(), error.details() or ""
    if code == StatusCode.INVALID_ARGUMENT:
        # Backends name the offending field first ("temperature: must not be negative").
        field, _, _ = details.partition(":")
        return BadRequestError(details, param=field if field.isidentifier() else None)
    if code == StatusCode.UNIMPLEMENTED:
        return NotSupportedError(f"the backend of model '{model}' does not support this: {details}")
    if code == StatusCode.RESOURCE_EXHAUSTED:
        return RateLimitError(f"model '{model}' is busy: {details}", retry_after=1)
    if code == StatusCode.FAILED_PRECONDITION:
        return OverloadedError(f"model '{model}' is not ready: {details}", retry_after=5)
    if code == StatusCode.DEADLINE_EXCEEDED:
        return BackendTimeoutError(f"model '{model}' did not answer in time")
    if code == StatusCode.UNAVAILABLE and not never_started(error):
        return BackendError(
            f"model '{model}': the backend was lost while serving this request ({details or 'no details'});"
            " it was not sent to another replica, in case the request itself crashed it"
        )
    if code == StatusCode.UNAVAILABLE:
        return BackendError(f"model '{model}': no backend could be reached", retry_after=1)
    log.error("backend error", extra={"model": model, "code": code.name, "details": details})
    return BackendError(f"model '{model}': the backend failed ({code.name})")
