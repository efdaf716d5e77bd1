"""Server-sent events as Anthropic streams them: `event: <type>` and `data: {json}`, no `[DONE]`.

The rules and the opener are streaming.py's: a stream opens once its backend sent the first reply, so
errors until then keep their HTTP status; one still opening after `keepalive` seconds starts its
response and sends SSE comments meanwhile. Only the framing and the ending differ: a failure after the
first byte ends the stream with an `error` event, which Anthropic's SDKs raise.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable

from fastapi import Request
from fastapi.responses import StreamingResponse

from localmodel_router.errors import BackendError, RouterError
from localmodel_router.messages_errors import error_body
from localmodel_router.protocol.messages import StreamEvent
from localmodel_router.streaming import open_sse

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


async def open_stream(
    request: Request, opening: Awaitable[AsyncIterator[str]], keepalive: float
) -> StreamingResponse:
    """streaming.open_sse with Anthropic's ending (an `error` event, no [DONE])."""
    return await open_sse(request, opening, keepalive, ending=_ended_properly)
