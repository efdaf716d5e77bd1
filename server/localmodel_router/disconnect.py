"""Cancel work whose client has gone: a closed connection must stop generation, not just drop the answer."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from fastapi import Request

T = TypeVar("T")


class ClientDisconnectedError(Exception):
    """The client closed the connection before the answer was ready."""


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Await `work`, cancelling it (and so its backend call) if the client disconnects first."""
    task = asyncio.ensure_future(work)
    # The body has been read already, so the next ASGI message can only be the disconnect.
    watcher = asyncio.ensure_future(request.receive())
    try:
        await asyncio.wait((task, watcher), return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():  # the client left, or this request was cancelled: stop the work
            task.cancel()
    if not task.done() or task.cancelled():  # stopped, not finished: the client is gone, no result
        raise ClientDisconnectedError()
    return task.result()
