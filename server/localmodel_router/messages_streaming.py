"""Server-sent events as Anthropic streams them: `event: <type>` and `data: {json}`, no `[DONE]`.

The rules are streaming.py's: a stream opens once its backend sent the first reply, so errors until then
keep their HTTP status; one still opening after `keepalive` seconds starts its response and sends SSE
comments meanwhile; a failure after the first byte ends the stream with an `error` event, which
Anthropic's SDKs raise. Only the framing and the ending differ, which is why the opener is repeated
here rather than shared.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable

from fastapi import Request
from fastapi.responses import StreamingResponse

from localmodel_router.disconnect import unless_disconnected
from localmodel_router.errors import BackendError, RouterError
from localmodel_router.messages_errors import error_body
from localmodel_router.protocol.messages import StreamEvent
from localmodel_router.streaming import KEEPALIVE, SSE_HEADERS

log = logging.getLogger(__name__)


def event(payload: StreamEvent) -> str:
    return f"event: {payload.type}\ndata: {payload.model_dump_json()}\n\n"


async def _ended_properly(events: AsyncIterator[str]) -> AsyncIterator[str]:
    try:
        async for item in events:
            yield item
    except RouterError as error:
        yield event(error_body(error))
    except Exception:
        log.exception("stream failed")
        yield event(error_body(BackendError("the stream failed")))


def _response(events: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(_ended_properly(events), media_type="text/event-stream", headers=SSE_HEADERS)


async def open_stream(
    request: Request, opening: Awaitable[AsyncIterator[str]], keepalive: float
) -> StreamingResponse:
    """The response for a stream being opened: plain once open, with keepalive comments while it is not
    open after `keepalive` seconds. A client leaving cancels the opening."""
    task = asyncio.ensure_future(opening)
    try:
        await unless_disconnected(request, asyncio.wait({task}, timeout=keepalive))
    except BaseException:
        task.cancel()
        raise
    if task.done():
        return _response(task.result())  # errors raised here become HTTP statuses
    return _response(_keepalives_until_open(task, keepalive))


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
