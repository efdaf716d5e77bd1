"""Server-sent events as OpenAI streams them: `data: {json}` events, then `data: [DONE]`.

A failure after the stream started cannot change the HTTP status any more; it ends the stream with an
error event (OpenAI's SDKs raise on it) and [DONE], so a client never hangs.

A stream opens once its backend sent the first reply, so errors until then keep their HTTP status. A
stream still not open after `keepalive` seconds (held while its model starts) starts its response
anyway and sends an SSE comment every `keepalive` seconds: proxies cut connections idle for a minute or
so, and clients ignore comments. Errors from then on are error events.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from fastapi import Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from localmodel_router.disconnect import unless_disconnected
from localmodel_router.errors import BackendError, RouterError, sse_error_event

log = logging.getLogger(__name__)

DONE = "data: [DONE]\n\n"
KEEPALIVE = ": waiting for the model\n\n"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}  # proxies must not buffer tokens


def event(payload: BaseModel) -> str:
    return f"data: {payload.model_dump_json()}\n\n"


async def _ended_properly(events: AsyncIterator[str]) -> AsyncIterator[str]:
    try:
        async for item in events:
            yield item
    except RouterError as error:
        yield sse_error_event(error)
    except Exception:
        log.exception("stream failed")
        yield sse_error_event(BackendError("the stream failed"))
    yield DONE


Ending = Callable[[AsyncIterator[str]], AsyncIterator[str]]


def sse_response(events: AsyncIterator[str], ending: Ending = _ended_properly) -> StreamingResponse:
    return StreamingResponse(ending(events), media_type="text/event-stream", headers=SSE_HEADERS)


async def open_sse(
    request: Request,
    opening: Awaitable[AsyncIterator[str]],
    keepalive: float,
    ending: Ending = _ended_properly,
) -> StreamingResponse:
    """The response for a stream being opened: plain once open, with keepalive comments while it is not
    open after `keepalive` seconds. A client leaving cancels the opening. `ending`: how the events end
    and how a failure after the first byte is told (OpenAI's error event and [DONE] by default)."""
    task = asyncio.ensure_future(opening)
    try:
        await unless_disconnected(request, asyncio.wait({task}, timeout=keepalive))
    except BaseException:
        task.cancel()
        raise
    if task.done():
        return sse_response(task.result(), ending)  # errors raised here become HTTP statuses
    return sse_response(_keepalives_until_open(task, keepalive), ending)


async def _keepalives_until_open(
    task: asyncio.Future[AsyncIterator[str]], every: float
) -> AsyncIterator[str]:
    try:
        while not (await asyncio.wait({task}, timeout=every))[0]:
            yield KEEPALIVE
        async for item in task.result():
            yield item
    finally:
        task.cancel()  # a no-op once open; stops the wait (and the held request) when the client left
