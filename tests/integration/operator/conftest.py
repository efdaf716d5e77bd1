"""kopf running for real against kmock's Kubernetes emulator over HTTP on loopback (extended in
tests/support/api_server.py with what the operator relies on: uid, generation, garbage collection)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import kopf
import pytest

from localmodel_operator.settings import OperatorSettings
from localmodel_operator.startup import initial_memo
from tests.support.api_server import Cluster


@contextlib.asynccontextmanager
async def run_operator(operator_settings: OperatorSettings | None = None) -> AsyncIterator[None]:
    """The operator's kopf handlers, running in this event loop until the block ends."""
    from localmodel_operator import handlers  # noqa: F401  (registers the handlers)

    settings = kopf.OperatorSettings()
    settings.scanning.disabled = True
    settings.watching.reconnect_backoff = 0.1
    stop, ready = asyncio.Event(), asyncio.Event()
    running = asyncio.create_task(
        kopf.operator(
            settings=settings,
            clusterwide=True,
            standalone=True,
            memo=initial_memo(operator_settings or OperatorSettings()),
            stop_flag=stop,
            ready_flag=ready,
        )
    )
    await asyncio.wait_for(ready.wait(), 10)
    await asyncio.sleep(0.5)  # its watch streams open
    try:
        yield
    finally:
        stop.set()
        # kopf waits for its watch streams to end; the emulator's never do, so end them here.
        await asyncio.wait({running}, timeout=0.5)
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running


@pytest.fixture
async def operator(cluster: Cluster) -> AsyncIterator[Cluster]:
    async with run_operator():
        yield cluster
