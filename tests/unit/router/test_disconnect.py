"""A client that leaves cancels the work it asked for, and the router says so instead of failing."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest
from fastapi import Request

from localmodel_router.disconnect import ClientDisconnectedError, unless_disconnected


class _Connection:
    """What `unless_disconnected` reads of a request: `receive()`, answering once the client has left."""

    def __init__(self, leaves_after: float | None) -> None:
        self._leaves_after = leaves_after

    async def receive(self) -> dict[str, Any]:
        if self._leaves_after is None:
            await asyncio.Event().wait()  # never leaves
        else:
            await asyncio.sleep(self._leaves_after)
        return {"type": "http.disconnect"}


def request(leaves_after: float | None) -> Request:
    return cast(Request, _Connection(leaves_after))


async def test_a_client_that_leaves_cancels_the_work_and_gets_no_result() -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def work() -> str:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "answer"

    with pytest.raises(ClientDisconnectedError):
        await unless_disconnected(request(leaves_after=0.05), work())
    assert started.is_set()
    await asyncio.wait_for(cancelled.wait(), 1)


async def test_the_answer_comes_back_while_the_client_stays() -> None:
    async def work() -> str:
        await asyncio.sleep(0.01)
        return "answer"

    assert await unless_disconnected(request(leaves_after=None), work()) == "answer"


async def test_an_error_of_the_work_is_raised_as_it_is() -> None:
    async def work() -> str:
        raise ValueError("bad")

    with pytest.raises(ValueError, match="bad"):
        await unless_disconnected(request(leaves_after=None), work())
